"""Network building blocks shared by world models and policies."""
from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from wm_core.precision import FloatLinear

ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "elu": nn.ELU, "tanh": nn.Tanh, "gelu": nn.GELU}


def activation(name: str) -> type[nn.Module]:
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation '{name}' (valid: {', '.join(ACTIVATIONS)})") from None


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int, act: str = "relu") -> nn.Sequential:
    """A fully connected net: in_dim -> hidden... -> out_dim, activation between layers.

    Shapes:
        input [..., in_dim] -> output [..., out_dim]
    """
    layers: list[nn.Module] = []
    last = in_dim
    for width in hidden:
        layers.append(nn.Linear(last, width))
        layers.append(activation(act)())
        last = width
    layers.append(FloatLinear(last, out_dim))  # float32 output under bf16 autocast
    return nn.Sequential(*layers)
