"""Model-free SAC on DeepMind Control walker-walk from proprioceptive (state) observations:
the baseline for the DreamerV3 config on the same task, at the same budget and convention
(action repeat 2, budgets in env steps = control steps, 100,000 of them).

One SAC update per agent step (batch 256, [256, 256] MLPs, discount 0.99), 5,000 env steps
of random warm-up.
"""

config = dict(
    exp_name="dmc_walker_walk_sac",
    seed=0,
    env_steps=100_000,
    env=dict(id="dm_control/walker-walk-v0", action_repeat=2),
    collector=dict(env_num=1, warmup_steps=5000),
    buffer=dict(type="replay", capacity=100_000),
    policy=dict(type="sac", hidden_sizes=[256, 256], gamma=0.99),
    learner=dict(batch_size=256, updates_per_step=0.5),
    evaluator=dict(eval_freq=5000, n_episodes=5),
    checkpoint_every=10_000,
)

presets = dict(
    debug=dict(
        env_steps=400,
        collector=dict(warmup_steps=200),
        policy=dict(hidden_sizes=[64, 64]),
        learner=dict(batch_size=64),
        evaluator=dict(eval_freq=200, n_episodes=1),
        env=dict(max_episode_steps=100),
    ),
)
