"""PETS on CartPole-v1: the ``mbpo`` ensemble (actions one-hot) with a categorical CEM planner
(per-step action probabilities) and TS-infinity trajectory sampling; no policy is learnt.
Every step pays 1 while the pole is up, so the planner's whole job is to keep predicted
rollouts away from the registered termination rule (the ``CartPole`` function in
TERMINATION_REGISTRY), which ends a candidate's return.

CPU-sized as ``pendulum_pets`` (members of 3 x 128, one particle per elite, 100
candidates, horizon 12, 3 iterations). Episodes last up to 500 steps, each one planned, so
evaluations are few and short.
"""

config = dict(
    exp_name="cartpole_pets",
    seed=0,
    env_steps=3_000,
    env=dict(id="CartPole-v1"),
    collector=dict(env_num=1, warmup_steps=200),
    buffer=dict(type="replay", capacity=100_000),
    world_model=dict(
        type="mbpo",
        ensemble_size=5,
        elite_size=5,
        hidden_sizes=[128, 128, 128],
        weight_decays=[2.5e-5, 5e-5, 7.5e-5, 1e-4],
        train_freq=200,
        min_env_transitions=256,  # the first fit needs 256 transitions
        eval_freq=1000,
        max_epochs=50,
        rollout_length_scheduler=dict(type="constant", rollout_length=0),  # no imagination buffer
    ),
    policy=dict(type="cem", horizon=12, candidates=100, iterations=3, elites=10, propagation="ts_inf",
                collect_noise=0.0),
    learner=dict(batch_size=256, updates_per_step=0.0),
    evaluator=dict(eval_freq=1000, n_episodes=2),
)

presets = dict(
    debug=dict(
        env_steps=120,
        collector=dict(warmup_steps=60),
        world_model=dict(ensemble_size=3, elite_size=2, hidden_sizes=[32, 32], weight_decays=[2.5e-5, 5e-5, 1e-4],
                         train_freq=60, max_epochs=3),
        policy=dict(horizon=5, candidates=16, iterations=2, elites=4),
        evaluator=dict(eval_freq=60, n_episodes=1),
        env=dict(max_episode_steps=30),
    ),
)
