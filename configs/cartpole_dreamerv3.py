"""DreamerV3 on CartPole-v1 (discrete actions, vector observations): the Dream path's
discrete benchmark. Target: eval return >= 450 by 20,000 env steps on a 2-core CPU.

Against DreamerV3's defaults: the CPU size preset ``XXS`` (``world_model.size="S"`` is
the paper's small model), imagination from 128 of the batch's 1,024 posterior states
per update, a discount of 0.99 and a critic learning rate of 3e-4. With 0.997 and 8e-5
the critic's values were still climbing at 20k env steps (about 65 against a true
value in the hundreds), too flat to tell a cart drifting towards the edge from a
centred one: the greedy policy then failed at about 150 steps from 9k env steps on.
One world-model gradient step and one actor-critic update per two env steps
(``replay_ratio`` = ``updates_per_step`` = 0.5).
"""

config = dict(
    exp_name="cartpole_dreamerv3",
    seed=0,
    env_steps=20_000,
    env=dict(id="CartPole-v1"),
    collector=dict(env_num=1, warmup_steps=1024),
    buffer=dict(type="replay", capacity=100_000),
    world_model=dict(type="dreamerv3", size="XXS", batch_size=16, sequence_length=64, replay_ratio=0.5,
                     learning_starts=1024, pretrain_steps=100),
    policy=dict(type="dreamer", imagine_starts=128, gamma=0.99, critic_lr=3e-4),
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
