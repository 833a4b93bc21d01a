import gymnasium as gym
import pytest
import torch

from registry import POLICY_REGISTRY, WORLD_MODEL_REGISTRY
from wm_core.config import ConfigError
from wm_core.protocols import ValueExpander
from worldmodels.steve import combine_horizons, expanded_targets


def one(*values):
    """A [H, M=1, B=1] (or [H+1, 1, S=1, 1]) tensor from per-horizon scalars."""
    return torch.tensor(values, dtype=torch.float32).reshape(len(values), 1, 1)


def test_expanded_targets_by_hand():
    values = one(10.0, 20.0, 40.0).unsqueeze(2)  # V(s1), V(s2), V(s3): [3, M, S, B]
    rewards = one(2.0, 4.0)  # r1, r2
    reward, live = torch.tensor([1.0]), torch.tensor([0.0])
    # no termination: T0 = 1 + .5*10, T1 = 1 + .5*2 + .25*20, T2 = 1 + .5*2 + .25*4 + .125*40
    targets = expanded_targets(reward, live, values, rewards, one(0.0, 0.0), gamma=0.5)
    assert targets.flatten().tolist() == [6.0, 7.0, 8.0]
    # s3 terminal (done after the second imagined step): its value drops out, r2 stays
    assert expanded_targets(reward, live, values, rewards, one(0.0, 1.0), 0.5).flatten().tolist() == [6.0, 7.0, 3.0]
    # s2 terminal: nothing after r1 counts
    assert expanded_targets(reward, live, values, rewards, one(1.0, 0.0), 0.5).flatten().tolist() == [6.0, 2.0, 2.0]
    # the real transition terminated: every horizon is the real reward
    assert expanded_targets(reward, torch.tensor([1.0]), values, rewards, one(0.0, 0.0), 0.5).flatten().tolist() \
        == [1.0, 1.0, 1.0]


def test_inverse_variance_weighting():
    mean = torch.tensor([[1.0, 5.0], [3.0, 5.0]])
    variance = torch.tensor([[1.0, 2.0], [3.0, 2.0]])
    combined = combine_horizons(mean, variance, eps=0.0)
    assert torch.allclose(combined, torch.tensor([(1.0 + 3.0 / 3.0) / (1.0 + 1.0 / 3.0), 5.0]))
    # a near-certain horizon dominates
    assert combine_horizons(torch.tensor([[0.0], [10.0]]), torch.tensor([[1e-8], [1.0]]))[0] < 1e-3


class Spec:
    observation_space = gym.spaces.Box(-10, 10, (3,))
    action_space = gym.spaces.Box(-2.0, 2.0, (1,))


def make_model(**cfg):
    base = dict(type="steve", env_id="Pendulum-v1", ensemble_size=4, elite_size=3, hidden_sizes=[16, 16],
                weight_decays=[1e-5, 1e-5, 1e-5], expansion_horizon=2)
    return WORLD_MODEL_REGISTRY.build({**base, **cfg}, Spec(), seed=0)


def batch(n=6):
    gen = torch.Generator().manual_seed(1)
    obs = torch.randn(n, 3, generator=gen)
    return {"obs": obs, "action": torch.zeros(n, 1), "reward": torch.randn(n, generator=gen),
            "next_obs": obs + 0.1, "terminated": torch.zeros(n), "truncated": torch.zeros(n)}


def value_fn(states):
    values = torch.stack([states.sum(-1), states.sum(-1) + 1.0])
    return torch.zeros(states.shape[0], 1), values


def stub_dynamics(model, member_rewards):
    """Make member m predict reward ``member_rewards[m]`` and an unchanged state, whatever its input."""
    with torch.no_grad():
        for layer in model.ensemble.layers:
            layer.weight.zero_()
            layer.bias.zero_()
        model.ensemble.layers[-1].bias[:, 0, 0] = torch.tensor(member_rewards)
    model.ensemble.trained.fill_(True)


