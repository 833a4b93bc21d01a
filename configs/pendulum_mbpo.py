"""MBPO on Pendulum-v1: an ensemble world model fills an imagination buffer that SAC learns from.

Tuned for the CPU targets: eval return >= -200 by 3,000 env steps in at most
100 s on a 2-core CPU. Against the published setting (``hopper_mbpo``): short
rollouts from the start, 5 rather than 20 SAC updates per env step, at most 25
epochs per model fit, and a smaller imagination buffer (Pendulum's dynamics are
simple and its episodes short). 5 updates and 25 epochs ended 3 seeds at 3,000
env steps where 10 updates and 50 epochs did (-96 / -121 / -144 against -99 / -120
/ -143) in about half the time (79-82 s alone against 150 s; README, Speed).
"""

config = dict(
    exp_name="pendulum_mbpo",
    seed=0,
    num_threads=1,  # small matmuls: one thread is faster, and robust to a busy machine
    env_steps=5_000,
    env=dict(id="Pendulum-v1"),
    collector=dict(env_num=1, warmup_steps=500),
    buffer=dict(type="replay", capacity=100_000),
    world_model=dict(
        type="mbpo",
        ensemble_size=7,
        elite_size=5,
        hidden_sizes=[200, 200, 200, 200],
        train_freq=250,
        eval_freq=250,
        max_epochs=25,
        rollout_freq=250,
        rollout_batch_size=10_000,
        rollout_retain=4,
        rollout_length_scheduler=dict(type="constant", rollout_length=3),
        real_ratio=0.05,
    ),
    policy=dict(type="sac", hidden_sizes=[256, 256], gamma=0.99),
    learner=dict(batch_size=256, updates_per_step=5.0),
    evaluator=dict(eval_freq=500, n_episodes=5),
)

presets = dict(
    debug=dict(
        env_steps=400,
        collector=dict(warmup_steps=200),
        world_model=dict(ensemble_size=3, elite_size=2, hidden_sizes=[32, 32],
                         weight_decays=[2.5e-5, 5e-5, 1e-4], train_freq=100, rollout_freq=100,
                         rollout_batch_size=64, max_epochs=3, eval_freq=100),
        policy=dict(hidden_sizes=[32, 32]),
        learner=dict(batch_size=32, updates_per_step=1.0),
        evaluator=dict(eval_freq=200, n_episodes=1),
    ),
)
