"""Plan2Explore (Sekar et al., 2020) for the Dream path: ``world_model.plan2explore`` of ``dreamerv3``.

An ensemble of one-step predictors, each mapping a posterior state and the action taken
in it to the next step's stochastic latent (``target="stoch"``) or observation embedding
(``"embed"``), learns from the world model's own training batches (inputs and targets
detached, so no gradient reaches the world model). Where the members disagree the model
is unsure: the variance of their predictions across the ensemble, averaged over the
output dimensions (divided by its running mean over the training batches, ``normalize``),
is the intrinsic reward of an imagined (state, action), which the
``dreamer`` policy receives through ``rollout``'s ``aug_rewards`` and which its
exploration actor-critic maximises (``policies.dreamer``).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from wm_core.config import ConfigError, check_choice
from wm_core.utils import check_rank

TARGETS = ("stoch", "embed")
NORM_DECAY = 0.99  # of the disagreement's running mean (``normalize``)

# world_model.plan2explore: the world model's part (ensemble) and the dreamer policy's part
DEFAULTS: dict[str, Any] = {
    "enabled": False,
    "ensemble": 5,  # one-step predictors
    "units": None,  # hidden width of each predictor; None: the world model's units
    "layers": 2,  # hidden layers of each predictor
    "lr": 3e-4,  # Adam learning rate of the ensemble
    "grad_clip": 100.0,  # gradient-norm clip of the ensemble
    "target": "stoch",  # what the members predict: the next posterior latent (stoch) or embedding (embed)
    "intrinsic_scale": 1.0,  # the intrinsic reward is this times the (normalised) disagreement
    # divide the disagreement by a running mean (EMA, decay ``NORM_DECAY``) of its mean over the
    # world model's batches, so that the reward is about 1 whatever the target's units: a raw
    # variance of ~1e-5 (a categorical latent's) leaves the explorer's returns far below the
    # return normaliser's floor of 1, and the explorer acting at random
    "normalize": True,
    # the dreamer policy's part
    "extrinsic_scale": 0.0,  # weight of the task reward in the exploration actor-critic's reward
    "explore_until": None,  # env step from which the task actor collects; None: the exploration actor always
    # where the task actor-critic imagines from: "explorer", ``task_horizon`` steps of its own actor
    # from every state of the explorer's imagination; "replay", its own rollout from the same
    # replay starts as the explorer, as long as the world model's schedule says (as plain dreamer)
    "task_starts": "explorer",
    "task_horizon": 1,  # imagined steps of the task actor from every explorer state ("explorer" only)
}
TASK_STARTS = ("explorer", "replay")


def check_config(cfg: Mapping) -> None:
    """Raises ConfigError naming a bad ``world_model.plan2explore`` value."""
    for key, least in (("ensemble", 2), ("layers", 0), ("task_horizon", 1)):
        if cfg[key] < least:
            raise ConfigError(f"world_model.plan2explore.{key} must be >= {least}, got {cfg[key]}")
    if cfg.units is not None and (not isinstance(cfg.units, int) or cfg.units < 1):
        raise ConfigError(f"world_model.plan2explore.units must be None or an int >= 1, got {cfg.units!r}")
    check_choice(cfg, "task_starts", TASK_STARTS, prefix="world_model.plan2explore")
    check_choice(cfg, "target", TARGETS, prefix="world_model.plan2explore")
    for key in ("lr", "grad_clip", "intrinsic_scale", "extrinsic_scale"):
        if cfg[key] < 0:
            raise ConfigError(f"world_model.plan2explore.{key} must be >= 0, got {cfg[key]}")
    until = cfg.explore_until
    if until is not None and (isinstance(until, bool) or not isinstance(until, (int, float)) or until < 0):
        raise ConfigError(f"world_model.plan2explore.explore_until must be None or an env step >= 0, "
                          f"got {until!r}")


class Disagreement(nn.Module):
    """``members`` MLPs (Linear, LayerNorm, SiLU per hidden layer) run as one batched
    forward: every weight is an ``[E, in, out]`` tensor. Each member is initialised from
    its own draws (fan-in uniform, as ``nn.Linear``), which is where their disagreement on
    unseen inputs comes from.

    Shapes:
        forward: features [N, F], action [N, A] -> predictions [E, N, out_dim]
        reward: features [N, F], action [N, A] -> disagreement [N]
    """

    def __init__(self, members: int, feature_dim: int, action_dim: int, units: int, layers: int,
                 out_dim: int) -> None:
        super().__init__()
        dims = [feature_dim + action_dim, *([units] * layers), out_dim]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for fan_in, fan_out in zip(dims[:-1], dims[1:], strict=True):
            bound = 1.0 / math.sqrt(fan_in)
            self.weights.append(nn.Parameter(torch.empty(members, fan_in, fan_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(members, 1, fan_out).uniform_(-bound, bound)))
        self.members, self.out_dim = int(members), int(out_dim)
        # running mean of the batch-mean disagreement (``normalize``); 0 until a batch is seen
        self.register_buffer("magnitude", torch.zeros(()))

    def forward(self, features: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        check_rank("features", features, 2)
        x = torch.cat([features, action.to(features.dtype)], dim=-1)
        x = x.unsqueeze(0).expand(self.members, -1, -1)
        last = len(self.weights) - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.baddbmm(bias.to(x.dtype), x, weight.to(x.dtype))
            if i < last:
                x = F.silu(F.layer_norm(x, x.shape[-1:]))
        return x.float()  # float32 under bf16 autocast

    def reward(self, features: torch.Tensor, action: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """The variance of the members' predictions across the ensemble, averaged over the
        output dimensions (population variance: divided by E); with ``normalize``, divided by
        its running mean ``magnitude`` (once a batch has been seen)."""
        variance = self(features, action).var(0, correction=0).mean(-1)
        if normalize and self.magnitude > 0:
            return variance / self.magnitude
        return variance

    @torch.no_grad()
    def track(self, disagreement: torch.Tensor) -> None:
        """Fold a world-model batch's mean disagreement into ``magnitude`` (the first one sets it)."""
        value = disagreement.float()
        first = bool(self.magnitude == 0)
        self.magnitude.copy_(value if first else torch.lerp(self.magnitude, value, 1.0 - NORM_DECAY))
