import numpy as np
import pytest
import torch
from torch import nn

from tests.conftest import ToyDream, ToyDyna
from wm_core.config import ConfigError
from workers.buffer import ReplayBuffer


class LinearActor(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Linear(3, 1)

    def forward(self, state):
        action = torch.tanh(self.net(state))
        return action, -(action ** 2).sum(-1)


class FixedPolicy:
    device = torch.device("cpu")

    def collect(self, obs):
        return torch.ones(obs.shape[0], 1)


def filled_buffer(n=64, seed=0):
    buffer = ReplayBuffer(1000, (3,), (1,), seed=seed)
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, 3)).astype(np.float32)
    buffer.push(obs, np.zeros((n, 1)), np.zeros(n), obs, np.zeros(n, bool), np.zeros(n, bool))
    return buffer


def test_rollout_steps_the_model_from_the_actor_s_actions(spec):
    model = ToyDream({}, spec)
    actor = LinearActor()
    start = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    states, actions, rewards, aug, dones = model.rollout(start, actor, envstep=0, horizon=4)
    assert states.shape == (5, 8, 3) and actions.shape == (5, 8, 1)
    assert rewards.shape == (4, 8) and aug.shape == (5, 8) and dones.shape == (4, 8)
    dynamics = model.nets["dynamics"]
    with torch.no_grad():
        state = start
        for t in range(5):
            torch.testing.assert_close(states[t], state)
            action = torch.tanh(state @ actor.net.weight.T + actor.net.bias)
            torch.testing.assert_close(actions[t], action)
            torch.testing.assert_close(aug[t], -action.square().sum(-1))
            if t == 4:
                break
            x = torch.cat([state, action], -1)  # reward and next state of the linear toy model, by hand
            torch.testing.assert_close(rewards[t], (x @ dynamics.reward.weight.T + dynamics.reward.bias)[:, 0])
            state = state + x @ dynamics.next.weight.T + dynamics.next.bias
    assert not dones.any() and dones.dtype == rewards.dtype
    (rewards.sum() + aug.sum()).backward()
    assert actor.net.weight.grad is not None and actor.net.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.nets.parameters())
    assert all(p.requires_grad for p in model.nets.parameters())  # unfrozen afterwards


def test_rollout_horizon_from_schedule(spec):
    model = ToyDream({"rollout_length_scheduler": {"type": "constant", "rollout_length": 3}}, spec)
    states, *_ = model.rollout(torch.zeros(2, 3), LinearActor(), envstep=0)
    assert states.shape[0] == 4


def test_rollout_checks_rank(spec):
    with pytest.raises(ValueError, match="start must have 2 dimensions"):
        ToyDream({}, spec).rollout(torch.zeros(3), LinearActor(), envstep=0)


def test_fill_img_buffer_stops_branches_at_done(spec):
    model = ToyDyna({"rollout_batch_size": 50, "done_threshold": 0.0,
                     "rollout_length_scheduler": {"type": "constant", "rollout_length": 5}}, spec)
    buffer = filled_buffer()
    img = model.make_img_buffer(0)
    assert img.capacity == 5 * 50 * 4
    metrics = model.fill_img_buffer(FixedPolicy(), buffer, img, envstep=1000, train_iter=0)
    done = img.data["terminated"][: len(img)]
    # Each branch stops at its first done: fewer pushes than 5 x 50 whenever any branch ended.
    assert done.any()
    assert metrics["img_transitions_pushed"] == len(img) < 5 * 50
    # No branch continues from a terminal state: no stored obs equals a terminal next_obs.
    obs = img.data["obs"][: len(img)]
    terminal_next = img.data["next_obs"][: len(img)][done]
    assert not (np.abs(obs[None, :, :] - terminal_next[:, None, :]).max(-1) < 1e-7).any()


def test_img_buffer_never_exceeds_capacity(spec):
    model = ToyDyna({"rollout_batch_size": 30, "rollout_retain": 2,
                     "rollout_length_scheduler": {"type": "constant", "rollout_length": 3}}, spec)
    buffer, img = filled_buffer(), model.make_img_buffer(0)
    for step in range(5):
        model.fill_img_buffer(FixedPolicy(), buffer, img, envstep=step, train_iter=0)
        assert len(img) <= img.capacity == 3 * 30 * 2
    assert len(img) == img.capacity


def test_sample_mixes_real_ratio(spec):
    model = ToyDyna({"real_ratio": 0.25}, spec)
    real = filled_buffer()
    img = ReplayBuffer(100, (3,), (1,))
    img.push(np.full((10, 3), 7.0), np.zeros((10, 1)), np.zeros(10), np.zeros((10, 3)),
             np.zeros(10, bool), np.zeros(10, bool))
    batch = model.sample(real, img, 40, train_iter=0)
    imagined = (batch["obs"][:, 0] == 7.0).sum().item()
    assert batch["obs"].shape == (40, 3) and imagined == 30
    empty = ReplayBuffer(10, (3,), (1,))
    assert (model.sample(real, empty, 40, 0)["obs"][:, 0] != 7.0).all()  # all real before imagining


def test_should_train_and_fill_follow_frequencies(spec):
    model = ToyDyna({"train_freq": 100, "rollout_freq": 50}, spec)
    assert not model.should_fill(10)  # nothing to imagine with before the first training
    assert [s for s in range(0, 401, 10) if model.should_train(s)] == [100, 200, 300, 400]
    assert model.should_fill(400) and not model.should_fill(420) and model.should_fill(450)


@pytest.mark.parametrize("cfg, message", [
    ({"real_ratio": 1.5}, r"world_model.real_ratio must be within \[0, 1\], got 1.5"),
    ({"train_freq": 0}, "world_model.train_freq must be >= 1, got 0"),
    ({"rollout_batch_size": 0}, "world_model.rollout_batch_size must be >= 1, got 0"),
    ({"nope": 1}, "unknown config key 'world_model.nope'"),
])
def test_bad_world_model_config(spec, cfg, message):
    with pytest.raises(ConfigError, match=message):
        ToyDyna(cfg, spec)
