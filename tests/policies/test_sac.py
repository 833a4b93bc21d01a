import gymnasium as gym
import numpy as np
import pytest
import torch

from policies.sac import SACPolicy, TanhGaussianActor
from registry import POLICY_REGISTRY
from wm_core.config import ConfigError


class Spec:
    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = gym.spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32))


def fixed_batch(n=128, seed=0):
    gen = torch.Generator().manual_seed(seed)
    obs = torch.randn(n, 3, generator=gen)
    action = torch.rand(n, 2, generator=gen) * torch.tensor([4.0, 1.0]) - torch.tensor([2.0, 0.0])
    return {"obs": obs, "action": action, "reward": obs[:, 0] - action[:, 0] ** 2,
            "next_obs": obs + 0.1, "terminated": torch.zeros(n), "truncated": torch.zeros(n)}


def make(**cfg):
    return POLICY_REGISTRY.build({"type": "sac", "hidden_sizes": [32, 32], **cfg}, Spec(), seed=0)


def test_actions_respect_env_bounds():
    policy = make()
    obs = torch.randn(500, 3) * 5
    for action in (policy.collect(obs), policy.act(obs)):
        assert action.shape == (500, 2)
        assert (action[:, 0] >= -2).all() and (action[:, 0] <= 2).all()
        assert (action[:, 1] >= 0).all() and (action[:, 1] <= 1).all()
    assert torch.equal(policy.act(obs), policy.act(obs))  # deterministic
    assert not torch.equal(policy.collect(obs), policy.collect(obs))  # exploring


def test_losses_decrease_on_a_fixed_batch():
    policy = make(auto_alpha=False, init_alpha=0.01, gamma=0.0, critic_lr=1e-3, actor_lr=1e-3)
    batch = fixed_batch()
    first = [policy.learn(batch)["critic_loss"] for _ in range(5)]
    for _ in range(300):
        last = policy.learn(batch)
    assert last["critic_loss"] < 0.1 * np.mean(first)


def test_actor_loss_decreases_against_a_fixed_critic():
    policy = make(auto_alpha=False, init_alpha=0.01, gamma=0.0, critic_lr=1e-3, actor_lr=1e-3)
    batch = fixed_batch()
    for _ in range(300):  # fit the critic only
        policy._optimize("critic", policy.critic_loss(batch, policy.critic_target_value(batch)))
    policy.critic.requires_grad_(False)
    before = np.mean([policy.actor_loss(batch["obs"])[0].item() for _ in range(10)])
    for _ in range(100):
        policy._optimize("actor", policy.actor_loss(batch["obs"])[0])
    after = np.mean([policy.actor_loss(batch["obs"])[0].item() for _ in range(10)])
    assert after < before - 0.2, (before, after)


def test_entropy_temperature_moves_toward_target():
    policy = make(init_alpha=1.0, alpha_lr=1e-2, target_entropy=-50.0)
    batch = fixed_batch()
    for _ in range(50):
        metrics = policy.learn(batch)
    assert metrics["alpha"] < 1.0  # entropy above a very low target -> alpha shrinks


def test_terminated_stops_bootstrapping_but_truncated_does_not():
    policy = make(gamma=0.9)
    batch = fixed_batch(8)
    batch["reward"] = torch.zeros(8)
    batch["terminated"] = torch.tensor([1.0, 0, 0, 0, 0, 0, 0, 0])
    batch["truncated"] = torch.tensor([0, 1.0, 0, 0, 0, 0, 0, 0])
    target = policy.critic_target_value(batch)
    assert target[0] == 0 and target[1] != 0


def test_critic_target_bootstraps_from_the_smaller_critic_s_soft_value():
    policy = make(gamma=0.5, init_alpha=0.1, auto_alpha=False)
    with torch.no_grad():  # target critics that output 10 and 14 everywhere
        for net, value in ((policy.critic_target.q1, 10.0), (policy.critic_target.q2, 14.0)):
            last = [m for m in net.modules() if isinstance(m, torch.nn.Linear)][-1]
            last.weight.zero_()
            last.bias.fill_(value)
    batch = fixed_batch(4)
    batch["reward"] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    batch["terminated"] = torch.tensor([0.0, 1.0, 0.0, 0.0])
    batch["truncated"] = torch.tensor([0.0, 0.0, 1.0, 0.0])
    state = policy.generator.get_state()
    target = policy.critic_target_value(batch)
    policy.generator.set_state(state)  # the same next actions, drawn again
    _, log_prob = policy.actor(batch["next_obs"], policy.generator)
    expected = batch["reward"] + 0.5 * torch.tensor([1.0, 0.0, 1.0, 1.0]) * (10.0 - 0.1 * log_prob.detach())
    torch.testing.assert_close(target, expected)


def test_target_networks_follow_polyak():
    policy = make(tau=0.25)
    before = [p.clone() for p in policy.critic_target.parameters()]
    policy.learn(fixed_batch())
    for old, new, online in zip(before, policy.critic_target.parameters(), policy.critic.parameters(), strict=True):
        torch.testing.assert_close(new, 0.75 * old + 0.25 * online)


def test_targets_follow_every_target_update_every_updates():
    policy = make(tau=0.25, target_update_every=2)
    before = [p.clone() for p in policy.critic_target.parameters()]
    policy.learn(fixed_batch())
    assert all(torch.equal(a, b) for a, b in zip(before, policy.critic_target.parameters(), strict=True))
    policy.learn(fixed_batch(seed=1))
    for old, new, online in zip(before, policy.critic_target.parameters(), policy.critic.parameters(), strict=True):
        torch.testing.assert_close(new, 0.75 * old + 0.25 * online)


def test_log_prob_matches_tanh_change_of_variables():
    actor = TanhGaussianActor(3, 2, [16], "relu")
    obs = torch.randn(4, 3)
    gen = torch.Generator().manual_seed(0)
    action, log_prob = actor(obs, gen)
    mean, log_std = actor.trunk(obs).chunk(2, -1)
    log_std = -5.0 + 3.5 * (torch.tanh(log_std) + 1)
    base = torch.distributions.Normal(mean, log_std.exp())
    pre = torch.atanh(action.clamp(-0.999999, 0.999999))
    expected = (base.log_prob(pre) - torch.log(1 - action ** 2 + 1e-12)).sum(-1)
    assert torch.allclose(log_prob, expected, atol=1e-3)


def test_state_dict_round_trip_gives_identical_actions():
    policy, other = make(), POLICY_REGISTRY.build({"type": "sac", "hidden_sizes": [32, 32]}, Spec(), seed=9)
    policy.learn(fixed_batch())
    other.load_state_dict(policy.state_dict())
    obs = torch.randn(10, 3)
    assert torch.equal(policy.act(obs), other.act(obs))
    assert torch.equal(policy.collect(obs), other.collect(obs))  # generator state restored too


def test_rejects_discrete_actions():
    class Discrete:
        observation_space = Spec.observation_space
        action_space = gym.spaces.Discrete(3)

    with pytest.raises(ConfigError, match="continuous"):
        SACPolicy({}, Discrete())
