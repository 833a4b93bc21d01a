"""Model-free SAC on InvertedPendulum-v5 (MuJoCo): the baseline for its world models."""

config = dict(
    exp_name="inverted_pendulum_sac",
    seed=0,
    env_steps=20_000,
    env=dict(id="InvertedPendulum-v5"),
    collector=dict(env_num=1, warmup_steps=1000),
    buffer=dict(type="replay", capacity=100_000),
    policy=dict(type="sac", hidden_sizes=[256, 256], gamma=0.99),
    learner=dict(batch_size=256, updates_per_step=1.0),
    evaluator=dict(eval_freq=1000, n_episodes=5),
)

presets = dict(
    debug=dict(
        env_steps=400,
        env=dict(max_episode_steps=100),
        collector=dict(warmup_steps=200),
        policy=dict(hidden_sizes=[64, 64]),
        learner=dict(batch_size=64),
        evaluator=dict(eval_freq=200, n_episodes=2),
    ),
)
