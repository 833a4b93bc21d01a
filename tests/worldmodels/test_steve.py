import gymnasium as gym
import pytest
import torch

from registry import POLICY_REGISTRY, WORLD_MODEL_REGISTRY
from worldmodels.config import ConfigError
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


def test_expand_targets_shapes_and_switch():
    model = make_model()
    data = batch()
    steve, info = model.expand_targets(data, value_fn, gamma=0.9)
    assert steve.shape == (6,) and 0.0 <= info["expansion_mean_horizon"] <= 2.0
    values, rewards, dones = model.imagine_members(data["next_obs"], value_fn, 2)
    assert values.shape == (3, 3, 2, 6) and rewards.shape == (2, 3, 6) and dones.shape == (2, 3, 6)
    clipped = expanded_targets(data["reward"], data["terminated"], values.min(2, keepdim=True).values,
                               rewards, dones, 0.9)[:, :, 0]
    mve = make_model(expansion="mve")
    mve_target, _ = mve.expand_targets(data, value_fn, gamma=0.9)
    assert torch.allclose(mve_target, clipped[-1].mean(0))
    per_horizon = clipped.mean(1)
    assert torch.all(steve >= per_horizon.min(0).values - 1e-5) and torch.all(steve <= per_horizon.max(0).values + 1e-5)


def test_bad_steve_config():
    with pytest.raises(ConfigError, match="expansion must be one of"):
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


def test_mbsac_needs_an_expanding_world_model_and_falls_back_before_training():
    with pytest.raises(ConfigError, match="needs a world model that expands value targets"):
        POLICY_REGISTRY.build({"type": "mbsac"}, Spec())
    model = make_model()
    policy = POLICY_REGISTRY.build({"type": "mbsac", "hidden_sizes": [16]}, Spec(), world_model=model, seed=0)
    sac = POLICY_REGISTRY.build({"type": "sac", "hidden_sizes": [16]}, Spec(), seed=0)
    data = batch()
    assert not model.trained
    assert torch.equal(policy.critic_target_value(data), sac.critic_target_value(data))
    model.ensemble.trained.fill_(True)
    expanded = policy.critic_target_value(data)
    assert expanded.shape == (6,) and not torch.equal(expanded, sac.critic_target_value(data))
    assert "expansion_mean_horizon" in policy.learn(data)


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