def two_critics(states):
    """Target critics that value every state at 10 and 14."""
    values = torch.tensor([[10.0], [14.0]]).expand(2, states.shape[0])
    return torch.zeros(states.shape[0], 1), values


def stub_batch():
    """Row 0 goes on after a reward of 0; row 1 terminated with a reward of 2."""
    next_obs = torch.tensor([[0.5, -0.5, 1.0], [1.0, 0.0, 0.0]])
    return {"obs": next_obs, "action": torch.zeros(2, 1), "reward": torch.tensor([0.0, 2.0]),
            "next_obs": next_obs, "terminated": torch.tensor([0.0, 1.0]), "truncated": torch.zeros(2)}


def test_steve_mixes_horizons_by_their_variance_over_members_and_critics():
    model = make_model(ensemble_size=2, elite_size=2, expansion_horizon=1)
    stub_dynamics(model, [1.0, 3.0])
    # Row 0, gamma 0.5. Horizon 0: 0 + .5 * {10, 14} for either member: {5, 7, 5, 7}, variance 1;
    # the critics' minimum gives 5. Horizon 1: member 0: .5 * 1 + .25 * {10, 14} = {3, 4}; member 1:
    # .5 * 3 + .25 * {10, 14} = {4, 5}; over members x critics {3, 4, 4, 5}, variance 0.5; minimum
    # per member 3 and 4, mean 3.5. Inverse-variance mix: (5 / 1 + 3.5 / .5) / (1 / 1 + 1 / .5) = 4.
    # Row 1 terminated: every candidate is its reward 2.
    target, info = model.expand_targets(stub_batch(), two_critics, gamma=0.5)
    torch.testing.assert_close(target, torch.tensor([4.0, 2.0]), atol=1e-5, rtol=0)
    # weights (1/3, 2/3) on horizons (0, 1) for row 0, (1/2, 1/2) for row 1
    assert info["expansion_mean_horizon"] == pytest.approx((2 / 3 + 1 / 2) / 2, abs=1e-5)


def test_mve_takes_the_last_horizon_averaged_over_members():
    model = make_model(ensemble_size=2, elite_size=2, expansion_horizon=1, expansion="mve")
    stub_dynamics(model, [1.0, 3.0])
    target, info = model.expand_targets(stub_batch(), two_critics, gamma=0.5)
    # horizon 1 with the critics' minimum: member 0: .5 + .25 * 10 = 3, member 1: 1.5 + 2.5 = 4
    torch.testing.assert_close(target, torch.tensor([3.5, 2.0]))
    assert info["expansion_mean_horizon"] == 1.0


def test_imagined_members_follow_their_own_predictions():
    model = make_model(ensemble_size=3, elite_size=2, expansion_horizon=2)
    stub_dynamics(model, [1.0, 3.0, 5.0])
    with torch.no_grad():
        model.ensemble.layers[-1].bias[:, 0, 1] = torch.tensor([0.5, -1.0, 2.0])  # each member's obs[0] delta
    model.ensemble.elites.copy_(torch.tensor([2, 0]))
    start = torch.tensor([[1.0, 0.0, 0.0]])
    seen = []

    def value_fn(states):
        seen.append(states.clone())
        return torch.zeros(states.shape[0], 1), torch.stack([states[:, 0], states[:, 0] + 1.0])

    values, rewards, dones = model.imagine_members(start, value_fn, 2)
    # members 2 and 0 (the elites, in order) move obs[0] by 2 and .5 per step: 1, 3, 5 and 1, 1.5, 2
    torch.testing.assert_close(values[:, :, 0, 0], torch.tensor([[1.0, 1.0], [3.0, 1.5], [5.0, 2.0]]))
    torch.testing.assert_close(values[:, :, 1, 0], values[:, :, 0, 0] + 1.0)
    torch.testing.assert_close(rewards[:, :, 0], torch.tensor([[5.0, 1.0], [5.0, 1.0]]))
    assert not dones.any()  # Pendulum never terminates
    assert [s.shape for s in seen] == [(2, 3)] * 3  # one call per horizon, members x batch rows


