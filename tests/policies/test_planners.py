"""Planners (cem, icem, mppi): optimum of known costs through fake models, TS-infinity,
warm start, categorical CEM, errors; mbpo's planning interface."""
import math
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch

from policies.planners import colored_noise
from registry import POLICY_REGISTRY, WORLD_MODEL_REGISTRY
from wm_core.config import ConfigError
from wm_envs.termination import cart_pole

TARGET = torch.tensor([0.5, -1.0])  # env-scale optimum inside Box(-2, 2)


def spec(action_space, obs_dim=1):
    return SimpleNamespace(observation_space=gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
                           action_space=action_space)


class QuadraticModel:
    """reward = -|action - TARGET|^2 at every step; the state is a step counter."""

    cfg = SimpleNamespace(type="quadratic")

    def step(self, obs, action):
        reward = -(action - TARGET).pow(2).sum(-1)
        return reward, obs + 1, torch.zeros(obs.shape[0], dtype=torch.bool)


class MemberModel:
    """An ensemble whose member m pays reward m; records the members of every call."""

    cfg = SimpleNamespace(type="members")
    planning_members = 3

    def __init__(self):
        self.calls = []

    def step(self, obs, action):
        raise AssertionError("ts_inf must not call step")

    def step_members(self, obs, action, members, generator=None):
        self.calls.append(members.clone())
        return members.float(), obs, torch.zeros(obs.shape[0], dtype=torch.bool)


def planner(kind, model, action_space=None, **cfg):
    action_space = action_space or gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
    cfg = {"type": kind, "horizon": 3, "candidates": 300, "iterations": 6, "elites": 30,
           "propagation": "ts_1", "collect_noise": 0.0, **cfg}
    return POLICY_REGISTRY.build(cfg, spec(action_space), world_model=model, seed=0)


@pytest.mark.parametrize("kind", ["cem", "icem", "mppi"])
def test_planners_find_the_optimum_of_a_quadratic_cost(kind):
    policy = planner(kind, QuadraticModel())
    action = policy.act(torch.zeros(2, 1))
    assert action.shape == (2, 2)
    torch.testing.assert_close(action, TARGET.expand(2, 2), atol=0.1, rtol=0)  # 2.5% of the range


def test_ts_inf_keeps_each_particle_on_one_member_for_the_whole_horizon():
    model = MemberModel()
    policy = planner("cem", model, propagation="ts_inf", horizon=4, candidates=5, elites=2, iterations=1)
    assert policy.particles == 3
    sequences = torch.zeros(1, 5, 4, 2)
    returns = policy.evaluate(torch.zeros(1, 1), sequences)
    assert len(model.calls) == 4
    for members in model.calls:
        torch.testing.assert_close(members, torch.tensor([0, 1, 2] * 5))
    torch.testing.assert_close(returns, torch.full((1, 5), 4.0))  # mean of member rewards 0, 1, 2 over 4 steps


def test_returns_are_discounted_and_stop_at_a_predicted_termination():
    class Terminating(QuadraticModel):
        def step(self, obs, action):
            reward = torch.ones(obs.shape[0])
            return reward, obs + 1, (obs[:, 0] + 1) >= 2  # done on arriving at step 2

    policy = planner("cem", Terminating(), horizon=5, gamma=0.5, candidates=4, elites=2)
    returns = policy.evaluate(torch.zeros(1, 1), torch.zeros(1, 4, 5, 2))
    torch.testing.assert_close(returns, torch.full((1, 4), 1 + 0.5))  # steps 0 and 1, then terminated


def test_value_bootstrap_is_added_only_to_candidates_that_did_not_terminate():
    class TerminatingWithValue(QuadraticModel):
        def step(self, obs, action):  # pays 1 per step; done on arriving at state 2
            return torch.ones(obs.shape[0]), obs + 1, (obs[:, 0] + 1) == 2

        def value(self, state, generator=None):
            return torch.full((state.shape[0],), 100.0)

    policy = planner("cem", TerminatingWithValue(), horizon=3, gamma=0.5, candidates=2, elites=1,
                     value_bootstrap=True)
    returns = policy.evaluate(torch.tensor([[0.0], [10.0]]), torch.zeros(2, 2, 3, 2))
    expected = torch.tensor([1 + 0.5, 1 + 0.5 + 0.25 + 0.125 * 100])  # row 0 terminates at step 1
    torch.testing.assert_close(returns, expected[:, None].expand(2, 2))


