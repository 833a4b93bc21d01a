"""The ``latent`` world model of ``pendulum_tdmpc`` (TD-MPC2's recipe) with DreamerV3's
actor-critic learning inside its imagination instead of MPPI planning through it: the same
model, planned through or imagined in (``worldmodels compare pendulum_tdmpc
pendulum_latent_dreamer``).

The ``dreamer`` policy imagines 5 steps (the model is trained for 3-step consistency; its
errors compound over DreamerV3's 15) from the encoded first observations of the model's
latest batch, backpropagating the imagined returns through the latent dynamics, and acts
on the encoded observation (the model has no recurrent state). The model's own actor and
Q ensemble still train (they are part of its loss) but nothing acts on them.
"""

config = dict(
    exp_name="pendulum_latent_dreamer",
    seed=0,
    env_steps=3_000,
    env=dict(id="Pendulum-v1"),
    collector=dict(env_num=1, warmup_steps=600),
    buffer=dict(type="replay", capacity=100_000),
    world_model=dict(type="latent", latent_dim=64, hidden_sizes=[128, 128], encoder_hidden_sizes=[128],
                     termination="none", gamma=0.975, batch_size=256, replay_ratio=1.0, learning_starts=600,
                     pretrain_steps=600, log_every=100,
                     rollout_length_scheduler=dict(type="constant", rollout_length=5)),
    policy=dict(type="dreamer", imagine_starts=256),
    learner=dict(batch_size=256, updates_per_step=1.0),
    evaluator=dict(eval_freq=500, n_episodes=3),
)

presets = dict(
    debug=dict(
        env_steps=200,
        collector=dict(warmup_steps=100),
        world_model=dict(latent_dim=16, simnorm_dim=4, hidden_sizes=[16, 16], encoder_hidden_sizes=[16],
                         num_bins=21, num_q=2, batch_size=16, learning_starts=100, pretrain_steps=5, log_every=20,
                         rollout_length_scheduler=dict(type="constant", rollout_length=3)),
        policy=dict(imagine_starts=16, critic_bins=21),
        learner=dict(batch_size=16),
        evaluator=dict(eval_freq=100, n_episodes=1),
        env=dict(max_episode_steps=50),
    ),
)
