"""TD-MPC2 on Pendulum-v1: the ``latent`` world model (SimNorm latent, deterministic latent
dynamics, twohot reward and Q-ensemble heads, an actor on the latent) planned through with
MPPI at TD-MPC2's planner size (horizon 3, 512 candidates, 6 iterations, 64 elites, 24
candidates from the model's actor, bootstrapped with the model's value). Target: eval return
>= -200 by 3,000 env steps (median of 3 seeds).

Against TD-MPC2's defaults, for a 2-core CPU: a latent of 64 and MLPs of 2 x 128 (its
smallest model is 128 and 2 x 384), SiLU for Mish (about 15x cheaper on CPU here, the
same shape); 600 random seed steps and 600 pretraining updates (TD-MPC2 seeds
max(1000, 5 episodes)); one update per env step. The discount is TD-MPC2's heuristic for
200-step episodes, (40 - 1) / 40 = 0.975, in the model and the planner alike.
"""

config = dict(
    exp_name="pendulum_tdmpc",
    seed=0,
    env_steps=3_000,
    env=dict(id="Pendulum-v1"),
    collector=dict(env_num=1, warmup_steps=600),
    buffer=dict(type="replay", capacity=100_000),
    world_model=dict(type="latent", latent_dim=64, hidden_sizes=[128, 128], encoder_hidden_sizes=[128],
                     termination="none", gamma=0.975, batch_size=256, replay_ratio=1.0, learning_starts=600,
                     pretrain_steps=600, log_every=100),
    policy=dict(type="mppi", horizon=3, candidates=512, iterations=6, elites=64, prior_candidates=24,
                value_bootstrap=True, temperature=0.5, propagation="ts_1", gamma=0.975, init_std=2.0,
                min_std=0.05, collect_noise=0.1),
    learner=dict(batch_size=256, updates_per_step=0.0),
    evaluator=dict(eval_freq=500, n_episodes=3),
)

presets = dict(
    debug=dict(
        env_steps=200,
        collector=dict(warmup_steps=100),
        world_model=dict(latent_dim=16, simnorm_dim=4, hidden_sizes=[16, 16], encoder_hidden_sizes=[16],
                         num_bins=21, num_q=2, batch_size=16, learning_starts=100, pretrain_steps=5, log_every=20),
        policy=dict(candidates=16, iterations=2, elites=4, prior_candidates=2),
        learner=dict(batch_size=16),
        evaluator=dict(eval_freq=100, n_episodes=1),
        env=dict(max_episode_steps=50),
    ),
)