def test_mppi_refits_to_elites_weighted_by_exp_temperature_times_return():
    policy = planner("mppi", QuadraticModel(), temperature=2.0, min_std=0.0, elites=3)
    elites = torch.tensor([0.0, 1.0, 0.5])[None, :, None, None].expand(1, 3, 3, 2)
    returns = torch.tensor([[3.0, 2.0, 1.0]])  # best first
    raw = [math.exp(2.0 * (r - 3.0)) for r in (3.0, 2.0, 1.0)]
    weights = [w / sum(raw) for w in raw]
    mean = sum(w * e for w, e in zip(weights, (0.0, 1.0, 0.5), strict=True))
    std = math.sqrt(sum(w * (e - mean) ** 2 for w, e in zip(weights, (0.0, 1.0, 0.5), strict=True)))
    new_mean, new_std = policy.refit(torch.zeros(1, 3, 2), torch.ones(1, 3, 2), elites, returns)
    torch.testing.assert_close(new_mean, torch.full((1, 3, 2), mean))
    torch.testing.assert_close(new_std, torch.full((1, 3, 2), std))


def test_warm_start_shifts_the_plan_and_resets_at_episode_start():
    policy = planner("cem", QuadraticModel(), horizon=4)
    captured = {}
    optimize = policy.optimize

    def spy(obs, start, kept):
        captured["start"] = start.clone()
        mean, first, kept = optimize(obs, start, kept)
        captured["mean"] = mean.clone()
        return mean, first, kept

    policy.optimize = spy
    policy.collect(torch.zeros(2, 1))
    plan = policy.plans["collect"]
    torch.testing.assert_close(plan[:, :3], captured["mean"][:, 1:])
    torch.testing.assert_close(plan[:, 3], torch.zeros(2, 2))
    policy.collect(torch.zeros(2, 1))
    assert policy.plans["act"] is None  # evaluation keeps its own plan
    shifted = policy.plans["collect"].clone()
    policy.reset(torch.tensor([True, False]))
    torch.testing.assert_close(policy.plans["collect"][0], torch.zeros(4, 2))
    torch.testing.assert_close(policy.plans["collect"][1], shifted[1])
    policy.collect(torch.zeros(2, 1))
    torch.testing.assert_close(captured["start"][1], shifted[1])


def test_evaluation_replans_identically_and_leaves_the_training_streams_alone():
    policy = planner("cem", QuadraticModel(), iterations=1, candidates=20, elites=5)
    before = policy.generator.get_state()
    policy.reset(evaluation=True)
    first = policy.act(torch.zeros(1, 1))
    policy.reset(evaluation=True)
    second = policy.act(torch.zeros(1, 1))
    torch.testing.assert_close(first, second)
    assert torch.equal(policy.generator.get_state(), before)
    policy.collect(torch.zeros(1, 1))
    assert not torch.equal(policy.generator.get_state(), before)


def test_categorical_cem_plans_a_time_dependent_discrete_sequence():
    class Counter(QuadraticModel):
        def step(self, obs, action):  # pays 1 for action (t mod 3) at step t
            reward = (action == obs[:, 0].long() % 3).float()
            return reward, obs + 1, torch.zeros(obs.shape[0], dtype=torch.bool)

    policy = planner("cem", Counter(), action_space=gym.spaces.Discrete(3), horizon=4, candidates=200,
                     elites=10, iterations=4)
    action = policy.act(torch.tensor([[0.0], [1.0], [2.0]]))
    assert action.tolist() == [0, 1, 2]
    torch.testing.assert_close(policy.plans["act"][0, :3].argmax(-1), torch.tensor([1, 2, 0]))


def test_icem_carries_elites_to_the_next_step_shifted():
    policy = planner("icem", QuadraticModel(), horizon=4, keep_elites=0.2, elites=10)
    policy.act(torch.zeros(1, 1))
    kept = policy.kept["act"]
    assert kept.shape == (1, 2, 4, 2)
    torch.testing.assert_close(kept[:, :, 3], torch.zeros(1, 2, 2))


def test_icem_carries_the_best_elites():
    policy = planner("icem", QuadraticModel(), horizon=2, keep_elites=0.2, elites=10, candidates=10)
    sequences = torch.arange(10.0)[None, :, None, None].expand(1, 10, 2, 2)
    returns = torch.tensor([[3.0, 9.0, 0.0, 5.0, 1.0, 8.0, 2.0, 7.0, 4.0, 6.0]])
    _, elites = policy.select_elites(sequences, returns)
    kept = policy.carry(elites)
    assert kept[0, :, 0, 0].tolist() == [1.0, 5.0]  # the candidates of returns 9 and 8


