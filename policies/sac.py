"""Soft actor-critic: twin Q critics with Polyak targets, tanh-Gaussian actor, automatic entropy."""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from policies.base import Policy
from registry import POLICY_REGISTRY
from wm_core.config import ConfigError, check_choice, check_range, check_sizes
from wm_core.utils import adam, check_rank, seeded_init
from worldmodels.nets import ACTIVATIONS, mlp

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class TanhGaussianActor(nn.Module):
    """obs -> a tanh-squashed Gaussian over actions in [-1, 1]."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: list[int], act: str) -> None:
        super().__init__()
        self.trunk = mlp(obs_dim, hidden, 2 * action_dim, act)

    def forward(self, obs: torch.Tensor, generator: torch.Generator | None = None,
                deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampled (reparameterised) or mean action and its log-probability.

        Shapes:
            obs [B, O] -> action [B, A] in [-1, 1], log_prob [B]
        """
        mean, log_std = self.trunk(obs).chunk(2, dim=-1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
        std = log_std.exp()
        if deterministic:
            pre_tanh = mean
        else:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            pre_tanh = mean + std * noise
        action = torch.tanh(pre_tanh)
        gaussian_log_prob = (-0.5 * ((pre_tanh - mean) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        # log|d tanh(u)/du| = 2 (log 2 - u - softplus(-2u)), stable for large |u|
        squash_correction = (2 * (math.log(2) - pre_tanh - F.softplus(-2 * pre_tanh))).sum(-1)
        return action, gaussian_log_prob - squash_correction


class TwinQ(nn.Module):
    """Two independent Q(obs, action) critics."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: list[int], act: str) -> None:
        super().__init__()
        self.q1 = mlp(obs_dim + action_dim, hidden, 1, act)
        self.q2 = mlp(obs_dim + action_dim, hidden, 1, act)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Shapes: obs [B, O], action [B, A] -> q1 [B], q2 [B]"""
        x = torch.cat([obs, action], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)


@POLICY_REGISTRY.register("sac")
class SACPolicy(Policy):
    """Soft actor-critic for continuous (Box) action spaces.

    Actions are produced in [-1, 1] by the actor and scaled to the env's bounds
    by ``collect``/``act``; batches hold env-scale actions, rescaled to [-1, 1]
    for the critics.
    """

    config = dict(
        precision="auto",  # bf16 where this machine runs it natively: returns measured to hold (README)
        hidden_sizes=[256, 256],  # actor and critic MLP widths
        activation="relu",
        actor_lr=3e-4,
        critic_lr=3e-4,
        alpha_lr=3e-4,
        gamma=0.99,  # discount
        tau=0.005,  # Polyak rate of the target critics
        init_alpha=1.0,  # initial entropy temperature
        auto_alpha=True,  # tune alpha towards target_entropy
        target_entropy=None,  # None: -action_dim
        target_update_every=1,  # critic updates between target updates
    )

    def __init__(self, cfg: Mapping | None, env_spec: Any, *, world_model: Any = None, seed: int = 0,
                 logger: Any = None) -> None:
        super().__init__(cfg, env_spec, world_model=world_model, seed=seed, logger=logger)
        space = self.action_space
        if not hasattr(space, "low") or len(space.shape) != 1:
            raise ConfigError(f"policy '{self.cfg.type}' needs a 1-D continuous (Box) action space, got {space}")
        c = self.cfg
        self.check_config(c)
        obs_dim = int(np.prod(self.observation_space.shape))
        self.action_dim = int(space.shape[0])
        low = torch.as_tensor(space.low, dtype=torch.float32, device=self.device)
        high = torch.as_tensor(space.high, dtype=torch.float32, device=self.device)
        self.action_scale = (high - low) / 2
        self.action_bias = (high + low) / 2
        with seeded_init(self.seed):
            self.actor = TanhGaussianActor(obs_dim, self.action_dim, c.hidden_sizes, c.activation)
            self.critic = TwinQ(obs_dim, self.action_dim, c.hidden_sizes, c.activation)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(c.init_alpha)))
        self.nets.update({"actor": self.actor, "critic": self.critic, "critic_target": self.critic_target})
        self.nets.to(self.device)
        self.log_alpha.data = self.log_alpha.data.to(self.device)
        self.target_entropy = float(-self.action_dim if c.target_entropy is None else c.target_entropy)
        self.optimizers = {
            "actor": adam(self.actor.parameters(), lr=c.actor_lr),
            "critic": adam(self.critic.parameters(), lr=c.critic_lr),
            "alpha": adam([self.log_alpha], lr=c.alpha_lr),
        }

    @staticmethod
    def check_config(c: Mapping) -> None:
        """Raise ConfigError for values outside their valid ranges."""
        check_sizes(c, "hidden_sizes", prefix="policy")
        check_choice(c, "activation", ACTIVATIONS, prefix="policy")
        for key in ("actor_lr", "critic_lr", "alpha_lr", "init_alpha"):
            check_range(c, key, 0.0, low_open=True, prefix="policy")
        check_range(c, "gamma", 0.0, 1.0, prefix="policy")
        check_range(c, "tau", 0.0, 1.0, low_open=True, prefix="policy")
        check_range(c, "target_update_every", 1, prefix="policy")
        check_range(c, "target_entropy", allow_none=True, prefix="policy")

    @property
    def alpha(self) -> torch.Tensor:
        return self.log_alpha.exp().detach()

    def _scale(self, unit_action: torch.Tensor) -> torch.Tensor:
        return unit_action * self.action_scale + self.action_bias

    def _unscale(self, action: torch.Tensor) -> torch.Tensor:
        return ((action - self.action_bias) / self.action_scale).clamp(-1.0, 1.0)

    def collect(self, obs: torch.Tensor) -> torch.Tensor:
        check_rank("obs", obs, 2)
        with torch.no_grad():
            action, _ = self.actor(obs, self.generator)
        return self._scale(action)

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        check_rank("obs", obs, 2)
        with torch.no_grad():
            action, _ = self.actor(obs, deterministic=True)
        return self._scale(action)

    @torch.no_grad()
    def value(self, obs: torch.Tensor) -> torch.Tensor:
        """State value for a planner's bootstrap: the lower twin critic at the actor's mean action.

        Shapes:
            obs [B, O] -> value [B]
        """
        check_rank("obs", obs, 2)
        action, _ = self.actor(obs, deterministic=True)
        q1, q2 = self.critic(obs, action)
        return torch.min(q1, q2)

    # -- losses ---------------------------------------------------------
    def critic_target_value(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Soft Bellman target; only ``terminated`` stops bootstrapping.

        Shapes:
            batch fields [B, ...] -> target [B]
        """
        with torch.no_grad():
            next_action, next_log_prob = self.actor(batch["next_obs"], self.generator)
            q1, q2 = self.critic_target(batch["next_obs"], next_action)
            soft_value = torch.min(q1, q2) - self.alpha * next_log_prob
            return batch["reward"] + self.cfg.gamma * (1.0 - batch["terminated"]) * soft_value

    def critic_loss(self, batch: Mapping[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        q1, q2 = self.critic(batch["obs"], self._unscale(batch["action"]))
        return F.mse_loss(q1, target) + F.mse_loss(q2, target)

    def actor_loss(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        action, log_prob = self.actor(obs, self.generator)
        q1, q2 = self.critic(obs, action)
        return (self.alpha * log_prob - torch.min(q1, q2)).mean(), log_prob.detach()

    def learn(self, data: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """One SAC update (critic, actor, temperature, targets) from a batch of transitions."""
        batch = {k: v.to(self.device) for k, v in data.items()}
        check_rank("batch['reward']", batch["reward"], 1)
        with self.autocast():
            target = self.critic_target_value(batch)
            critic_loss = self.critic_loss(batch, target)
        self._optimize("critic", critic_loss)

        self.critic.requires_grad_(False)
        with self.autocast():
            actor_loss, log_prob = self.actor_loss(batch["obs"])
        self._optimize("actor", actor_loss)
        self.critic.requires_grad_(True)

        metrics = {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item(),
                   "entropy": -log_prob.mean().item(), "alpha": self.alpha.item(),
                   "q_target_mean": target.mean().item(), "nonfinite_skipped": float(self.guard.skipped)}
        if self.cfg.auto_alpha:
            alpha_loss = -(self.log_alpha * (log_prob + self.target_entropy)).mean()
            self._optimize("alpha", alpha_loss)
            metrics["alpha_loss"] = alpha_loss.item()

        self.train_iter += 1
        if self.train_iter % self.cfg.target_update_every == 0:
            self._polyak_update()
        return metrics

    def _optimize(self, name: str, loss: torch.Tensor) -> bool:
        return self.guard.step(f"{name}_loss", loss, self.optimizers[name])

    @torch.no_grad()
    def _polyak_update(self) -> None:
        tau = self.cfg.tau
        for target, source in zip(self.critic_target.parameters(), self.critic.parameters(), strict=True):
            target.lerp_(source, tau)

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["log_alpha"] = self.log_alpha.detach().clone()
        return state

    def load_state_dict(self, state: Mapping) -> None:
        super().load_state_dict(state)
        self.log_alpha.data.copy_(state["log_alpha"])
