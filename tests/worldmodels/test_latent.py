"""latent (TD-MPC2-style) world model: partial trajectories and their validity masks, n-step
targets by hand, the mixture likelihood, SimNorm, rho^t weighting, the planning value, a
planner acting through the model, training, exact state round trips and config errors."""
import io
import math
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import worldmodels.latent as latent_module
from registry import POLICY_REGISTRY, WORLD_MODEL_REGISTRY
from wm_core.config import ConfigError
from workers.buffer import ReplayBuffer, random_buffer
from worldmodels.latent import (
    SimNorm,
    mog_log_prob,
    n_step_targets,
    rho_weighted_mean,
    validity_mask,
)

OBS_DIM, ACTION_DIM = 3, 1
TINY = dict(type="latent", latent_dim=16, simnorm_dim=4, encoder_hidden_sizes=[16], hidden_sizes=[16, 16],
            num_bins=21, batch_size=32, learning_starts=0, pretrain_steps=0, log_every=1, termination="none")


def spec(obs_dim=OBS_DIM):
    return SimpleNamespace(observation_space=gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
                           action_space=gym.spaces.Box(-2.0, 2.0, (ACTION_DIM,), np.float32))


def model(obs_dim=OBS_DIM, seed=0, **cfg):
    return WORLD_MODEL_REGISTRY.build({**TINY, **cfg}, spec(obs_dim), None, seed=seed)


def episode_buffer(ends, steps=24, seed=0):
    """One env slot; obs[i] = (i, 0, 0) and next_obs[i] = (i + 0.5, 0, 0); ``ends`` maps a row to
    'terminated' or 'truncated'."""
    buffer = ReplayBuffer(steps, (OBS_DIM,), (ACTION_DIM,), seed=seed)
    for i in range(steps):
        obs = np.array([[i, 0.0, 0.0]], np.float32)
        buffer.push(obs, np.array([[0.1 * (i % 5)]], np.float32), np.array([float(i)]), obs + [[0.5, 0, 0]],
                    np.array([ends.get(i) == "terminated"]), np.array([ends.get(i) == "truncated"]))
    return buffer


# -- partial trajectories -------------------------------------------------------
def test_validity_mask_by_hand():
    terminated = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 0, 0], [0, 0, 1]], dtype=torch.float32)
    truncated = torch.tensor([[0, 1, 0], [0, 0, 0], [0, 0, 0], [0, 0, 0]], dtype=torch.float32)
    expected = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 0, 1], [0, 0, 1]], dtype=torch.float32)
    torch.testing.assert_close(validity_mask(terminated, truncated), expected)


def test_partial_trajectories_are_masked_after_terminated_and_truncated_ends():
    ends = {5: "terminated", 11: "truncated", 17: "terminated"}
    wm = model(horizon_k=3, n_step=2, batch_size=400)  # sequences of 4 steps
    batch = wm.sample(episode_buffer(ends))
    assert batch["obs"].shape == (4, 400, OBS_DIM) and batch["valid"].shape == (4, 400)
    first_rows = batch["obs"][0, :, 0].long().tolist()
    seen = set()
    for column, first in enumerate(first_rows):
        rows = range(first, first + 4)
        assert batch["obs"][:, column, 0].long().tolist() == list(rows)
        # step t is valid while none of the rows before it ended an episode
        expected = [float(not any(r in ends for r in range(first, first + t))) for t in range(4)]
        assert batch["valid"][:, column].tolist() == expected, f"window starting at row {first}"
        seen.update(ends[r] for r in rows[:-1] if r in ends)
    assert seen == {"terminated", "truncated"}  # both kinds of end fell inside some window
    # a valid step's consistency target is its own stored next observation
    torch.testing.assert_close(batch["next_obs"][..., 0], batch["obs"][..., 0] + 0.5)


# -- n-step targets ---------------------------------------------------------------
def short_episode():
    """Six steps, three columns: no end; terminated at step 2; truncated at step 1."""
    rewards = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])[:, None].expand(6, 3).clone()
    bootstrap = torch.tensor([10.0, 20.0, 30.0, 40.0, 50.0, 60.0])[:, None].expand(6, 3).clone()
    terminated = torch.zeros(6, 3)
    truncated = torch.zeros(6, 3)
    terminated[2, 1] = 1.0
    truncated[1, 2] = 1.0
    return rewards, terminated, truncated, bootstrap


