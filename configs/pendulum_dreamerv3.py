"""DreamerV3 on Pendulum-v1 (continuous actions, vector observations): the actor learns by
backpropagating imagined returns through the model's dynamics. Target: eval return
>= -250 by 15,000 env steps on a 2-core CPU.

Against DreamerV3's defaults: the CPU size preset ``XXS`` (``world_model.size="S"`` is
the paper's small model) and imagination from 256 of the batch's posterior states.
"""

config = dict(
    exp_name="pendulum_dreamerv3",
    seed=0,
    env_steps=15_000,
    env=dict(id="Pendulum-v1"),
    collector=dict(env_num=1, warmup_steps=1000),
    buffer=dict(type="replay", capacity=100_000),
    world_model=dict(type="dreamerv3", size="XXS", batch_size=16, sequence_length=64, replay_ratio=0.5,
                     learning_starts=1000, pretrain_steps=100),
    policy=dict(type="dreamer", imagine_starts=256),
    learner=dict(batch_size=16, updates_per_step=0.5),
    evaluator=dict(eval_freq=1000, n_episodes=5),
)

presets = dict(
    debug=dict(
        env_steps=300,
        collector=dict(warmup_steps=100),
        world_model=dict(deter=32, units=32, stoch=4, classes=4, batch_size=4, sequence_length=16,
                         learning_starts=100, pretrain_steps=2, log_every=10,
                         rollout_length_scheduler=dict(type="constant", rollout_length=5)),
        policy=dict(imagine_starts=16),
        learner=dict(batch_size=4),
        evaluator=dict(eval_freq=150, n_episodes=1),
    ),
)
