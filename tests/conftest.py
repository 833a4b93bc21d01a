"""Shared fixtures: a toy world model and env spec for fast tests."""
from __future__ import annotations

import os

# num_threads "auto" means one thread in tests: they run beside other processes on small machines,
# where threads that share a core stall each other
os.environ.setdefault("WORLDMODELS_MAX_THREADS", "1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from worldmodels import DreamWorldModel, DynaWorldModel  # noqa: E402

torch.set_num_threads(1)  # tests run beside other processes on small machines


class Spec:
    """An env spec with a 3-D observation and 1-D action in [-2, 2]."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)


class LinearDynamics(nn.Module):
    def __init__(self, obs_dim: int, action_dim: int) -> None:
        super().__init__()
        self.next = nn.Linear(obs_dim + action_dim, obs_dim)
        self.reward = nn.Linear(obs_dim + action_dim, 1)

    def forward(self, obs, action):
        x = torch.cat([obs, action], -1)
        return self.reward(x).squeeze(-1), obs + self.next(x)


class ToyDyna(DynaWorldModel):
    """A linear model whose ``done`` is obs[:, 0] > threshold."""

    config = dict(done_threshold=1e9)

    def __init__(self, cfg, env_spec, logger=None, *, seed=0):
        super().__init__(cfg, env_spec, logger, seed=seed)
        torch.manual_seed(seed)
        self.nets["dynamics"] = LinearDynamics(3, 1)

    def train(self, env_buffer, envstep, train_iter):
        return {"loss": 0.0}

    def step(self, obs, action):
        reward, next_obs = self.nets["dynamics"](obs, action)
        return reward, next_obs, next_obs[:, 0] > self.cfg.done_threshold


class ToyDream(DreamWorldModel):
    def __init__(self, cfg, env_spec, logger=None, *, seed=0):
        super().__init__(cfg, env_spec, logger, seed=seed)
        torch.manual_seed(seed)
        self.nets["dynamics"] = LinearDynamics(3, 1)

    def train(self, env_buffer, envstep, train_iter):
        return {}

    def step(self, obs, action):
        reward, next_obs = self.nets["dynamics"](obs, action)
        return reward, next_obs, torch.zeros_like(reward, dtype=torch.bool)


@pytest.fixture
def spec():
    return Spec()
