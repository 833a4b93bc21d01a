"""DreamerV3 on MuJoCo InvertedPendulum-v5 (continuous actions, vector observations;
episodes end when the pole falls, so the continue head matters).

Against DreamerV3's defaults: the CPU size preset ``XXS`` (``world_model.size="S"`` is
the paper's small model), imagination from 256 of the batch's posterior states, and, as
for ``cartpole_dreamerv3`` (the same constant reward for staying up), a discount of 0.99
and a critic learning rate of 3e-4 so that the critic's values rise fast enough to rank
states by how long they last.
"""

config = dict(
    exp_name="inverted_pendulum_dreamerv3",
    seed=0,
    env_steps=20_000,
    env=dict(id="InvertedPendulum-v5"),
    collector=dict(env_num=1, warmup_steps=1000),
    buffer=dict(type="replay", capacity=100_000),
    world_model=dict(type="dreamerv3", size="XXS", batch_size=16, sequence_length=64, replay_ratio=0.5,
                     learning_starts=1000, pretrain_steps=100),
    policy=dict(type="dreamer", imagine_starts=256, gamma=0.99, critic_lr=3e-4),
    learner=dict(batch_size=16, updates_per_step=0.5),
    evaluator=dict(eval_freq=2000, n_episodes=5),
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
