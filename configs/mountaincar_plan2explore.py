"""Plan2Explore on MountainCarContinuous-v0: ``mountaincar_dreamerv3`` with
``world_model.plan2explore`` on. An ensemble of one-step latent predictors learns beside
the world model; their disagreement about an imagined step is the intrinsic reward of an
exploration actor-critic, which collects for the first ``explore_until`` env steps (few-shot:
the task actor, trained all along on the task reward from the same imagination, collects
after). Evaluation always runs the task actor. Not tuned or measured here yet; the
intrinsic scale is a first guess.
"""

config = dict(
    exp_name="mountaincar_plan2explore",
    seed=0,
    env_steps=20_000,
    env=dict(id="MountainCarContinuous-v0"),
    collector=dict(env_num=1, warmup_steps=1000),
    buffer=dict(type="replay", capacity=100_000),
    world_model=dict(type="dreamerv3", size="XXS", batch_size=16, sequence_length=64, replay_ratio=0.5,
                     learning_starts=1000, pretrain_steps=100,
                     plan2explore=dict(enabled=True, ensemble=5, layers=2, target="stoch", intrinsic_scale=1.0,
                                       extrinsic_scale=0.0, explore_until=10_000, task_horizon=1)),
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
                         rollout_length_scheduler=dict(type="constant", rollout_length=5),
                         plan2explore=dict(ensemble=3, units=16, layers=1, explore_until=200)),
        policy=dict(imagine_starts=16),
        learner=dict(batch_size=4),
        evaluator=dict(eval_freq=150, n_episodes=1),
    ),
)