def test_one_step_targets_by_hand():
    rewards, terminated, truncated, bootstrap = short_episode()
    targets = n_step_targets(rewards, terminated, truncated, bootstrap, 0.5, 1, 4)
    expected = torch.tensor([[1 + 5.0, 2 + 10.0, 3 + 15.0, 4 + 20.0],
                             [1 + 5.0, 2 + 10.0, 3.0, 4 + 20.0],  # no bootstrap from the terminal step 2
                             [1 + 5.0, 2 + 10.0, 3 + 15.0, 4 + 20.0]]).T  # truncation still bootstraps
    torch.testing.assert_close(targets, expected)


def test_three_step_targets_by_hand_with_termination_and_truncation_inside_the_window():
    rewards, terminated, truncated, bootstrap = short_episode()
    targets = n_step_targets(rewards, terminated, truncated, bootstrap, 0.5, 3, 4)
    no_end = [1 + 1 + 0.75 + 0.125 * 30, 2 + 1.5 + 1 + 0.125 * 40, 3 + 2 + 1.25 + 0.125 * 50,
              4 + 2.5 + 1.5 + 0.125 * 60]
    terminated_at_2 = [1 + 1 + 0.75, 2 + 1.5, 3.0, no_end[3]]  # cut at the termination, no bootstrap
    truncated_at_1 = [1 + 1 + 0.25 * 20, 2 + 0.5 * 20, no_end[2], no_end[3]]  # cut, bootstrap from step 1's next obs
    torch.testing.assert_close(targets, torch.tensor([no_end, terminated_at_2, truncated_at_1]).T)


def test_targets_are_cut_at_the_end_of_the_window():
    rewards, terminated, truncated, bootstrap = short_episode()
    targets = n_step_targets(rewards[:4], terminated[:4], truncated[:4], bootstrap[:4], 0.5, 3, 4)
    torch.testing.assert_close(targets[3, 0], torch.tensor(4 + 0.5 * 40))  # one step left, then bootstrap
    torch.testing.assert_close(targets[2, 0], torch.tensor(3 + 0.5 * 4 + 0.25 * 40))


def test_n_step_targets_match_a_step_by_step_loop():
    generator = torch.Generator().manual_seed(0)
    steps, batch, gamma, n_step, horizon = 9, 64, 0.9, 4, 6
    rewards = torch.randn(steps, batch, generator=generator)
    bootstrap = torch.randn(steps, batch, generator=generator)
    terminated = (torch.rand(steps, batch, generator=generator) < 0.15).float()
    truncated = (torch.rand(steps, batch, generator=generator) < 0.15).float()
    expected = torch.zeros(horizon, batch)
    for b in range(batch):
        for t in range(horizon):
            total, discount = 0.0, 1.0
            for j in range(t, min(t + n_step, steps)):
                total += discount * float(rewards[j, b])
                discount *= gamma
                if terminated[j, b] or truncated[j, b] or j == min(t + n_step, steps) - 1:
                    total += discount * (1.0 - float(terminated[j, b])) * float(bootstrap[j, b])
                    break
            expected[t, b] = total
    targets = n_step_targets(rewards, terminated, truncated, bootstrap, gamma, n_step, horizon)
    torch.testing.assert_close(targets, expected, atol=1e-5, rtol=1e-5)


# -- building blocks -----------------------------------------------------------------
def test_mixture_log_likelihood_by_hand():
    target = torch.tensor([1.0, 2.0])
    means = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    log_stds = torch.tensor([[0.0, 0.0], [math.log(2.0), math.log(2.0)]])
    logits = torch.tensor([0.0, math.log(3.0)])  # weights 1/4 and 3/4

    def normal(x, mean, std):
        return math.exp(-0.5 * ((x - mean) / std) ** 2) / (std * math.sqrt(2 * math.pi))

    density = 0.25 * normal(1, 0, 1) * normal(2, 0, 1) + 0.75 * normal(1, 1, 2) * normal(2, 1, 2)
    torch.testing.assert_close(mog_log_prob(target, means, log_stds, logits), torch.tensor(math.log(density)))


