"""DreamerV3 on Pendulum-v1 seen only through 64x64 RGB frames (the ``pixels`` env wrapper):
the CNN encoder/decoder path. The RSSM infers angular velocity from successive frames.

Rendering needs pygame (a dependency) and runs headless. A 2-core CPU trains this
slowly: about an order of magnitude fewer gradient steps per second than the vector
configs. Pixel transitions take 24 KiB each in the replay buffer (obs and next_obs),
hence its smaller capacity.
"""

config = dict(
    exp_name="pendulum_pixels_dreamerv3",
    seed=0,
    env_steps=15_000,
    env=dict(id="Pendulum-v1", kwargs=dict(render_mode="rgb_array"), wrappers=[dict(type="pixels", size=64)]),
    collector=dict(env_num=1, warmup_steps=1000),
    buffer=dict(type="replay", capacity=20_000),
    world_model=dict(type="dreamerv3", size="XXS", batch_size=16, sequence_length=64, replay_ratio=0.5,
                     learning_starts=1000, pretrain_steps=100),
    policy=dict(type="dreamer", imagine_starts=256),
    learner=dict(batch_size=16, updates_per_step=0.5),
    evaluator=dict(eval_freq=1000, n_episodes=3),
)

presets = dict(
    debug=dict(
        env_steps=240,
        collector=dict(warmup_steps=100),
        buffer=dict(capacity=1000),
        world_model=dict(deter=32, units=32, stoch=4, classes=4, cnn_depth=4, batch_size=2, sequence_length=8,
                         learning_starts=100, pretrain_steps=2, log_every=10,
                         rollout_length_scheduler=dict(type="constant", rollout_length=5)),
        policy=dict(imagine_starts=8),
        learner=dict(batch_size=2),
        evaluator=dict(eval_freq=120, n_episodes=1),
    ),
)
