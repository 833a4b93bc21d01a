"""DreamerV3 on MountainCarContinuous-v0 (continuous actions, vector observations, sparse
reward): +100 for reaching the flag, minus 0.1 times the squared action each step, 999
steps per episode. An agent that never finds the flag learns to stand still (a return
near 0); the baseline for ``mountaincar_plan2explore``, which is the same run with
Plan2Explore's exploration on. Not tuned or measured here yet.
"""

config = dict(
    exp_name="mountaincar_dreamerv3",
    seed=0,
    env_steps=20_000,
    env=dict(id="MountainCarContinuous-v0"),
    collector=dict(env_num=1, warmup_steps=1000),
    buffer=dict(type="replay", capacity=100_000),
    world_model=dict(type="dreamerv3", size="XXS", batch_size=16, sequence_length=64, replay_ratio=0.5,
                     learning_starts=1000, pretrain_steps=100),
    policy=dict(type="dreamer", imagine_starts=256),
    learner=dict(batch_size=16, updates_per_step=0.5),
    evaluator=dict(eval_freq=2500, n_episodes=3),
)

presets = dict(
    debug=dict(
        env_steps=300,
        env=dict(max_episode_steps=100),
        collector=dict(warmup_steps=100),
        world_model=dict(deter=32, units=32, stoch=4, classes=4, batch_size=4, sequence_length=16,
                         learning_starts=100, pretrain_steps=2, log_every=10,
                         rollout_length_scheduler=dict(type="constant", rollout_length=5)),
        policy=dict(imagine_starts=16),
        learner=dict(batch_size=4),
        evaluator=dict(eval_freq=150, n_episodes=1),
    ),
)