def test_simnorm_groups_sum_to_one():
    x = torch.randn(5, 16) * 3
    out = SimNorm(4)(x)
    torch.testing.assert_close(out.view(5, 4, 4).sum(-1), torch.ones(5, 4))
    torch.testing.assert_close(out[:, :4], torch.softmax(x[:, :4], dim=-1))
    big = (torch.randn(3, 2, 16) * 100).requires_grad_()  # exp would overflow without the group max
    out = SimNorm(4)(big)
    expected = torch.softmax(big.reshape(3, 2, 4, 4), dim=-1).reshape(3, 2, 16)
    torch.testing.assert_close(out, expected)
    weights = torch.randn(3, 2, 16)
    grad, = torch.autograd.grad((out * weights).sum(), big)
    expected_grad, = torch.autograd.grad((expected * weights).sum(), big)
    torch.testing.assert_close(grad, expected_grad)
    state = model().encode(torch.randn(7, OBS_DIM))
    torch.testing.assert_close(state.view(7, 4, 4).sum(-1), torch.ones(7, 4))


def test_rho_weighted_mean_by_hand():
    losses = torch.tensor([[1.0, 1.0], [2.0, 2.0], [4.0, 4.0]])
    assert float(rho_weighted_mean(losses, torch.ones(3, 2), 0.5)) == pytest.approx((1 + 0.5 * 2 + 0.25 * 4) / 3)
    valid = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    assert float(rho_weighted_mean(losses, valid, 0.5)) == pytest.approx((1 + 0.5 * 1) / 3)


def test_consistency_loss_weights_each_rollout_step_by_rho_to_the_t():
    wm = model(horizon_k=2, rho=0.25, batch_size=64)
    batch = wm.sample(episode_buffer({3: "terminated", 9: "truncated"}))
    assert 0 < float(batch["valid"][1].sum()) < 64  # some second steps are past an episode's end
    targets = wm.targets(batch)
    _, metrics, _ = wm.loss(batch, targets)
    with torch.no_grad():
        state = wm.encode(batch["obs"][0])
        errors = []
        for t in range(2):
            action = wm.to_unit(batch["action"][t])
            state = wm.dynamics(torch.cat([state, action], -1), state).means[0, :, 0]
            errors.append((state - wm.encode(batch["next_obs"][t])).pow(2).mean(-1))
    valid = batch["valid"]
    expected = ((valid[0] * errors[0]).mean() + 0.25 * (valid[1] * errors[1]).mean()) / 2
    assert metrics["consistency_loss"] == pytest.approx(float(expected), rel=1e-5)


def test_q_dropout_zeroes_first_layer_units_with_the_generator_and_only_in_the_losses(monkeypatch):
    wm = model(num_q=2, q_dropout=0.25)
    net = wm.q_ensemble
    with torch.no_grad():
        for param in net.parameters():
            param.copy_(torch.randn_like(param))
    x = torch.randn(6, net.weights[0].shape[1])
    masks = torch.Generator().manual_seed(3)
    with torch.no_grad():
        dropped = net(x, dropout=0.25, generator=torch.Generator().manual_seed(3))
        hidden = torch.matmul(x, net.weights[0]) + net.biases[0]
        keep = torch.rand(hidden.shape, generator=masks) >= 0.25
        assert 0 < keep.float().mean() < 1
        hidden = hidden * keep / 0.75
        for i in range(1, len(net.weights)):
            hidden = F.silu(F.layer_norm(hidden, hidden.shape[-1:]) * net.norm_weights[i - 1] + net.norm_biases[i - 1])
            hidden = torch.matmul(hidden, net.weights[i]) + net.biases[i]
        torch.testing.assert_close(dropped, hidden)
        plain = net(x)
        assert not torch.allclose(dropped, plain)
        torch.testing.assert_close(net(x, dropout=0.0, generator=torch.Generator().manual_seed(3)), plain)
    # planning's value and the Q targets see the whole net; the value and actor losses drop units
    calls = []
    real = type(net).forward

    def record(self, inputs, members=None, dropout=0.0, generator=None):
        calls.append((self is wm.target_q, dropout))
        return real(self, inputs, members, dropout, generator)

    monkeypatch.setattr(latent_module.EnsembleMLP, "forward", record)
    state = wm.encode(torch.randn(4, OBS_DIM))
    wm.value(state)
    wm.target_value(state)
    assert calls == [(False, 0.0), (True, 0.0)]
    calls.clear()
    wm.train_step(wm.sample(pendulum_buffer()))
    assert all(d == 0.0 for target, d in calls if target)
    assert sum(1 for target, d in calls if not target and d == 0.25) == 2  # the value loss and the actor's Q


