import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from worldmodels.cli import main
from worldmodels.guards import NonFiniteError, UpdateGuard


def model_and_optimizer():
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    return model, torch.optim.Adam(model.parameters(), lr=0.1)


def test_non_finite_loss_skips_the_update():
    model, optimizer = model_and_optimizer()
    guard = UpdateGuard("test", max_consecutive=3)
    before = [p.clone() for p in model.parameters()]
    assert not guard.step("loss", model(torch.ones(1, 2)).sum() * float("nan"), optimizer)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert optimizer.state == {} and guard.skipped == 1


def test_non_finite_gradient_skips_the_update():
    model, optimizer = model_and_optimizer()
    guard = UpdateGuard("test")
    x = torch.zeros(1, 2)
    loss = torch.sqrt(model(x).sum() - model(x).sum())  # finite value (0), infinite gradient
    before = [p.clone() for p in model.parameters()]
    assert not guard.step("sqrt_loss", loss, optimizer)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_consecutive_skips_raise_naming_component_and_loss():
    model, optimizer = model_and_optimizer()
    guard = UpdateGuard("policy 'sac'", max_consecutive=3)
    bad = lambda: model(torch.ones(1, 2)).sum() * float("inf")  # noqa: E731
    good = lambda: model(torch.ones(1, 2)).sum()  # noqa: E731
    guard.step("critic_loss", bad(), optimizer)
    guard.step("critic_loss", bad(), optimizer)
    assert guard.step("critic_loss", good(), optimizer) and guard.consecutive["critic_loss"] == 0
    guard.step("critic_loss", bad(), optimizer)
    guard.step("critic_loss", bad(), optimizer)
    assert guard.step("actor_loss", good(), optimizer)  # another loss succeeding does not reset the count
    with pytest.raises(NonFiniteError, match="policy 'sac': 3 consecutive .*non-finite loss .*'critic_loss'"):
        guard.step("critic_loss", bad(), optimizer)
    assert guard.skipped == 5


class BadEnv(gym.Env):
    """A 1-D env that misbehaves at step ``bad_step``: NaN observation, huge reward or an exception."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, mode="nan", bad_step=50):
        self.mode, self.bad_step, self.t = mode, bad_step, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        obs, reward = np.full(2, 0.1 * self.t, np.float32), 0.0
        if self.t >= self.bad_step:
            if self.mode == "nan":
                obs[0] = np.nan
            elif self.mode == "raise":
                raise RuntimeError("simulator exploded")
            elif self.mode == "huge_reward":
                reward = 3e38
        return obs, reward, False, self.t >= 100, {}


gym.register("WorldModelsTestBadEnv-v0", entry_point=BadEnv)


def train_bad_env(tmp_path, mode, bad_step=50):
    return main(["train", "pendulum_sac", "--preset", "debug", "--no-progress", "--out", str(tmp_path),
                 "--set", "env.id='WorldModelsTestBadEnv-v0'", "--set", f"env.kwargs={{'mode': '{mode}', "
                 f"'bad_step': {bad_step}}}", "--set", "collector.warmup_steps=20", "--set", "learner.batch_size=16"])


@pytest.mark.parametrize("mode,message", [("nan", "returned a non-finite observation at"),
                                          ("raise", "raised in step at")])
def test_bad_env_is_reported_with_id_and_step(mode, message, tmp_path, capsys):
    assert train_bad_env(tmp_path, mode) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "env 'WorldModelsTestBadEnv-v0'" in err and message in err


def test_repeated_non_finite_losses_stop_the_run_with_a_checkpoint(tmp_path, capsys):
    assert train_bad_env(tmp_path, "huge_reward", bad_step=1) == 1
    err = capsys.readouterr().err
    assert "policy 'sac': 10 consecutive updates had a non-finite" in err and "critic_loss" in err
    assert list(tmp_path.glob("pendulum_sac/*/checkpoint.pt"))


def test_groups_step_together_or_not_at_all():
    torch.manual_seed(0)
    first, second = nn.Linear(2, 1), nn.Linear(2, 1)
    opt_first, opt_second = torch.optim.SGD(first.parameters(), lr=0.1), torch.optim.SGD(second.parameters(), lr=0.1)
    guard = UpdateGuard("dreamer")
    x = torch.ones(1, 2)
    before = [p.clone() for p in second.parameters()]
    bad = first(x).sum() + torch.sqrt(second(x).sum() - second(x).sum())  # second's gradient is infinite
    assert not guard.step_groups("actor_critic_loss", bad, [(opt_first, None, 100.0), (opt_second, None, 100.0)])
    assert all(torch.equal(a, b) for a, b in zip(before, second.parameters(), strict=True))
    good = first(x).sum() * 1000 + second(x).sum()
    assert guard.step_groups("actor_critic_loss", good, [(opt_first, None, 1.0), (opt_second, None, None)])
    assert guard.last_grad_norm > 1000  # measured before clipping
