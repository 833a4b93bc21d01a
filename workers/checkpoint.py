"""Checkpoints: atomic writes, safe loads (tensors and plain values only)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_NAME = "checkpoint.pt"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated or not one of ours."""


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically: a temporary file, flushed, then renamed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
    return path


def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary objects are unpickled).

    Raises:
        CheckpointError: naming the file, when it is missing or cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise CheckpointError(f"checkpoint '{path}' is truncated or corrupt ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or "format" not in state:
        raise CheckpointError(f"'{path}' is not a worldmodels checkpoint")
    return state
