"""SAC whose critic learns from targets expanded through a Hybrid world model (MVE / STEVE)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from policies.sac import SACPolicy
from registry import POLICY_REGISTRY
from wm_core.config import ConfigError
from wm_core.protocols import ValueExpander


@POLICY_REGISTRY.register("mbsac")
class ModelBasedSACPolicy(SACPolicy):
    """SAC with model-based value expansion.

    The world model must be a ``ValueExpander`` (``expand_targets`` and ``expansion_ready``,
    as ``steve``); until it is ready, targets are SAC's own.
    """

    def __init__(self, cfg: Mapping | None, env_spec: Any, *, world_model: Any = None, seed: int = 0,
                 logger: Any = None) -> None:
        super().__init__(cfg, env_spec, world_model=world_model, seed=seed, logger=logger)
        if not isinstance(world_model, ValueExpander):
            kind = "no world model" if world_model is None else f"world model '{world_model.cfg.type}'"
            raise ConfigError(f"policy 'mbsac' needs a world model that expands value targets (e.g. 'steve'), "
                              f"got {kind}")
        self.last_expansion: dict[str, float] = {}

    def soft_values(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions and soft values of ``states`` from each target critic.

        Shapes:
            states [N, O] -> actions [N, A] (env scale), values [2, N]
        """
        action, log_prob = self.actor(states, self.generator)
        q1, q2 = self.critic_target(states, action)
        return self._scale(action), torch.stack([q1, q2]) - self.alpha * log_prob

    def critic_target_value(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if not self.world_model.expansion_ready:
            return super().critic_target_value(batch)
        with torch.no_grad():
            target, self.last_expansion = self.world_model.expand_targets(batch, self.soft_values, self.cfg.gamma)
        return target

    def learn(self, data: Mapping[str, torch.Tensor]) -> dict[str, float]:
        metrics = super().learn(data)
        metrics.update(self.last_expansion)
        return metrics
