"""Mixed precision for updates: ``precision: fp32 | bf16 | auto`` in a world model's or a
policy's config (each type lists the precisions it supports in ``supported_precisions``).

- ``fp32``: no autocast.
- ``auto``: bf16 where the device runs it natively (a CPU with AVX512_BF16 or AMX, a CUDA
  GPU with bf16 support) and the type supports it, else fp32; the default of the types whose
  returns were measured to hold in bf16.
- ``bf16``: matmuls and convolutions in bfloat16 under ``torch.autocast``; parameters,
  optimiser state, the recurrent states of training and acting, losses, log-probabilities,
  KL, twohot bins and normalisers stay float32 (output layers are ``FloatLinear``; other
  outputs that feed distributions are cast with ``.float()``). Imagined rollouts are the
  exception: their states are kept in bf16, as DreamerV3 computes in it, since every
  consumer would otherwise cast the same float32 states again. On a CPU with native bf16
  (AVX512_BF16 or AMX) a matmul runs about 4x faster than in fp32; elsewhere bf16 is
  emulated and slower, and a warning says so.

fp16 (CUDA, with loss scaling) is not built yet: bf16 needs no loss scaling and runs on
CPUs and on CUDA GPUs from Ampere on.
"""
from __future__ import annotations

import contextlib
import functools
import logging

import torch

from wm_core.config import ConfigError

PRECISIONS = ("fp32", "bf16")
CHOICES = (*PRECISIONS, "auto")
DTYPES = {"bf16": torch.bfloat16}
log = logging.getLogger(__name__)


def check_precision(precision: str, device: torch.device, where: str,
                    supported: tuple[str, ...] = PRECISIONS, owner: str = "") -> str:
    """The precision to run in: ``precision`` ("auto" resolved for ``device``) if ``owner`` (e.g.
    "world model 'latent'") supports it; a ConfigError naming ``where`` (the config section) and
    the valid values otherwise."""
    if precision not in CHOICES:
        raise ConfigError(f"{where}.precision must be one of {', '.join(CHOICES)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if "bf16" in supported and native_bf16(device) else "fp32"
    if precision not in supported:
        raise ConfigError(f"{where}.precision {precision!r} is not supported by {owner or where} "
                          f"(valid: {', '.join(supported)})")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_native_bf16():
        log.warning("%s.precision is bf16 but this CPU has no native bf16 (AVX512_BF16 or AMX): "
                    "bf16 matmuls are emulated and may be slower than fp32", where)
    return precision


class FloatLinear(torch.nn.Linear):
    """An output layer whose result is float32 whatever the autocast dtype of its matmul (the
    heads' logits, means and log-stds feed distributions and losses, which stay float32)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).float()


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` runs bf16 matmuls natively."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bf16 matmuls natively (Linux: AVX512_BF16 or AMX in /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast context of ``precision`` on ``device`` (a no-op context for fp32)."""
    dtype = DTYPES.get(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)

