"""STEVE on InvertedPendulum-v5: MBPO's ensemble fills the imagination buffer and expands SAC's critic targets.

Termination inside the expansion comes from the registered
``InvertedPendulum`` function in TERMINATION_REGISTRY, so a branch's value stops where the
pole would fall.
"""

config = dict(
    exp_name="inverted_pendulum_steve",
    seed=0,
    env_steps=5_000,
    env=dict(id="InvertedPendulum-v5"),
    collector=dict(env_num=1, warmup_steps=500),
    buffer=dict(type="replay", capacity=100_000),
    world_model=dict(
        type="steve",
        expansion="steve",
        expansion_horizon=2,
        expansion_members=3,  # as pendulum_steve: the 3 best elites expand targets
        train_freq=250,
        eval_freq=250,
        max_epochs=50,
        rollout_freq=250,
        rollout_batch_size=10_000,
        rollout_retain=4,
        rollout_length_scheduler=dict(type="constant", rollout_length=1),
        real_ratio=0.05,
    ),
    policy=dict(type="mbsac", hidden_sizes=[256, 256], gamma=0.99),
    learner=dict(batch_size=256, updates_per_step=10.0),
    evaluator=dict(eval_freq=500, n_episodes=5),
)

presets = dict(
    debug=dict(
        env_steps=400,
        env=dict(max_episode_steps=100),
        collector=dict(warmup_steps=200),
        world_model=dict(ensemble_size=3, elite_size=2, hidden_sizes=[32, 32], expansion_horizon=2,
                         expansion_members=2,
                         weight_decays=[2.5e-5, 5e-5, 1e-4], train_freq=100, rollout_freq=100,
                         rollout_batch_size=64, max_epochs=3, eval_freq=100),
        policy=dict(hidden_sizes=[32, 32]),
        learner=dict(batch_size=32, updates_per_step=1.0),
        evaluator=dict(eval_freq=200, n_episodes=1),
    ),
)
