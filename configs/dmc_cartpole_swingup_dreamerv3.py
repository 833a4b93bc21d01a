"""DreamerV3 on DeepMind Control cartpole-swingup from proprioceptive (state) observations.
Target: median eval return >= 677 at 100,000 env steps over 3 seeds (the DreamerV3 paper's figure),
each run in under 2 hours on a 2-core CPU.

As in the DreamerV3 paper's DMC proprio setting: action repeat 2 (one agent step is two
env steps; budgets count env steps), batch 16 x 64, horizon 15, one world-model gradient
step and one actor-critic update per two agent steps (its train ratio 512 =
``replay_ratio`` 0.25 per env step). Differences, for a 2-core CPU: the ``XXS`` size
preset (the paper trains larger models; one XS update costs about four XXS ones
here), and imagination from 256 of the batch's 1,024 posterior states. Also different,
not for the CPU: 5,000 random env steps before learning (the paper: about 1,000 agent
steps), one env (the paper's code: 4), and the actor and critic learning rates of the
``dreamer`` policy's defaults, 8e-5 (the paper: 3e-5).
"""

config = dict(
    exp_name="dmc_cartpole_swingup_dreamerv3",
    seed=0,
    env_steps=100_000,
    env=dict(id="dm_control/cartpole-swingup-v0", action_repeat=2),
    collector=dict(env_num=1, warmup_steps=5000),
    buffer=dict(type="replay", capacity=100_000),
    world_model=dict(type="dreamerv3", size="XXS", batch_size=16, sequence_length=64, replay_ratio=0.25,
                     learning_starts=5000, pretrain_steps=100),
    policy=dict(type="dreamer", imagine_starts=256),
    learner=dict(batch_size=16, updates_per_step=0.25),
    evaluator=dict(eval_freq=5000, n_episodes=5),
    checkpoint_every=10_000,
)

presets = dict(
    debug=dict(
        env_steps=400,
        collector=dict(warmup_steps=200),
        world_model=dict(deter=32, units=32, stoch=4, classes=4, batch_size=4, sequence_length=16,
                         learning_starts=200, pretrain_steps=2, log_every=10,
                         rollout_length_scheduler=dict(type="constant", rollout_length=5)),
        policy=dict(imagine_starts=16),
        learner=dict(batch_size=4),
        evaluator=dict(eval_freq=200, n_episodes=1),
        env=dict(max_episode_steps=100),
    ),
)
