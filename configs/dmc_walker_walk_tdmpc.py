"""TD-MPC2 on DeepMind Control walker-walk from proprioceptive (state) observations: the
``latent`` world model planned through with MPPI at TD-MPC2's planner size (horizon 3, 512
candidates, 6 iterations, 64 elites, 24 candidates from the model's actor, bootstrapped with
the model's value). Target: median eval return >= 962 at 100,000 env steps over 3 seeds
(TD-MPC2's published figure; DreamerV3's is 630).

As in TD-MPC2's DMC setting: action repeat 2 (one agent step is two env steps; budgets
count env steps), one update per agent step (``replay_ratio`` 0.5 per env step), batch
256, horizon 3, rho 0.5, 5 Qs, discount 0.99 (TD-MPC2's heuristic for 500-step episodes:
(100 - 1) / 100). Differences, for a 2-core CPU: a latent of 64 and MLPs of 2 x 128 (its
smallest model is 128 and 2 x 384; a latent of 128 and 2 x 256 costs about 2.4x per planning
call and per update here), SiLU for Mish (about 15x cheaper on CPU here, the same shape),
5,000 seed env steps (TD-MPC2: 2,500 agent steps).
"""

config = dict(
    exp_name="dmc_walker_walk_tdmpc",
    seed=0,
    env_steps=100_000,
    env=dict(id="dm_control/walker-walk-v0", action_repeat=2),
    collector=dict(env_num=1, warmup_steps=5000),
    buffer=dict(type="replay", capacity=100_000),
    world_model=dict(type="latent", latent_dim=64, hidden_sizes=[128, 128], encoder_hidden_sizes=[128],
                     termination="none", gamma=0.99, batch_size=256, replay_ratio=0.5, learning_starts=5000,
                     pretrain_steps=1000, log_every=500),
    policy=dict(type="mppi", horizon=3, candidates=512, iterations=6, elites=64, prior_candidates=24,
                value_bootstrap=True, temperature=0.5, propagation="ts_1", gamma=0.99, init_std=2.0,
                min_std=0.05, collect_noise=0.1),
    learner=dict(batch_size=256, updates_per_step=0.0),
    # every 10k env steps: an evaluation is 2,500 planning calls (about 220 s on one core here), and
    # how often it runs does not change training (its generators and planner state are its own)
    evaluator=dict(eval_freq=10_000, n_episodes=5),
    checkpoint_every=10_000,
)

presets = dict(
    debug=dict(
        env_steps=400,
        collector=dict(warmup_steps=200),
        world_model=dict(latent_dim=16, simnorm_dim=4, hidden_sizes=[16, 16], encoder_hidden_sizes=[16],
                         num_bins=21, num_q=2, batch_size=16, learning_starts=200, pretrain_steps=5, log_every=20),
        policy=dict(candidates=16, iterations=2, elites=4, prior_candidates=2),
        learner=dict(batch_size=16),
        evaluator=dict(eval_freq=200, n_episodes=1),
        env=dict(max_episode_steps=100),
    ),
)
