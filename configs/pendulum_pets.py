"""PETS on Pendulum-v1: the ``mbpo`` probabilistic ensemble with a CEM planner and
trajectory sampling (each of a candidate's particles follows one elite for the whole
horizon, PETS's TS-infinity). No policy is learnt: the planner acts at every step.
Target: eval return >= -200 by 2,000 env steps (median of 3 seeds).

Against the PETS paper (500 candidates, 20 particles, horizon 30, members of 4 x 200):
150 candidates, one particle per elite (5), horizon 15, 3 iterations and members of
3 x 128, so that one planning step costs about 0.1 s on one CPU thread.
"""

config = dict(
    exp_name="pendulum_pets",
    seed=0,
    env_steps=3_000,
    env=dict(id="Pendulum-v1"),
    collector=dict(env_num=1, warmup_steps=200),
    buffer=dict(type="replay", capacity=100_000),
    world_model=dict(
        type="mbpo",
        ensemble_size=5,
        elite_size=5,
        hidden_sizes=[128, 128, 128],
        weight_decays=[2.5e-5, 5e-5, 7.5e-5, 1e-4],
        train_freq=200,
        min_env_transitions=256,  # the first fit needs 256 transitions
        eval_freq=1000,
        max_epochs=50,
        rollout_length_scheduler=dict(type="constant", rollout_length=0),  # no imagination buffer
    ),
    policy=dict(type="cem", horizon=15, candidates=150, iterations=3, elites=15, propagation="ts_inf",
                collect_noise=0.0),
    learner=dict(batch_size=256, updates_per_step=0.0),
    evaluator=dict(eval_freq=500, n_episodes=3),
)

presets = dict(
    debug=dict(
        env_steps=120,
        collector=dict(warmup_steps=60),
        world_model=dict(ensemble_size=3, elite_size=2, hidden_sizes=[32, 32], weight_decays=[2.5e-5, 5e-5, 1e-4],
                         train_freq=60, max_epochs=3),
        policy=dict(horizon=5, candidates=16, iterations=2, elites=4),
        evaluator=dict(eval_freq=60, n_episodes=1),
        env=dict(max_episode_steps=30),
    ),
)