def test_polyak_update_moves_the_target_qs_by_tau():
    wm = model(tau=0.1)
    with torch.no_grad():
        for online in wm.q_ensemble.parameters():
            online.add_(torch.randn_like(online))
    before = [p.clone() for p in wm.target_q.parameters()]
    wm.polyak_update()
    for old, new, online in zip(before, wm.target_q.parameters(), wm.q_ensemble.parameters(), strict=True):
        torch.testing.assert_close(new, old + 0.1 * (online - old))


# -- value and planning -------------------------------------------------------------------
def test_value_is_the_mean_of_two_drawn_qs_at_the_actors_action():
    wm = model(num_q=5)
    q_of_member = torch.tensor([1.0, 10.0, 100.0, 1000.0, 10000.0])
    wm.q_values = lambda state, unit, members, target=False: q_of_member[members][:, None] + unit.sum(-1)[None]
    state = wm.encode(torch.randn(3, OBS_DIM))
    pairs = set()
    for seed in range(12):
        generator = torch.Generator().manual_seed(seed)
        replay = torch.Generator().manual_seed(seed)
        unit, _ = wm.actor(state, replay)  # the action is drawn first, then the two members
        members = torch.randperm(5, generator=replay)[:2]
        with torch.no_grad():
            value = wm.value(state, generator)
        expected = q_of_member[members].mean() + unit.sum(-1)
        torch.testing.assert_close(value, expected)
        pair_sum = round(float((value - unit.sum(-1))[0].detach()) * 2)
        digits = [int(d) for d in str(pair_sum)]
        assert sorted(digits, reverse=True)[0] == 1 and sum(digits) == 2  # two distinct members
        pairs.add(pair_sum)
    assert len(pairs) > 3  # different generators draw different pairs
    target = wm.target_value(state, torch.Generator().manual_seed(0))
    replay = torch.Generator().manual_seed(0)
    unit, _ = wm.actor(state, replay)
    torch.testing.assert_close(target, q_of_member[torch.randperm(5, generator=replay)[:2]].min() + unit.sum(-1))


def test_policy_action_is_in_env_scale_and_deterministic_on_request():
    wm = model()
    with torch.no_grad():
        state = wm.encode(torch.randn(50, OBS_DIM))
        sampled = wm.policy_action(state, generator=torch.Generator().manual_seed(1))
        assert sampled.shape == (50, 1) and float(sampled.abs().max()) <= 2.0
        mean = wm.policy_action(state, deterministic=True)
        torch.testing.assert_close(mean, 2.0 * torch.tanh(wm.actor.net(state).chunk(2, -1)[0]))


def planner(wm, **cfg):
    cfg = {"type": "mppi", "horizon": 3, "candidates": 32, "iterations": 2, "elites": 8, "prior_candidates": 4,
           "value_bootstrap": True, "temperature": 0.5, "propagation": "ts_1", **cfg}
    return POLICY_REGISTRY.build(cfg, spec(), world_model=wm, seed=0)


def test_mppi_plans_through_the_latent_model():
    wm = model()
    policy = planner(wm)
    obs = torch.randn(2, OBS_DIM)
    action = policy.act(obs)
    assert action.shape == (2, ACTION_DIM) and float(action.abs().max()) <= 2.0
    policy.reset(evaluation=True)
    torch.testing.assert_close(policy.act(obs), action)  # evaluation replans identically
    members = model(dynamics_members=2, dynamics_modes=2, deterministic_dynamics=False)
    ts_inf = planner(members, propagation="ts_inf")
    assert ts_inf.particles == 2 and ts_inf.collect(obs).shape == (2, ACTION_DIM)