def test_bad_steve_config():
    with pytest.raises(ConfigError, match="'world_model.expansion' must be one of"):
        make_model(expansion="nope")
    with pytest.raises(ConfigError, match="expansion_members"):
        make_model(expansion_members=4)  # more than the 3 elites


def test_expansion_members_are_the_best_elites():
    model = make_model(expansion_members=2)
    model.ensemble.elites.copy_(torch.tensor([3, 0, 2]))  # elites in holdout order, best first
    assert model.expansion_members().tolist() == [3, 0]
    every = make_model()
    every.ensemble.elites.copy_(torch.tensor([1, 3, 0]))
    assert every.expansion_members().tolist() == [1, 3, 0]


def constant_target_critics(policy, q1, q2):
    """The policy's target critics output ``q1`` and ``q2`` for every input."""
    with torch.no_grad():
        for net, value in ((policy.critic_target.q1, q1), (policy.critic_target.q2, q2)):
            last = [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1]
            last.weight.zero_()
            last.bias.fill_(value)


def test_mbsac_targets_are_sac_s_until_the_model_trains_then_expanded():
    with pytest.raises(ConfigError, match="needs a world model that expands value targets"):
        POLICY_REGISTRY.build({"type": "mbsac"}, Spec())
    mbpo = WORLD_MODEL_REGISTRY.build({"type": "mbpo", "ensemble_size": 2, "elite_size": 2}, Spec(), None)
    with pytest.raises(ConfigError, match="expands value targets \\(e.g. 'steve'\\), got world model 'mbpo'"):
        POLICY_REGISTRY.build({"type": "mbsac"}, Spec(), world_model=mbpo)  # a Dyna model expands nothing
    model = make_model(ensemble_size=2, elite_size=2, expansion_horizon=1)
    assert isinstance(model, ValueExpander) and not model.expansion_ready
    # alpha 1e-9: the soft values are the critics' values to within 1e-7
    policy = POLICY_REGISTRY.build({"type": "mbsac", "hidden_sizes": [16], "gamma": 0.5, "init_alpha": 1e-9},
                                   Spec(), world_model=model, seed=0)
    constant_target_critics(policy, 10.0, 14.0)
    data = stub_batch()
    # before training: SAC's one-step target, r + gamma (1 - terminated) min(q1, q2)
    torch.testing.assert_close(policy.critic_target_value(data), torch.tensor([5.0, 2.0]))
    stub_dynamics(model, [1.0, 3.0])
    # trained: the STEVE mix worked out in test_steve_mixes_horizons_by_their_variance_over_members_and_critics
    torch.testing.assert_close(policy.critic_target_value(data), torch.tensor([4.0, 2.0]), atol=1e-5, rtol=0)
    metrics = policy.learn(data)
    assert metrics["q_target_mean"] == pytest.approx(3.0, abs=1e-5)
    assert metrics["expansion_mean_horizon"] == pytest.approx((2 / 3 + 1 / 2) / 2, abs=1e-5)


@pytest.mark.parametrize("expansion", ["steve", "mve"])
def test_horizon_zero_is_the_one_step_target(expansion):
    model = make_model(expansion=expansion, expansion_horizon=0)
    model.ensemble.trained.fill_(True)
    data = batch()
    values, rewards, dones = model.imagine_members(data["next_obs"], value_fn, 0)
    assert values.shape == (1, 3, 2, 6) and rewards.shape == (0, 3, 6) and dones.shape == (0, 3, 6)
    target, info = model.expand_targets(data, value_fn, gamma=0.9)
    one_step = data["reward"] + 0.9 * value_fn(data["next_obs"])[1].min(0).values
    assert torch.allclose(target, one_step) and info["expansion_mean_horizon"] == 0.0
