"""Fixed datasets for offline training: reading them, exporting a run's replay buffer as one,
and the clock an offline run counts its update steps with.

A dataset is a set of transitions in time order, as the replay buffer stores them:

==============  ==================  =========================================================
key             shape               meaning
==============  ==================  =========================================================
obs             [N, *obs_shape]     observation before the action
action          [N, *action_shape]  action taken (``[N]`` integer indices for a Discrete space)
reward          [N]                 reward received
next_obs        [N, *obs_shape]     observation after it (the true final one at a time limit)
terminated      [N] bool            a true end: no bootstrapping from ``next_obs``
truncated       [N] bool            a time limit: bootstrap from ``next_obs``
row_width       scalar int          optional: rows written per step, one per env slot
                                    (sequence models read slot ``i`` as rows ``i, i + w, ...``)
==============  ==================  =========================================================

Sources (``read_dataset``): an ``.npz`` file with those keys; a run directory (the replay
buffer its newest checkpoint holds, oldest row first); a Minari dataset directory already on
disk (``data/main_data.hdf5`` with ``episode_<k>`` groups of ``observations`` [T + 1],
``actions``, ``rewards``, ``terminations``, ``truncations``; h5py reads it, from the
``offline`` extra). Nothing is downloaded.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from wm_core.config import ConfigError
from workers.buffer import ReplayBuffer, space_buffer, space_storage
from workers.checkpoint import load_checkpoint

KEYS = ("obs", "action", "reward", "next_obs", "terminated", "truncated")
H5PY_INSTALL = 'pip install "worldmodels[offline]"'


class DatasetError(ConfigError):
    """A dataset that cannot be read or does not fit the env."""


def read_dataset(path: str | Path) -> dict[str, np.ndarray]:
    """The transitions at ``path`` (an ``.npz`` file, a run directory or a Minari dataset
    directory) as arrays keyed as in ``KEYS``, plus ``row_width``.

    Raises:
        DatasetError: naming the path and what is missing or wrong.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"offline dataset '{path}' does not exist (expected an .npz file, a run directory "
                           "or a Minari dataset directory)")
    if path.is_file():
        if path.suffix != ".npz":
            raise DatasetError(f"offline dataset '{path}' is a file but not an .npz file")
        data = _read_npz(path)
    elif (path / "checkpoint.pt").is_file() or (path / "config.json").is_file():
        data = _read_run(path)
    elif (minari := _minari_file(path)) is not None:
        data = _read_minari(minari)
    else:
        raise DatasetError(f"offline dataset '{path}' is a directory with neither a checkpoint.pt (a run "
                           "directory) nor data/main_data.hdf5 (a Minari dataset)")
    return check_dataset(data, str(path))


def check_dataset(data: Mapping[str, Any], where: str) -> dict[str, np.ndarray]:
    """``data`` with every key present, one row count and 1-D rewards and flags.

    Raises:
        DatasetError: naming ``where`` and the first key that is missing or misshapen.
    """
    missing = [key for key in KEYS if key not in data]
    if missing:
        raise DatasetError(f"offline dataset '{where}' lacks {', '.join(missing)} (it needs {', '.join(KEYS)})")
    out = {key: np.asarray(data[key]) for key in KEYS}
    rows = len(out["reward"])
    if rows == 0:
        raise DatasetError(f"offline dataset '{where}' holds no transitions")
    for key in KEYS:
        if out[key].ndim == 0 or len(out[key]) != rows:
            raise DatasetError(f"offline dataset '{where}': '{key}' has shape {out[key].shape}, expected "
                               f"{rows} rows like 'reward'")
    for key in ("reward", "terminated", "truncated"):
        if out[key].ndim != 1:
            raise DatasetError(f"offline dataset '{where}': '{key}' must be 1-D [N], got shape {out[key].shape}")
    if out["obs"].shape != out["next_obs"].shape:
        raise DatasetError(f"offline dataset '{where}': 'obs' {out['obs'].shape} and 'next_obs' "
                           f"{out['next_obs'].shape} differ in shape")
    for key in ("obs", "next_obs", "reward"):
        if np.issubdtype(out[key].dtype, np.floating) and not np.isfinite(out[key]).all():
            raise DatasetError(f"offline dataset '{where}': '{key}' holds non-finite values")
    out["terminated"] = out["terminated"].astype(bool)
    out["truncated"] = out["truncated"].astype(bool)
    width = int(np.asarray(data.get("row_width", 1)))
    if width < 1 or rows % width:
        raise DatasetError(f"offline dataset '{where}': row_width {width} must be >= 1 and divide its {rows} rows "
                           "(rows written per env step, one per env slot)")
    out["row_width"] = np.asarray(width)
    return out


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as err:
        raise DatasetError(f"offline dataset '{path}' cannot be read as an .npz file: {err}") from None


def _read_run(run_dir: Path) -> dict[str, np.ndarray]:
    """The replay buffer of the run's newest checkpoint, oldest row first."""
    state = load_checkpoint(run_dir / "checkpoint.pt")
    buffer = state.get("env_buffer")
    if buffer is None:
        raise DatasetError(f"the run in '{run_dir}' was saved with save_buffer=False: its checkpoint holds no "
                           "replay buffer to train from")
    size, pos, capacity = int(buffer["size"]), int(buffer["pos"]), int(buffer["capacity"])
    order = np.arange(size) if size < capacity else (pos + np.arange(size)) % capacity  # a full ring: oldest first
    data = {key: np.asarray(value)[order] for key, value in buffer["data"].items()}
    width = int(buffer["row_width"])
    data["row_width"] = np.asarray(width if width >= 1 else 1)
    return data