def test_colored_noise_is_unit_variance_and_smoother_with_a_larger_exponent():
    generator = torch.Generator().manual_seed(0)
    white = colored_noise((2000, 32, 1), 0.0, generator, torch.device("cpu"))
    red = colored_noise((2000, 32, 1), 2.0, generator, torch.device("cpu"))

    def lag1(x):
        return float((x[:, 1:] * x[:, :-1]).mean() / x.pow(2).mean())

    assert abs(float(red.std()) - 1.0) < 0.05 and abs(float(white.std()) - 1.0) < 0.05
    assert abs(lag1(white)) < 0.05 and lag1(red) > 0.6


def test_planner_errors_name_what_is_missing():
    with pytest.raises(ConfigError, match="plans through a world model's step.*no world model"):
        planner("cem", None)
    with pytest.raises(ConfigError, match=r"propagation='ts_inf' needs a world model with step_members and "
                                          r"planning_members.*'quadratic' has none: use propagation='ts_1'"):
        planner("cem", QuadraticModel(), propagation="ts_inf")
    with pytest.raises(ConfigError, match="policy 'mppi' plans continuous actions"):
        planner("mppi", QuadraticModel(), action_space=gym.spaces.Discrete(3))
    with pytest.raises(ConfigError, match=r"policy.elites \(50\) must be <= policy.candidates \(10\)"):
        planner("cem", QuadraticModel(), candidates=10, elites=50)
    with pytest.raises(ConfigError, match=r"policy.value_bootstrap needs a policy.prior .* or a world model with "
                                          r"value\(state\); world model 'quadratic' has none"):
        planner("cem", QuadraticModel(), value_bootstrap=True)
    with pytest.raises(ConfigError, match=r"'policy.compile' expects a bool \(True/False\), got 'yes'"):
        planner("cem", QuadraticModel(), compile="yes")


def test_compile_plans_through_the_compiled_function(monkeypatch):
    calls = []

    def fake_compile(fn, **kwargs):
        def compiled(*args):
            calls.append(kwargs)
            return fn(*args)
        return compiled

    monkeypatch.setattr("policies.planners.torch.compile", fake_compile)
    policy = planner("cem", QuadraticModel(), compile=True, iterations=3)
    policy.act(torch.zeros(1, 1))
    assert calls == [{"dynamic": False}]  # one compiled planning loop per call, its 3 iterations inside


