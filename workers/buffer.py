"""Replay storage: a numpy ring buffer of transitions, sampled as batches or sequences."""
from __future__ import annotations

import shutil
import tempfile
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from registry import BUFFER_REGISTRY
from wm_core.config import check_choice, merge_config

STORAGES = ("memory", "disk")


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


class ReplayBuffer:
    """A ring buffer of transitions ``(obs, action, reward, next_obs, terminated, truncated)``.

    ``terminated`` (a true end: no bootstrapping) and ``truncated`` (a time
    limit: bootstrap from ``next_obs``, which is the real final observation) are
    kept apart. Rows pushed together (one per vector-env slot) sit side by side,
    so a slot's trajectory can be read back as a sequence.

    Args:
        capacity: most transitions kept; the oldest are overwritten.
        obs_shape, action_shape: per-transition shapes (``()`` for a discrete action).
        seed: seeds the buffer's own sampling generator.
        storage: "memory" (numpy arrays) or "disk" (numpy memmaps in a temporary
            folder under ``directory``, removed with the buffer), for capacities
            that should not sit in RAM.
        directory: parent folder of a disk buffer's files (the system's temporary
            folder when None).

    Shapes:
        push: obs [B, *obs_shape], action [B, *action_shape], reward / terminated / truncated [B]
        sample(n): the same fields with a leading [n]
    """

    def __init__(self, capacity: int, obs_shape: tuple, action_shape: tuple, *, obs_dtype: Any = np.float32,
                 action_dtype: Any = np.float32, seed: int = 0, storage: str = "memory",
                 directory: str | Path | None = None) -> None:
        if int(capacity) < 1:
            raise ValueError(f"buffer capacity must be >= 1, got {capacity}")
        if storage not in STORAGES:
            raise ValueError(f"buffer storage must be one of {', '.join(STORAGES)}, got {storage!r}")
        self.storage = storage
        self.directory: Path | None = None
        if storage == "disk":
            if directory is not None:
                Path(directory).mkdir(parents=True, exist_ok=True)
            self.directory = Path(tempfile.mkdtemp(prefix="replay-", dir=directory))
            self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.directory), True)
        self.capacity = int(capacity)
        self.obs_shape = tuple(obs_shape)
        self.action_shape = tuple(action_shape)
        self.obs_dtype = np.dtype(obs_dtype)
        self.action_dtype = np.dtype(action_dtype)
        self.rng = np.random.default_rng(seed)
        self._alloc(self.capacity)
        self.size = 0
        self.pos = 0  # next row to write
        self.pushed = 0  # rows pushed since creation (stream positions count from it)
        self.row_width: int | None = None  # rows per push, while every push had the same width

    def _alloc(self, capacity: int) -> None:
        layout = {
            "obs": ((capacity, *self.obs_shape), self.obs_dtype),
            "action": ((capacity, *self.action_shape), self.action_dtype),
            "reward": ((capacity,), np.float32),
            "next_obs": ((capacity, *self.obs_shape), self.obs_dtype),
            "terminated": ((capacity,), np.bool_),
            "truncated": ((capacity,), np.bool_),
        }
        old = getattr(self, "data", None)
        if self.storage == "memory":
            self.data = {key: np.zeros(shape, dtype) for key, (shape, dtype) in layout.items()}
            return
        self.data = {}
        for key, (shape, dtype) in layout.items():
            # a new file per allocation: a resize copies from the old maps before they go
            path = self.directory / f"{key}-{capacity}-{id(old)}.npy"
            self.data[key] = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)

    def close(self) -> None:
        """Release a disk buffer's files (they are removed with the buffer in any case)."""
        if self.storage == "disk":
            self.data = {}
            self._cleanup()

    def __len__(self) -> int:
        return self.size

    def push(self, obs: Any, action: Any, reward: Any, next_obs: Any, terminated: Any, truncated: Any) -> None:
        """Append a batch of transitions, one row per env (numpy arrays or tensors)."""
        rows = {"obs": _to_numpy(obs), "action": _to_numpy(action), "reward": _to_numpy(reward),
                "next_obs": _to_numpy(next_obs), "terminated": _to_numpy(terminated),
                "truncated": _to_numpy(truncated)}
        batch = rows["reward"].shape[0] if rows["reward"].ndim else 0
        self._check_push_shapes(rows, batch)
        if batch == 0:
            return
        if batch > self.capacity:
            rows = {k: v[-self.capacity:] for k, v in rows.items()}
            batch = self.capacity
        if self.row_width is None and self.size == 0:
            self.row_width = batch
        elif self.row_width != batch:
            self.row_width = -1  # mixed widths: sequences are not available
        index = (self.pos + np.arange(batch)) % self.capacity
        for key, value in rows.items():
            self.data[key][index] = value
        self.pos = (self.pos + batch) % self.capacity
        self.size = min(self.size + batch, self.capacity)
        self.pushed += batch

    def _check_push_shapes(self, rows: dict, batch: int) -> None:
        expected = {"obs": self.obs_shape, "action": self.action_shape, "reward": (),
                    "next_obs": self.obs_shape, "terminated": (), "truncated": ()}
        for key, shape in expected.items():
            if rows[key].shape != (batch, *shape):
                raise ValueError(f"push: '{key}' must have shape {(batch, *shape)} "
                                 f"(batch, *{shape}), got {rows[key].shape}")

    def sample(self, batch_size: int, device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """``batch_size`` transitions drawn uniformly with replacement, as tensors.

        Returns:
            dict with obs, action, reward, next_obs, terminated and truncated
            (the last two as float 0/1).
        """
        if self.size == 0:
            raise ValueError("cannot sample from an empty buffer")
        index = self.rng.integers(0, self.size, size=int(batch_size))
        return self._gather(index, device)

    def _gather(self, index: np.ndarray, device: Any) -> dict[str, torch.Tensor]:
        out = {}
        for key, array in self.data.items():
            values = array[index]
            tensor = torch.from_numpy(values)
            if values.dtype == np.bool_:
                tensor = tensor.float()
            elif values.dtype == np.float64:
                tensor = tensor.float()
            out[key] = tensor.to(device) if device is not None else tensor
        return out

    def sample_sequences(self, batch_size: int, length: int,
                         device: torch.device | str | None = None) -> dict[str, torch.Tensor]:
        """``batch_size`` runs of ``length`` consecutive steps of one env slot, time-major.

        ``is_first`` is 1 where a step starts an episode (the step after a
        terminated or truncated one) and at each sequence's first step.

        Shapes:
            each field [length, batch_size, ...]; ``is_first`` [length, batch_size]
        """
        width, steps_stored, capacity_steps, oldest_step = self._sequence_layout("sample_sequences", length)
        start = self.rng.integers(0, steps_stored - length + 1, size=batch_size)
        slot = self.rng.integers(0, width, size=batch_size)
        steps = (oldest_step + start[None, :] + np.arange(length)[:, None]) % capacity_steps
        index = steps * width + slot[None, :]
        out = self._gather(index, device)
        ended = out["terminated"].bool() | out["truncated"].bool()
        is_first = torch.zeros_like(ended)
        is_first[0] = True
        is_first[1:] = ended[:-1]
        out["is_first"] = is_first.float()
        return out

    def _sequence_layout(self, caller: str, length: int) -> tuple[int, int, int, int]:
        """Rows per push, steps stored per env slot, capacity in steps and the oldest stored step's
        storage position (in units of pushes).

        Raises:
            ValueError: pushes of mixed widths, a capacity that is no multiple of the width, or
                fewer than ``length`` steps stored.
        """
        width = self.row_width
        if width is None or width < 1:
            raise ValueError(f"{caller} needs every push to hold the same number of rows")
        if self.capacity % width:
            raise ValueError(f"{caller} needs a capacity divisible by the {width} rows per push, "
                             f"got {self.capacity}")
        steps_stored = self.size // width
        if steps_stored < length:
            raise ValueError(f"{caller}: {steps_stored} steps stored per env, need {length}")
        capacity_steps = self.capacity // width
        # Oldest stored step, in units of pushes; a sequence must not wrap past the newest.
        newest_step = (self.pos // width - 1) % capacity_steps if self.size else 0
        oldest_step = (newest_step - steps_stored + 1) % capacity_steps
        return width, steps_stored, capacity_steps, oldest_step

    def sample_sequence_streams(self, streams: Mapping[str, torch.Tensor] | None, batch_size: int, length: int,
                                device: torch.device | str | None = None
                                ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """``sample_sequences`` where row b of each batch continues row b of the previous one.

        ``streams`` (None at first) holds each row's env ``slot`` and the ``step`` to read next,
        counted in pushes since the buffer was created. A row continues its stream while the
        next ``length`` steps are stored; else (the stream reached the newest step, or its data
        were overwritten) it starts at a new random step and slot, as ``sample_sequences`` does.
        ``is_first[0]`` is 1 where a row starts anew or its chunk starts an episode, so a row
        whose ``is_first[0]`` is 0 goes on from the state its previous chunk ended in.

        Returns:
            the batch (as ``sample_sequences``) and the streams to pass to the next call.

        Shapes:
            streams: slot [batch_size], step [batch_size] (int64);
            batch: each field [length, batch_size, ...]; ``is_first`` [length, batch_size]
        """
        width, steps_stored, capacity_steps, oldest_step = self._sequence_layout("sample_sequence_streams", length)
        end = self.pushed // width  # one past the newest step, in pushes since creation
        oldest = end - steps_stored
        if streams is None:
            slot = np.zeros(batch_size, dtype=np.int64)
            step = np.full(batch_size, -1, dtype=np.int64)
        else:
            slot, step = (np.asarray(_to_numpy(streams[key]), dtype=np.int64).copy() for key in ("slot", "step"))
            if slot.shape != (batch_size,) or step.shape != (batch_size,):
                raise ValueError(f"sample_sequence_streams: streams hold {slot.shape} rows for a batch of "
                                 f"{batch_size}")
        # the step before a continued chunk must still be stored: it says whether an episode ended there
        restart = (step <= oldest) | (step + length > end) | (slot >= width)
        count = int(restart.sum())
        if count:
            step[restart] = oldest + self.rng.integers(0, steps_stored - length + 1, size=count)
            slot[restart] = self.rng.integers(0, width, size=count)
        previous = np.where(restart, step, step - 1)  # a restarted row reads its own first step here
        steps = np.concatenate([previous[None], step[None] + np.arange(length)[:, None]])
        index = ((oldest_step + steps - oldest) % capacity_steps) * width + slot[None, :]
        out = self._gather(index, device)
        ended = torch.logical_or(out["terminated"].bool(), out["truncated"].bool())
        is_first = ended[:-1].clone()
        is_first[0] |= torch.from_numpy(restart).to(is_first.device)
        out = {key: value[1:] for key, value in out.items()}
        out["is_first"] = is_first.float()
        streams = {"slot": torch.from_numpy(slot), "step": torch.from_numpy(step + length)}
        return out, streams

    def set_capacity(self, capacity: int) -> None:
        """Resize, keeping the newest transitions that fit."""
        capacity = int(capacity)
        if capacity == self.capacity:
            return
        if capacity < 1:
            raise ValueError(f"buffer capacity must be >= 1, got {capacity}")
        keep = min(self.size, capacity)
        order = (self.pos - keep + np.arange(keep)) % self.capacity
        old = self.data
        self.capacity = capacity
        self._alloc(capacity)
        for key in old:
            self.data[key][:keep] = old[key][order]
        self._remove_files(old)
        self.size = keep
        self.pos = keep % capacity
        self.row_width = None if keep == 0 else -1

    def _remove_files(self, arrays: dict) -> None:
        for array in arrays.values():
            filename = getattr(array, "filename", None)
            if filename:
                del array
                Path(filename).unlink(missing_ok=True)

    # -- persistence ----------------------------------------------------
    def state_dict(self) -> dict:
        """Contents, positions and the sampling generator's state.

        A memory buffer's contents are copied; a disk buffer's are views of its
        memmaps (no copy in RAM), to be saved before the buffer changes.
        """
        def contents(array: np.ndarray) -> torch.Tensor:
            part = array[: self.size]
            return torch.from_numpy(part.copy() if self.storage == "memory" else np.asarray(part))

        return {"capacity": self.capacity, "size": self.size, "pos": self.pos, "pushed": self.pushed,
                "row_width": -2 if self.row_width is None else self.row_width,
                "rng": self.rng.bit_generator.state,
                "data": {k: contents(v) for k, v in self.data.items()}}

    def load_state_dict(self, state: Mapping) -> None:
        old = self.data
        self.capacity = int(state["capacity"])
        self._alloc(self.capacity)
        if old is not self.data:
            self._remove_files(old)
        for key, value in state["data"].items():
            self.data[key][: len(value)] = _to_numpy(value)
        self.size = int(state["size"])
        self.pos = int(state["pos"])
        self.pushed = int(state.get("pushed", self.size))  # older checkpoints: count from the stored rows
        width = int(state["row_width"])
        self.row_width = None if width == -2 else width
        self.rng.bit_generator.state = state["rng"]

    def transitions(self, index: np.ndarray | None = None,
                    keys: tuple[str, ...] = ("obs", "action", "reward", "next_obs", "terminated")
                    ) -> dict[str, np.ndarray]:
        """The stored rows at ``index`` (every stored row, in storage order, when None).

        Shapes:
            index [N] -> each array [N, ...]
        """
        index = np.arange(self.size) if index is None else np.asarray(index)
        return {key: self.data[key][index] for key in keys}

    def newest(self, count: int) -> np.ndarray:
        """The index of the ``count`` (at most ``len``) most recently pushed rows, oldest first."""
        count = min(int(count), self.size)
        return (self.pos - count + np.arange(count)) % self.capacity

    def save(self, path: str | Path) -> None:
        """Write contents and positions to ``path`` (a ``.npz`` file)."""
        arrays = {f"data_{k}": v for k, v in self.data.items()}
        meta = np.array([self.capacity, self.size, self.pos, -2 if self.row_width is None else self.row_width])
        with open(path, "wb") as handle:
            np.savez(handle, meta=meta, **arrays)

    def load(self, path: str | Path) -> None:
        with np.load(path) as archive:
            capacity, size, pos, width = (int(v) for v in archive["meta"])
            old = self.data
            self.capacity = capacity
            self._alloc(capacity)
            self._remove_files(old)
            for key in self.data:
                self.data[key][...] = archive[f"data_{key}"]
        self.size, self.pos = size, pos
        self.pushed = size  # stream positions count from the loaded rows
        self.row_width = None if width == -2 else width


REPLAY_DEFAULTS = dict(
    type="replay",
    import_names=[],
    capacity=1_000_000,  # transitions kept
    storage="memory",  # memory | disk (numpy memmaps, for buffers that should not sit in RAM)
    directory=None,  # parent folder of a disk buffer's files; None: the system's temporary folder
)


@BUFFER_REGISTRY.register("replay")
def make_replay_buffer(cfg: Mapping, *, capacity: int | None = None, obs_shape: tuple, action_shape: tuple,
                       obs_dtype: Any = np.float32, action_dtype: Any = np.float32, seed: int = 0) -> ReplayBuffer:
    """Build a ``ReplayBuffer`` from a config with ``type: replay`` (keys of ``REPLAY_DEFAULTS``)."""
    cfg = merge_replay_config(cfg)
    return ReplayBuffer(capacity if capacity is not None else cfg.capacity, obs_shape, action_shape,
                        obs_dtype=obs_dtype, action_dtype=action_dtype, seed=seed, storage=cfg.storage,
                        directory=cfg.directory)


def merge_replay_config(cfg: Mapping | None, prefix: str = "buffer") -> Any:
    """A replay config merged over ``REPLAY_DEFAULTS`` (unknown keys and storages are errors)."""
    merged = merge_config(REPLAY_DEFAULTS, cfg, prefix=prefix)
    check_choice(merged, "storage", STORAGES, prefix=prefix)
    return merged


make_replay_buffer.merge_config = merge_replay_config  # lets configs resolve like other components


def space_storage(space: Any) -> tuple[tuple, Any]:
    """Per-transition shape and numpy dtype used to store values of a gymnasium space."""
    if hasattr(space, "n"):
        return (), np.int64
    dtype = np.uint8 if space.dtype == np.uint8 else np.float32
    return tuple(space.shape), dtype


def space_buffer(env_spec: Any, capacity: int, seed: int = 0) -> ReplayBuffer:
    """An empty in-memory ``ReplayBuffer`` of ``capacity`` rows shaped and typed for the spaces of
    ``env_spec`` (anything with ``observation_space`` and ``action_space``)."""
    obs_shape, obs_dtype = space_storage(env_spec.observation_space)
    action_shape, action_dtype = space_storage(env_spec.action_space)
    return ReplayBuffer(capacity, obs_shape, action_shape, obs_dtype=obs_dtype, action_dtype=action_dtype, seed=seed)


def random_buffer(env: Any, steps: int, seed: int = 0, capacity: int | None = None) -> ReplayBuffer:
    """A buffer of ``steps`` transitions of one ``env`` under uniformly random actions (benchmarks
    and tests train models on it); ``capacity`` defaults to ``steps`` (a smaller one keeps the newest)."""
    buffer = space_buffer(env, steps if capacity is None else capacity, seed)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    for _ in range(steps):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        buffer.push(obs[None], np.asarray(action)[None], np.array([reward]), next_obs[None], np.array([terminated]),
                    np.array([truncated]))
        obs = env.reset()[0] if terminated or truncated else next_obs
    return buffer
