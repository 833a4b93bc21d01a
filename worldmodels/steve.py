"""STEVE / MVE: the ``mbpo`` ensemble as a Hybrid world model that also expands critic targets.

The Dyna half is MBPO's: the ensemble fills the imagination buffer. The Dream
half expands the critic's targets through the model (Feinberg et al. 2018,
model-based value expansion; Buckman et al. 2018, STEVE): from each real
``next_obs``, every elite imagines ``H`` steps with the current policy, which
gives ``H + 1`` candidate targets per member (horizon 0 is the usual one-step
target). STEVE weighs the horizons by the inverse of their variance across
members and target critics; MVE takes the horizon-``H`` target, averaged over
members.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from registry import WORLD_MODEL_REGISTRY
from wm_core.config import check_choice, check_range
from wm_core.protocols import ValueFn
from wm_core.utils import check_rank
from worldmodels.base import HybridWorldModel
from worldmodels.mbpo import MbpoWorldModel

EXPANSIONS = ("steve", "mve")
# value_fn(states [N, O]) -> (actions [N, A], soft values [S, N] from S target critics)


def combine_horizons(mean: torch.Tensor, variance: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Inverse-variance weighted average of per-horizon targets (STEVE).

    Shapes:
        mean, variance: [H+1, B] -> target [B]
    """
    check_rank("mean", mean, 2)
    weights = 1.0 / (variance + eps)
    return (weights * mean).sum(0) / weights.sum(0)


def expanded_targets(reward: torch.Tensor, terminated: torch.Tensor, values: torch.Tensor,
                     rewards: torch.Tensor, dones: torch.Tensor, gamma: float) -> torch.Tensor:
    """Candidate targets for horizons 0..H from imagined rewards and values.

    ``T_h = r_0 + sum_{i=1..h} gamma^i r_i + gamma^(h+1) V(s_(h+1))``, where
    ``r_0`` is the real reward, ``s_1`` the real next observation and every
    term stops after the first (real or imagined) termination.

    Shapes:
        reward, terminated: [B] (real); values: [H+1, M, S, B] (value of s_1..s_(H+1));
        rewards, dones: [H, M, B] (imagined from s_1) -> targets [H+1, M, S, B]
    """
    horizon = rewards.shape[0]
    check_rank("values", values, 4)
    alive = (1.0 - terminated).expand_as(values[0, :, 0])  # [M, B]
    partial = reward.expand_as(alive).clone()
    targets = []
    for h in range(horizon + 1):
        discount = gamma ** (h + 1)
        targets.append(partial.unsqueeze(1) + discount * alive.unsqueeze(1) * values[h])
        if h == horizon:
            break
        partial = partial + discount * alive * rewards[h]
        alive = alive * (1.0 - dones[h])
    return torch.stack(targets)


@WORLD_MODEL_REGISTRY.register("steve")
class SteveWorldModel(MbpoWorldModel, HybridWorldModel):
    """MBPO's ensemble, used to fill the imagination buffer and to expand value targets."""

    config: ClassVar[dict] = {
        "type": "steve",
        "expansion": "steve",  # steve: inverse-variance mix of horizons 0..H | mve: horizon H, member mean
        "expansion_horizon": 3,  # imagined steps H beyond the real transition
        "expansion_members": None,  # the N best elites expand targets (None: every elite)
        "expansion_deterministic": True,  # expand with each member's mean prediction
    }

    def __init__(self, cfg: Mapping | None, env_spec: Any, logger: Any = None, *, seed: int = 0) -> None:
        super().__init__(cfg, env_spec, logger, seed=seed)
        c = self.cfg
        check_choice(c, "expansion", EXPANSIONS, prefix="world_model")
        check_range(c, "expansion_horizon", 0, prefix="world_model")
        if c.expansion_members is not None:
            check_range(c, "expansion_members", 1, c.elite_size, prefix="world_model")

    def expansion_members(self) -> torch.Tensor:
        """Indices of the members that expand targets: the elites, or the N best of them by holdout score."""
        return self.ensemble.elites[: self.cfg.expansion_members]

    @torch.no_grad()
    def imagine_members(self, start: torch.Tensor, value_fn: ValueFn, horizon: int
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each member imagines ``horizon`` steps from ``start`` with the policy behind ``value_fn``.

        Shapes:
            start: [B, O] -> values [H+1, M, S, B], rewards [H, M, B], dones [H, M, B] (float)
        """
        members = self.expansion_members()
        count, batch = members.shape[0], start.shape[0]
        state = start.unsqueeze(0).expand(count, batch, self.obs_dim)
        values, rewards, dones = [], [], []
        for h in range(horizon + 1):
            flat = state.reshape(count * batch, self.obs_dim)
            action, value = value_fn(flat)
            values.append(value.reshape(-1, count, batch).transpose(0, 1))  # [M, S, B]
            if h == horizon:
                break
            inputs = torch.cat([state, action.reshape(count, batch, -1)], dim=-1)
            mean, logvar, logits = self.ensemble(inputs, members)
            if not self.cfg.expansion_deterministic:
                mean = mean + torch.randn(mean.shape, generator=self.generator, device=self.device) * (
                    0.5 * logvar).exp()
            next_state = state + mean[..., 1:]
            if self.termination_fn is not None:
                done = self.termination_fn(flat, action, next_state.reshape(count * batch, self.obs_dim))
                done = done.reshape(count, batch)
            else:
                done = logits[..., 0] > 0
            rewards.append(mean[..., 0])
            dones.append(done.to(mean.dtype))
            state = next_state
        if horizon == 0:  # only the one-step target: no imagined step
            empty = torch.zeros(0, count, batch, device=self.device)
            return torch.stack(values), empty, empty.clone()
        return torch.stack(values), torch.stack(rewards), torch.stack(dones)

    @property
    def expansion_ready(self) -> bool:
        """Targets are expanded once the ensemble has been fitted (before, they are SAC's own)."""
        return self.trained

    @torch.no_grad()
    def expand_targets(self, batch: Mapping[str, torch.Tensor], value_fn: ValueFn, gamma: float
                       ) -> tuple[torch.Tensor, dict[str, float]]:
        """Critic targets for a batch of real transitions, expanded through the model.

        The mean over critics uses their minimum (clipped double Q); the
        variance that weighs a horizon spreads over members and critics.

        Shapes:
            batch fields [B, ...] -> target [B]
        """
        horizon = self.cfg.expansion_horizon
        values, rewards, dones = self.imagine_members(batch["next_obs"].to(self.device), value_fn, horizon)
        candidates = expanded_targets(batch["reward"], batch["terminated"], values, rewards, dones, gamma)
        clipped = expanded_targets(batch["reward"], batch["terminated"], values.min(dim=2, keepdim=True).values,
                                   rewards, dones, gamma)[:, :, 0]  # [H+1, M, B]
        if self.cfg.expansion == "mve":
            target = clipped[-1].mean(0)
            return target, {"expansion_mean_horizon": float(horizon)}
        mean = clipped.mean(1)
        variance = candidates.flatten(1, 2).var(1, unbiased=False)
        target = combine_horizons(mean, variance)
        weights = 1.0 / (variance + 1e-6)
        weights = weights / weights.sum(0, keepdim=True)
        steps = torch.arange(horizon + 1, device=weights.device, dtype=weights.dtype).unsqueeze(1)
        return target, {"expansion_mean_horizon": float((weights * steps).sum(0).mean())}
