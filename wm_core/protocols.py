"""What crosses a boundary between the parts, as ``typing.Protocol``s (checked by shape, not by
inheritance, so a user's buffer or model fits without subclassing ours).

- ``TransitionBuffer``: what a world model reads from the env buffer.
- ``ValueExpander``: what the ``mbsac`` policy needs from a Hybrid model.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

ValueFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@runtime_checkable
class TransitionBuffer(Protocol):
    """A replay buffer as a world model reads it.

    Shapes:
        sample(B) -> each field [B, ...]; sample_sequences(B, T) -> each field [T, B, ...];
        transitions(index [N]) -> numpy arrays, each [N, ...]; newest(N) -> index [N]
    """

    def __len__(self) -> int: ...

    def sample(self, batch_size: int, device: Any = None) -> dict[str, torch.Tensor]: ...

    def sample_sequences(self, batch_size: int, length: int, device: Any = None) -> dict[str, torch.Tensor]: ...

    def transitions(self, index: np.ndarray | None = None,
                    keys: tuple[str, ...] = ("obs", "action", "reward", "next_obs", "terminated")
                    ) -> dict[str, np.ndarray]:
        """The stored rows at ``index`` (all stored rows when None), one array per key."""
        ...

    def newest(self, count: int) -> np.ndarray:
        """The index of the ``count`` most recently pushed rows, oldest first."""
        ...


@runtime_checkable
class ValueExpander(Protocol):
    """A model that expands a critic's targets through imagined steps (``steve``, ``mve``).

    ``expansion_ready`` is False until the model can be trusted (e.g. before its first fit);
    ``expand_targets`` takes a batch of real transitions (fields [B, ...]) and a value function
    ``states [N, O] -> (actions [N, A], values [K, N])`` and returns targets [B] and metrics.
    """

    @property
    def expansion_ready(self) -> bool: ...

    def expand_targets(self, batch: Mapping[str, torch.Tensor], value_fn: ValueFn, gamma: float
                       ) -> tuple[torch.Tensor, dict[str, float]]: ...