def test_compile_without_a_cpp_compiler_is_a_named_error(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr("policies.planners.shutil.which", lambda name: None)
    with pytest.raises(ConfigError, match=r"policy.compile=True needs a C\+\+ compiler on the CPU \(looked for "
                                          r"g\+\+, c\+\+, clang\+\+\).*or set policy.compile=False"):
        planner("cem", QuadraticModel(), compile=True)
    monkeypatch.setenv("CXX", "my-cxx")
    monkeypatch.setattr("policies.planners.shutil.which", lambda name: "/usr/bin/my-cxx" if name == "my-cxx" else None)
    assert planner("cem", QuadraticModel(), compile=True).compiled_optimize is not None


def test_prior_candidates_and_value_bootstrap_through_a_sac_prior():
    policy = planner("cem", QuadraticModel(), prior={"type": "sac", "hidden_sizes": [8, 8]}, prior_candidates=5,
                     value_bootstrap=True, candidates=20, elites=5, iterations=1)
    obs = torch.zeros(1, 1)
    sequences = policy.prior_sequences(obs)
    assert sequences.shape == (1, 5, 3, 2) and sequences.abs().max() <= 1
    no_value = planner("cem", QuadraticModel(), candidates=20, elites=5, iterations=1)
    fixed = torch.zeros(1, 4, 3, 2)
    final_state = obs + 3
    expected = no_value.evaluate(obs, fixed) + policy.prior.value(final_state)
    torch.testing.assert_close(policy.evaluate(obs, fixed), expected.expand(1, 4))


def test_the_prior_candidates_are_rolled_out_once_per_call_and_scored_at_every_iteration():
    policy = planner("cem", QuadraticModel(), prior={"type": "sac", "hidden_sizes": [8, 8]}, prior_candidates=5,
                     candidates=20, elites=5, iterations=3)
    rolled, scored = [], []
    real_prior, real_evaluate = policy.prior_sequences, policy.evaluate
    policy.prior_sequences = lambda obs: rolled.append(real_prior(obs)) or rolled[-1]
    policy.evaluate = lambda obs, sequences: scored.append(sequences) or real_evaluate(obs, sequences)
    policy.collect(torch.zeros(1, 1))
    assert len(rolled) == 1 and len(scored) == 3  # TD-MPC2's policy trajectories: one rollout per call
    assert all(torch.equal(sequences[:, -5:], rolled[0]) for sequences in scored)


def mbpo_model(deterministic=True, action_space=None):
    env = spec(action_space or gym.spaces.Box(-1.0, 1.0, (1,), np.float32), obs_dim=2)
    cfg = {"type": "mbpo", "ensemble_size": 3, "elite_size": 2, "hidden_sizes": [8], "weight_decays": [0.0, 0.0],
           "deterministic": deterministic, "termination": "none"}
    return WORLD_MODEL_REGISTRY.build(cfg, env, None, seed=0)


def test_mbpo_step_members_uses_the_named_elite_per_row_and_step_mean_averages_them():
    model = mbpo_model()
    model.ensemble.elites = torch.tensor([2, 0])
    obs, action = torch.randn(4, 2), torch.rand(4, 1) * 2 - 1
    members = torch.tensor([0, 1, 1, 0])
    reward, next_obs, done = model.step_members(obs, action, members)
    mean, _, _ = model.ensemble(torch.cat([obs, action], -1), torch.tensor([2, 0]))
    chosen = mean[members, torch.arange(4)]
    torch.testing.assert_close(reward, chosen[:, 0])
    torch.testing.assert_close(next_obs, obs + chosen[:, 1:])
    assert model.planning_members == 2 and not done.any()
    reward, next_obs, _ = model.step_mean(obs, action)
    torch.testing.assert_close(reward, mean[..., 0].mean(0))
    torch.testing.assert_close(next_obs, obs + mean[..., 1:].mean(0))
    with pytest.raises(ValueError, match="indices into the 2 elites"):
        model.step_members(obs, action, torch.tensor([0, 1, 2, 0]))


def test_mbpo_takes_discrete_actions_one_hot():
    model = mbpo_model(action_space=gym.spaces.Discrete(3))
    obs = torch.randn(3, 2)
    reward, _, _ = model.step_members(obs, torch.tensor([0, 2, 1]), torch.zeros(3, dtype=torch.long))
    one_hot = torch.eye(3)[[0, 2, 1]]
    mean, _, _ = model.ensemble(torch.cat([obs, one_hot], -1), model.ensemble.elites[:1])
    torch.testing.assert_close(reward, mean[0, :, 0])


def test_cart_pole_termination_matches_gymnasium():
    limit = 12 * 2 * math.pi / 360
    next_obs = torch.tensor([[0.0, 0, 0, 0], [2.41, 0, 0, 0], [-2.41, 0, 0, 0], [0, 0, limit + 1e-3, 0],
                             [0, 0, -limit - 1e-3, 0], [2.39, 5.0, limit - 1e-3, -5.0], [float("nan"), 0, 0, 0]])
    done = cart_pole(torch.zeros(7, 4), torch.zeros(7, 2), next_obs)
    assert done.tolist() == [False, True, True, True, True, False, True]


def test_a_planning_only_mbpo_never_fills_imagination():
    env = spec(gym.spaces.Box(-1.0, 1.0, (1,), np.float32), obs_dim=2)
    model = WORLD_MODEL_REGISTRY.build({"type": "mbpo", "hidden_sizes": [8], "weight_decays": [0.0, 0.0],
                                        "rollout_length_scheduler": {"type": "constant", "rollout_length": 0}},
                                       env, None, seed=0)
    model.last_train_envstep = 250
    assert not model.should_fill(500) and model.img_buffer_capacity(500) == 1


class LatentQuadratic:
    """A latent model: encode doubles the observation; the state counts steps; value = 10 * state."""

    cfg = SimpleNamespace(type="latent_quadratic")

    def __init__(self):
        self.encoded = []

    def encode(self, obs):
        self.encoded.append(obs.clone())
        return obs * 2

    def imagine_step(self, state, action):
        return -(action - TARGET).pow(2).sum(-1), state + 1, torch.zeros(state.shape[0], dtype=torch.bool)

    def value(self, state, generator=None):
        return 10 * state[:, 0]

    def policy_action(self, state, deterministic, generator=None):
        return TARGET.expand(state.shape[0], 2)


def test_latent_models_are_planned_through_in_their_state_with_their_own_value_and_policy():
    model = LatentQuadratic()
    policy = planner("mppi", model, value_bootstrap=True, prior_candidates=4, candidates=50, elites=10)
    obs = torch.tensor([[1.0]])
    action = policy.act(obs)
    assert len(model.encoded) == 1 and torch.equal(model.encoded[0], obs)
    torch.testing.assert_close(action, TARGET[None], atol=0.05, rtol=0)  # the prior proposes the exact optimum
    sequences = torch.zeros(1, 2, 3, 2)
    expected = -(policy._scale(sequences[0, 0, 0]) - TARGET).pow(2).sum() * 3 + 10 * (2.0 + 3)
    torch.testing.assert_close(policy.evaluate(model.encode(obs), sequences), expected.expand(1, 2))
    with pytest.raises(ConfigError, match="policy.prior acts on observations"):
        planner("cem", model, prior={"type": "sac"})


def test_elite_sample_takes_a_final_elites_first_action_drawn_with_the_refit_weights(monkeypatch):
    policy = planner("mppi", QuadraticModel(), action_choice="elite_sample", temperature=1.0, elites=3)
    elites = torch.tensor([[0.5, -0.5], [0.0, 0.25], [-1.0, 1.0]])[None, :, None, :].expand(1, 3, 3, 2)
    returns = torch.tensor([[2.0, 1.0, 0.0]])
    weights = policy.elite_weights(returns)
    torch.testing.assert_close(weights, torch.softmax(torch.tensor([[0.0, -1.0, -2.0]]), dim=1))
    drawn = []
    real = torch.multinomial

    def record(probs, count, generator=None):
        drawn.append(probs.clone())
        return real(probs, count, generator=generator)

    monkeypatch.setattr(torch, "multinomial", record)
    counts = torch.zeros(3)
    for _ in range(600):
        action = policy.first_action(torch.zeros(1, 3, 2), elites[:, 0], elites, returns)
        row = [i for i in range(3) if torch.allclose(action[0], policy._scale(elites[0, i, 0]))]
        assert len(row) == 1  # always one elite's first action, never a blend
        counts[row[0]] += 1
    torch.testing.assert_close(drawn[0], weights)
    torch.testing.assert_close(counts / 600, weights[0], atol=0.06, rtol=0)
    cem = planner("cem", QuadraticModel(), action_choice="elite_sample", elites=3)
    torch.testing.assert_close(cem.elite_weights(returns), torch.full((1, 3), 1 / 3))
    mean_choice = planner("mppi", QuadraticModel(), elites=3)
    mean = torch.full((1, 3, 2), 0.25)
    torch.testing.assert_close(mean_choice.first_action(mean, elites[:, 0], elites, returns), torch.full((1, 2), 0.5))


def test_collect_plan_std_noise_is_the_final_distributions_first_step_std():
    kwargs = dict(action_choice="mean", min_std=0.0, iterations=2, candidates=64, elites=8)
    noisy = planner("mppi", QuadraticModel(), collect_noise=5.0, collect_plan_std=True, **kwargs)
    obs = torch.zeros(4, 1)
    noisy.generator.manual_seed(5)
    planned = noisy.plan(obs, "collect")
    std = noisy.first_std.clone()
    assert std.shape == (4, 2) and (std > 0).all()
    # collect: the same plan from the same generator state, then noise of exactly that std
    noisy.generator.manual_seed(5)
    noisy.plans["collect"] = None
    unit = noisy._unscale(planned)
    state = noisy.generator.get_state()
    noisy.plan(obs, "collect")
    expected_noise = torch.randn(unit.shape, generator=noisy.generator)
    noisy.generator.set_state(state)
    noisy.plans["collect"] = None
    collected = noisy.collect(obs)
    torch.testing.assert_close(collected, noisy._scale((unit + std * expected_noise).clamp(-1.0, 1.0)))
    with pytest.raises(ConfigError, match=r"'policy.action_choice' must be one of mean, elite_sample, got 'best'"):
        planner("mppi", QuadraticModel(), action_choice="best")
    with pytest.raises(ConfigError, match="policy.collect_plan_std is Gaussian noise for continuous actions"):
        planner("cem", QuadraticModel(), action_space=gym.spaces.Discrete(3), collect_plan_std=True)
