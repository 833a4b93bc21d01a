"""Known termination functions of gymnasium tasks, for imagined rollouts.

Each function reproduces the task's own ``terminated`` rule from observations
alone, for the default (v5) observation layout: MuJoCo tasks with
``exclude_current_positions_from_observation=True`` and default health ranges.
They are registered in ``TERMINATION_REGISTRY`` under the env's name (``"Hopper"``);
``termination_fn(env_id)`` finds one from a gymnasium id such as ``"Hopper-v5"``.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable

import torch

from registry import TERMINATION_REGISTRY
from wm_envs.dmc import is_dmc_id

TerminationFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]

def _check(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> None:
    if obs.dim() != 2 or action.dim() != 2 or next_obs.dim() != 2:
        raise ValueError("termination functions take obs [B, O], action [B, A] and next_obs [B, O], got "
                         f"{tuple(obs.shape)}, {tuple(action.shape)} and {tuple(next_obs.shape)}")
    if next_obs.shape[0] != action.shape[0]:
        raise ValueError(f"batch sizes differ: action {tuple(action.shape)}, next_obs {tuple(next_obs.shape)}")


def _finite(x: torch.Tensor) -> torch.Tensor:
    return torch.isfinite(x).all(dim=-1)


def register_termination(env_name: str) -> Callable[[TerminationFn], TerminationFn]:
    """Decorator: register ``fn`` in ``TERMINATION_REGISTRY`` under ``env_name`` (e.g. ``"Hopper"``)."""
    return TERMINATION_REGISTRY.register(env_name)


def never_done(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """No transition terminates (episodes end only at the time limit).

    Shapes:
        next_obs: [B, O] -> done [B] (bool)
    """
    return torch.zeros(next_obs.shape[0], dtype=torch.bool, device=next_obs.device)


@register_termination("Pendulum")
@register_termination("HalfCheetah")
def never_terminates(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """Never terminates: only the time limit ends an episode (Pendulum, HalfCheetah).

    Shapes:
        obs: [B, O]; action: [B, A]; next_obs: [B, O] -> done [B] (bool)
    """
    _check(obs, action, next_obs)
    return never_done(obs, action, next_obs)


@register_termination("CartPole")
def cart_pole(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """The cart position (``next_obs[:, 0]``) leaves [-2.4, 2.4] or the pole angle (``next_obs[:, 2]``)
    leaves [-12, 12] degrees, or a value is not finite (gymnasium's CartPole-v1 rule).

    Shapes:
        obs: [B, 4]; action: [B, 2] (one-hot); next_obs: [B, 4] -> done [B] (bool)
    """
    _check(obs, action, next_obs)
    angle_limit = 12 * 2 * math.pi / 360
    return ~_finite(next_obs) | (next_obs[:, 0].abs() > 2.4) | (next_obs[:, 2].abs() > angle_limit)


@register_termination("InvertedPendulum")
def inverted_pendulum(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """The pole angle (``next_obs[:, 1]``) leaves [-0.2, 0.2], or a value is not finite.

    Shapes:
        obs: [B, 4]; action: [B, 1]; next_obs: [B, 4] -> done [B] (bool)
    """
    _check(obs, action, next_obs)
    return ~_finite(next_obs) | (next_obs[:, 1].abs() > 0.2)


@register_termination("InvertedDoublePendulum")
def inverted_double_pendulum(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """The tip's height ``0.6 cos(q1) + 0.6 cos(q1 + q2)`` drops to 1 or below.

    The observation holds ``[x, sin q1, sin q2, cos q1, cos q2, ...]``; both poles are 0.6 long.

    Shapes:
        obs: [B, 9]; action: [B, 1]; next_obs: [B, 9] -> done [B] (bool)
    """
    _check(obs, action, next_obs)
    sin1, sin2, cos1, cos2 = next_obs[:, 1], next_obs[:, 2], next_obs[:, 3], next_obs[:, 4]
    tip_height = 0.6 * cos1 + 0.6 * (cos1 * cos2 - sin1 * sin2)
    return tip_height <= 1.0


@register_termination("Hopper")
def hopper(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """Unhealthy: height <= 0.7, |angle| >= 0.2, or any of ``next_obs[:, 1:]`` outside (-100, 100).

    Shapes:
        obs: [B, 11]; action: [B, 3]; next_obs: [B, 11] -> done [B] (bool)
    """
    _check(obs, action, next_obs)
    height, angle = next_obs[:, 0], next_obs[:, 1]
    healthy = (
        (next_obs[:, 1:].abs() < 100.0).all(dim=-1)
        & (height > 0.7)
        & (angle > -0.2) & (angle < 0.2)
    )
    return ~healthy


@register_termination("Walker2d")
def walker2d(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """Unhealthy: height outside (0.8, 2.0) or angle outside (-1, 1).

    Shapes:
        obs: [B, 17]; action: [B, 6]; next_obs: [B, 17] -> done [B] (bool)
    """
    _check(obs, action, next_obs)
    height, angle = next_obs[:, 0], next_obs[:, 1]
    healthy = (height > 0.8) & (height < 2.0) & (angle > -1.0) & (angle < 1.0)
    return ~healthy


@register_termination("Ant")
def ant(obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
    """Unhealthy: torso height (``next_obs[:, 0]``) outside [0.2, 1.0], or a value is not finite.

    Shapes:
        obs: [B, O]; action: [B, 8]; next_obs: [B, O] -> done [B] (bool)
    """
    _check(obs, action, next_obs)
    height = next_obs[:, 0]
    healthy = _finite(next_obs) & (height >= 0.2) & (height <= 1.0)
    return ~healthy


_VERSION_SUFFIX = re.compile(r"-v\d+$")


def env_name(env_id: str) -> str:
    """A gymnasium id without its namespace and version: ``"gym/Hopper-v5"`` -> ``"Hopper"``."""
    return _VERSION_SUFFIX.sub("", env_id.split("/")[-1])


def termination_fn(env_id: str | None) -> TerminationFn | None:
    """The registered termination function for ``env_id`` (e.g. ``"Hopper-v5"``), or None."""
    if not env_id:
        return None
    if is_dmc_id(env_id):  # the suite's tasks have no terminal states
        return never_done
    key = env_name(env_id)
    return TERMINATION_REGISTRY.get(key) if key in TERMINATION_REGISTRY else None


__all__ = ["TerminationFn", "ant", "cart_pole", "env_name", "hopper", "inverted_double_pendulum",
           "inverted_pendulum", "never_terminates", "register_termination", "termination_fn", "walker2d"]
