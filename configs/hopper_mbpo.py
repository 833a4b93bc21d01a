"""MBPO on Hopper-v5 with the published setting (Janner et al., 2019): for long or GPU runs.

Rollout length grows from 1 to 15 between 20k and 100k env steps; 400
rollouts per env step (100,000 every 250 steps), the imagination buffer
keeps the last 1,000 env steps' worth (4 fills); 20 SAC updates per env step
on batches of 5% real data; 5,000 random steps first; target entropy -1.
The published MBPO reaches about 3,000 by 75k-100k env steps. On a 2-core
CPU one such run takes days: use ``device="cuda"`` or the debug preset.
Model training is bounded (``max_epochs``, ``max_train_steps``) so one
retraining never costs more than a known number of gradient steps.
"""

config = dict(
    exp_name="hopper_mbpo",
    seed=0,
    env_steps=125_000,
    checkpoint_every=10_000,
    env=dict(id="Hopper-v5"),
    collector=dict(env_num=1, warmup_steps=5_000),
    buffer=dict(type="replay", capacity=1_000_000),
    world_model=dict(
        type="mbpo",
        ensemble_size=7,
        elite_size=5,
        hidden_sizes=[200, 200, 200, 200],
        train_freq=250,
        eval_freq=1000,
        max_epochs=50,
        max_train_steps=5_000,
        rollout_freq=250,
        rollout_batch_size=100_000,
        rollout_retain=4,
        rollout_length_scheduler=dict(type="linear", rollout_start_step=20_000, rollout_end_step=100_000,
                                      rollout_length_min=1, rollout_length_max=15),
        real_ratio=0.05,
    ),
    policy=dict(type="sac", hidden_sizes=[256, 256], gamma=0.99, target_entropy=-1.0),
    learner=dict(batch_size=256, updates_per_step=20.0),
    evaluator=dict(eval_freq=1000, n_episodes=5),
)

presets = dict(
    debug=dict(
        num_threads=1,
        env_steps=400,
        checkpoint_every=0,
        collector=dict(warmup_steps=200),
        world_model=dict(ensemble_size=3, elite_size=2, hidden_sizes=[32, 32],
                         weight_decays=[2.5e-5, 5e-5, 1e-4], train_freq=100, rollout_freq=100,
                         rollout_batch_size=64, max_epochs=3, eval_freq=100,
                         rollout_length_scheduler=dict(type="linear", rollout_start_step=200,
                                                       rollout_end_step=400, rollout_length_min=1,
                                                       rollout_length_max=3)),
        policy=dict(hidden_sizes=[32, 32]),
        learner=dict(batch_size=32, updates_per_step=1.0),
        evaluator=dict(eval_freq=200, n_episodes=1),
        env=dict(max_episode_steps=100),
    ),
)