def _minari_file(path: Path) -> Path | None:
    for candidate in (path / "data" / "main_data.hdf5", path / "main_data.hdf5"):
        if candidate.is_file():
            return candidate
    return None


def _read_minari(path: Path) -> dict[str, np.ndarray]:
    """Every episode of a Minari HDF5 file, in episode-id order, as transitions."""
    try:
        import h5py
    except ImportError:
        raise DatasetError(f"reading the Minari dataset '{path}' needs h5py: {H5PY_INSTALL}") from None
    parts: dict[str, list[np.ndarray]] = {key: [] for key in KEYS}
    with h5py.File(path, "r") as handle:
        names = sorted((name for name in handle if name.startswith("episode_")), key=lambda n: int(n.split("_")[1]))
        if not names:
            raise DatasetError(f"Minari dataset '{path}' holds no episode_<k> groups")
        for name in names:
            episode = handle[name]
            for key in ("observations", "actions", "rewards", "terminations", "truncations"):
                if key not in episode:
                    raise DatasetError(f"Minari dataset '{path}': {name} lacks '{key}'")
                if not isinstance(episode[key], h5py.Dataset):
                    raise DatasetError(f"Minari dataset '{path}': {name}/{key} is a group (dict observations "
                                       "or actions); only array ones can be read")
            obs = episode["observations"][()]
            steps = len(episode["actions"])
            if len(obs) != steps + 1:
                raise DatasetError(f"Minari dataset '{path}': {name} has {len(obs)} observations for {steps} "
                                   "actions (expected one more)")
            parts["obs"].append(obs[:-1])
            parts["next_obs"].append(obs[1:])
            parts["action"].append(episode["actions"][()])
            parts["reward"].append(episode["rewards"][()])
            parts["terminated"].append(episode["terminations"][()])
            parts["truncated"].append(episode["truncations"][()])
    return {key: np.concatenate(values) for key, values in parts.items()}


def dataset_buffer(data: Mapping[str, np.ndarray], env_spec: Any, *, seed: int) -> ReplayBuffer:
    """A replay buffer holding exactly ``data`` (a ``read_dataset`` result), shaped for the env.

    Raises:
        DatasetError: an observation or action shape that is not the env's.
    """
    obs_shape, action_shape = space_storage(env_spec.observation_space)[0], space_storage(env_spec.action_space)[0]
    rows = len(data["reward"])
    expected = {"obs": obs_shape, "next_obs": obs_shape, "action": action_shape}
    for key, shape in expected.items():
        have = tuple(data[key].shape[1:])
        if key == "action" and shape == () and have == (1,):  # Discrete actions stored as [N, 1]
            continue
        if have != tuple(shape):
            raise DatasetError(f"offline dataset: '{key}' rows have shape {have}, but the env's "
                               f"{'observation' if key != 'action' else 'action'} space has shape {tuple(shape)}")
    buffer = space_buffer(env_spec, rows, seed)
    width = int(data["row_width"])
    # one push per env step of ``width`` rows keeps the slots' layout (sequence models read it);
    # rows of a single slot go in large chunks
    step = width if width > 1 else 4096
    for start in range(0, rows, step):
        part = slice(start, start + step)
        buffer.push(data["obs"][part], data["action"][part].reshape(-1, *action_shape), data["reward"][part],
                    data["next_obs"][part], data["terminated"][part], data["truncated"][part])
    buffer.row_width = width
    return buffer


def export_run(run_dir: str | Path, out: str | Path) -> dict[str, int]:
    """Write the replay buffer of the run in ``run_dir`` to ``out`` (an ``.npz`` in this module's
    format); returns its row count and row width.

    Raises:
        DatasetError / CheckpointError: no run there, or its checkpoint holds no buffer.
    """
    run_dir, out = Path(run_dir), Path(out)
    if out.suffix != ".npz":
        raise DatasetError(f"export writes an .npz file; '{out}' does not end in .npz")
    if not (run_dir / "checkpoint.pt").is_file():
        raise DatasetError(f"'{run_dir}' is not a run directory with a checkpoint.pt")
    data = read_dataset(run_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    with open(partial, "wb") as handle:
        np.savez_compressed(handle, **data)
    partial.replace(out)
    return {"rows": len(data["reward"]), "row_width": int(data["row_width"])}


class OfflineClock:
    """Stands in for the collector in an offline run: it takes no env step, and counts update
    steps, one per pipeline iteration. The config's ratios (``updates_per_step``, a model's
    ``train_freq``, ``replay_ratio`` and rollout schedule, ``eval_freq``, ``checkpoint_every``)
    read these update steps where an online run reads env steps."""

    warmup_steps = 0

    def __init__(self) -> None:
        self.envstep = 0  # the update step (the pipeline's clock)

    def step(self) -> int:
        self.envstep += 1
        return 1

    def pop_episode_stats(self) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict:
        return {"envstep": self.envstep}

    def load_state_dict(self, state: Mapping) -> None:
        self.envstep = int(state["envstep"])
        if self.envstep < 0:
            raise ValueError(f"offline clock at update step {self.envstep} is negative")

    def close(self) -> None:
        pass