def test_a_compiled_planner_plans_as_the_eager_one_with_the_same_random_draws():
    # stochastic dynamics draw at every step (from the model's generator), the samples, the prior
    # and the bootstrap draw from the planner's: the compiled loop must leave every draw to the
    # generators, in the eager order
    wm = model(dynamics_members=2, dynamics_modes=2, deterministic_dynamics=False)
    eager, compiled = planner(wm), planner(wm, compile=True)
    assert eager.compiled_optimize is None and compiled.compiled_optimize is not None
    obs = torch.randn(2, OBS_DIM)

    def both(method):
        before = wm.generator.get_state()
        expected = getattr(eager, method)(obs)
        after = wm.generator.get_state()
        wm.generator.set_state(before)
        got = getattr(compiled, method)(obs)
        assert torch.equal(wm.generator.get_state(), after)
        return got, expected

    for _ in range(2):  # the second call starts from the first's shifted plan
        torch.testing.assert_close(*both("collect"), rtol=1e-4, atol=1e-4)
        assert torch.equal(compiled.generator.get_state(), eager.generator.get_state())
        torch.testing.assert_close(compiled.plans["collect"], eager.plans["collect"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(*both("act"), rtol=1e-4, atol=1e-4)
    compiled.generator.manual_seed(123)  # other draws, another plan: nothing was baked in
    assert not torch.allclose(*both("collect"))
    # another model's weights (the compiled code is shared, its parameters are inputs)
    other = model(seed=1)
    torch.testing.assert_close(planner(other, compile=True).act(obs), planner(other).act(obs),
                               rtol=1e-4, atol=1e-4)


def test_imagine_step_follows_the_named_member_and_draws_with_the_generator():
    wm = model(dynamics_members=3, dynamics_modes=2, deterministic_dynamics=False)
    state = wm.encode(torch.randn(4, OBS_DIM))
    action = torch.ones(4, 1)
    members = torch.tensor([0, 1, 2, 1])
    first = wm.imagine_step_members(state, action, members, generator=torch.Generator().manual_seed(3))
    again = wm.imagine_step_members(state, action, members, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(first[1], again[1])
    single = wm.imagine_step_members(state[1:2], action[:1], members[1:2], generator=torch.Generator().manual_seed(3))
    assert first[1].shape == (4, 16) and single[1].shape == (1, 16)
    assert first[2].dtype == torch.bool and not bool(first[2].any())  # termination 'none'


def test_goal_context_is_carried_through_imagination_unchanged():
    wm = model(obs_dim=5, context="goal", context_slice=[1, 3])
    obs = torch.randn(4, 5)
    state = wm.encode(obs)
    assert state.shape == (4, 18)
    torch.testing.assert_close(state[:, 16:], obs[:, 1:3])
    _, next_state, _ = wm.imagine_step(state, torch.zeros(4, 1))
    torch.testing.assert_close(next_state[:, 16:], obs[:, 1:3])


def test_step_on_observations_is_a_clear_error():
    with pytest.raises(ConfigError, match="predicts latent states, not observations.*imagine_step"):
        model().step(torch.zeros(1, OBS_DIM), torch.zeros(1, 1))


# -- training -----------------------------------------------------------------------
def pendulum_buffer():
    return random_buffer(gym.make("Pendulum-v1"), 300, seed=0)


def test_training_lowers_the_loss():
    wm = WORLD_MODEL_REGISTRY.build({**TINY, "batch_size": 64}, gym.make("Pendulum-v1"), None, seed=0)
    buffer = pendulum_buffer()
    first = wm.train_step(wm.sample(buffer))["loss"]
    losses = [wm.train_step(wm.sample(buffer))["loss"] for _ in range(150)]
    assert np.mean(losses[-10:]) < 0.5 * first
    assert wm.gradient_steps == 151


@pytest.mark.parametrize("extra", [dict(n_step=3), dict(standardize_deltas=True, simnorm=False),
                                   dict(termination="learned", dynamics_modes=2, deterministic_dynamics=False),
                                   dict(lr_warmup_steps=10), dict(q_dropout=0.01)])
def test_variants_train_with_finite_losses(extra):
    wm = WORLD_MODEL_REGISTRY.build({**TINY, **extra}, gym.make("Pendulum-v1"), None, seed=0)
    buffer = pendulum_buffer()
    for _ in range(3):
        metrics = wm.train_step(wm.sample(buffer))
    assert all(math.isfinite(v) for v in metrics.values()) and metrics["nonfinite_skipped"] == 0
    if extra.get("termination") == "learned":
        assert "termination_loss" in metrics
    if extra.get("standardize_deltas"):
        assert float(wm.delta_stats.mean.abs().sum()) > 0
    if extra.get("lr_warmup_steps"):
        assert wm.optimizers["model"].param_groups[1]["lr"] == pytest.approx(3e-4 * 3 / 10)


def test_train_owes_replay_ratio_steps_and_pretrains_once():
    wm = WORLD_MODEL_REGISTRY.build({**TINY, "pretrain_steps": 4, "replay_ratio": 0.5, "learning_starts": 100},
                                    gym.make("Pendulum-v1"), None, seed=0)
    buffer = pendulum_buffer()
    assert not wm.should_train(99) and wm.should_train(100)
    wm.train(buffer, 100, 0)
    assert wm.gradient_steps == 4
    wm.train(buffer, 103, 0)
    wm.train(buffer, 104, 0)
    assert wm.gradient_steps == 6  # 0.5 x 4 env steps, the half step carried over


@pytest.mark.parametrize("q_dropout", [0.0, 0.2])
def test_state_dict_resumes_training_exactly(q_dropout):
    env = gym.make("Pendulum-v1")
    first = WORLD_MODEL_REGISTRY.build({**TINY, "q_dropout": q_dropout}, env, None, seed=0)
    buffer = pendulum_buffer()
    for _ in range(3):
        first.train_step(first.sample(buffer))
    second = WORLD_MODEL_REGISTRY.build({**TINY, "q_dropout": q_dropout}, env, None, seed=5)
    saved = io.BytesIO()  # through bytes as a checkpoint goes (a loaded optimiser would share tensors)
    torch.save(first.state_dict(), saved)
    saved.seek(0)
    second.load_state_dict(torch.load(saved))
    replay = pendulum_buffer()
    replay.load_state_dict(buffer.state_dict())
    first.train_step(first.sample(buffer))
    second.train_step(second.sample(replay))
    for (name, a), b in zip(first.nets.state_dict().items(), second.nets.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


def test_termination_auto_is_off_for_envs_that_never_terminate():
    assert model(termination="auto", env_id="dm_control/cartpole-swingup-v0").termination_head is None
    assert model(termination="auto", env_id="Hopper-v5").termination_head is not None


@pytest.mark.parametrize("cfg, message", [
    (dict(deterministic_dynamics=True, dynamics_modes=2), "deterministic_dynamics needs dynamics_modes=1"),
    (dict(standardize_deltas=True), "standardize_deltas .* needs simnorm=False"),
    (dict(latent_dim=10), r"latent_dim \(10\) must be a multiple of world_model.simnorm_dim \(4\)"),
    (dict(context="goal", context_slice=[2, 9]), "context_slice must be"),
    (dict(num_q=1), "num_q"),
    (dict(q_dropout=1.0), r"world_model.q_dropout' must be within \[0.0, 1.0\), got 1.0"),
    (dict(horizon_kk=3), "did you mean 'horizon_k'"),
])
def test_config_errors_name_the_problem(cfg, message):
    with pytest.raises(ConfigError, match=message):
        model(**cfg)


# -- the latent model as a Dream model ------------------------------------------------
def test_the_dreamer_actor_critic_learns_and_acts_through_the_latent_model():
    wm = WORLD_MODEL_REGISTRY.build({**TINY, "batch_size": 8}, gym.make("Pendulum-v1"), None, seed=0)
    assert wm.acting_contract_gaps() == []
    policy = POLICY_REGISTRY.build({"type": "dreamer", "imagine_starts": 0, "critic_bins": 21},
                                   gym.make("Pendulum-v1"), world_model=wm, seed=0)
    assert wm.imagination_starts() is None  # nothing to imagine from before the first training
    batch = wm.sample(pendulum_buffer())
    with torch.no_grad():
        first_latents = wm.encode(batch["obs"][0])  # before the step changes the encoder
    wm.train_step(batch)
    starts = wm.imagination_starts()
    assert torch.equal(starts.features, first_latents) and torch.equal(starts.continues, torch.ones(8))
    actor_before = [p.detach().clone() for p in policy.actor.parameters()]
    metrics = policy.learn(starts)
    assert metrics and all(math.isfinite(v) for v in metrics.values())
    assert any(not torch.equal(a, p) for a, p in zip(actor_before, policy.actor.parameters(), strict=True))
    obs = torch.as_tensor(gym.make("Pendulum-v1").reset(seed=0)[0])[None]
    action = policy.act(obs)
    assert action.shape == (1, 1) and -2.0 <= float(action) <= 2.0


def test_a_dream_rollout_takes_unit_actions_and_carries_their_gradient():
    wm = model(seed=0)
    state = wm.encode(torch.randn(4, OBS_DIM))
    unit = torch.full((4, ACTION_DIM), 0.5, requires_grad=True)
    reward, next_state, done = wm.dream_step(state, unit)
    env_reward, env_next, _ = wm.imagine_step(state, unit.detach() * 2.0)  # env scale: [-2, 2]
    torch.testing.assert_close(next_state, env_next)
    torch.testing.assert_close(reward, env_reward)
    (next_state.sum() + reward.sum()).backward()
    assert unit.grad is not None and unit.grad.abs().sum() > 0
    assert done.dtype == torch.bool and done.shape == (4,)
