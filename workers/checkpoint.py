"""Checkpoints: atomic writes, safe loads (tensors and plain values only)."""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch

CHECKPOINT_NAME = "checkpoint.pt"


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, truncated or not one of ours."""


class RunOutputError(RuntimeError):
    """A run's output (TensorBoard events, progress.csv) could not be written, e.g. a full disk."""

    def __init__(self, path: Path | str, err: OSError) -> None:
        super().__init__(f"cannot write '{path}': {err.strerror or err}")


class _ErrorRecordingFile:
    """A binary file whose first write error is kept: torch.save turns it into an opaque zip error."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self.handle.write(data)
        except OSError as err:
            self.error = self.error or err
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically: a temporary file, flushed, then renamed.

    Raises:
        CheckpointError: the file could not be written (the temporary file is removed).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    handle = None
    try:
        with open(tmp, "wb") as raw:
            handle = _ErrorRecordingFile(raw)
            torch.save(state, handle)
            raw.flush()
            os.fsync(raw.fileno())
        tmp.replace(path)
    except (OSError, RuntimeError) as err:  # disk full, say: no partial file may stay behind
        tmp.unlink(missing_ok=True)
        # torch reports a failed write as a zip error: the write's own error says what happened
        cause = handle.error if handle is not None and handle.error is not None else err
        reason = getattr(cause, "strerror", None) or (str(cause).strip().splitlines() or [type(cause).__name__])[0]
        raise CheckpointError(f"cannot write checkpoint '{path}': {reason}; the previous checkpoint is "
                              "kept") from None
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
        text = str(err).strip()
        if "Weights only load failed" in text:  # torch's advice to load unsafely is not for us
            reason = "not a checkpoint of tensors and plain values"
        else:
            reason = (text.splitlines() or [""])[0]
        raise CheckpointError(f"checkpoint '{path}' is truncated or corrupt ({type(err).__name__}: "
                              f"{reason})") from None
    if not isinstance(state, dict) or "format" not in state:
        raise CheckpointError(f"'{path}' is not a worldmodels checkpoint")
    return state


FORMAT = 2  # 2: the config's fingerprint is stored beside it
RESUMABLE_KEYS_IGNORED = ("env_steps",)  # a resumed run may extend its budget


def config_fingerprint(config_json: str) -> str:
    """sha256 of a stored config (its JSON text) without the keys a resume may change."""
    config = {k: v for k, v in json.loads(config_json).items() if k not in RESUMABLE_KEYS_IGNORED}
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def first_difference(left: Any, right: Any, prefix: str = "") -> str | None:
    """The first dotted key where two plain configs differ, with both values; None when equal."""
    if isinstance(left, dict) and isinstance(right, dict):
        for key in sorted(set(left) | set(right), key=str):
            if key in RESUMABLE_KEYS_IGNORED and not prefix:
                continue
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in left or key not in right:
                return f"{name} ({'missing' if key not in left else repr(left[key])} vs " \
                       f"{'missing' if key not in right else repr(right[key])})"
            found = first_difference(left[key], right[key], name)
            if found:
                return found
        return None
    return None if left == right else f"{prefix} ({left!r} vs {right!r})"


def check_identity(state: Mapping, path: Path, run_config: Any) -> None:
    """Refuse a checkpoint that does not belong to the run whose ``config.json`` is ``run_config``.

    Raises:
        CheckpointError: the stored config was altered (fingerprint), or differs from the
            run's config.json, naming the first differing key.
    """
    stored = state.get("fingerprint")
    if stored is not None and stored != config_fingerprint(state["config"]):
        raise CheckpointError(f"checkpoint '{path}' does not match its own stored config (it was altered)")
    difference = first_difference(json.loads(state["config"]), run_config)
    if difference:
        raise CheckpointError(f"checkpoint '{path}' belongs to another config than its run's config.json: "
                              f"{difference} (checkpoint vs config.json); restore config.json or use the run "
                              "the checkpoint came from")


def upgrade_config(cfg: dict) -> list[str]:
    """Bring a run's stored config up to this version's keys, in place; returns a note per change.

    - ``policy.horizon`` of a ``dreamer`` policy (before the world model's rollout-length
      schedule set the imagination horizon) becomes a constant schedule of that length.
    """
    notes = []
    policy, model = cfg.get("policy"), cfg.get("world_model")
    if isinstance(policy, dict) and policy.get("type") == "dreamer" and "horizon" in policy:
        horizon = policy.pop("horizon")
        if isinstance(model, dict):
            model["rollout_length_scheduler"] = {"type": "constant", "rollout_length": horizon}
        notes.append(f"policy.horizon {horizon} is now world_model.rollout_length_scheduler (constant {horizon})")
    return notes


# Top-level entries of a pipeline checkpoint and the types they must have.
REQUIRED = {"format": int, "config": str, "env_step": int, "pipeline": dict, "logger_latest": dict,
            "learner": dict, "policy": dict, "collector": dict, "torch_rng": torch.Tensor}
OPTIONAL = {"world_model": dict, "env_buffer": dict, "img_buffer": dict, "fingerprint": str}
PIPELINE_KEYS = ("next_eval_step", "next_checkpoint_step", "off_schedule_eval", "last_eval", "wall_time")


def validate_checkpoint(state: Mapping, path: Path) -> None:
    """Check a loaded checkpoint's structure before anything uses it.

    Raises:
        CheckpointError: naming the first missing or ill-typed entry.
    """
    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"checkpoint '{path}' is not a complete pipeline checkpoint ({what})")

    for key, kind in REQUIRED.items():
        if key not in state:
            raise bad(f"no '{key}'")
        if not isinstance(state[key], kind) or isinstance(state[key], bool) and kind is int:
            raise bad(f"'{key}' is a {type(state[key]).__name__}, not a {kind.__name__}")
    for key, kind in OPTIONAL.items():
        if state.get(key) is not None and not isinstance(state[key], kind):
            raise bad(f"'{key}' is a {type(state[key]).__name__}, not a {kind.__name__}")
    if state["format"] > FORMAT:
        raise bad(f"format {state['format']} is newer than this version's {FORMAT}: upgrade worldmodels")
    try:
        config = json.loads(state["config"])
    except json.JSONDecodeError:
        raise bad("its config is not valid JSON") from None
    if not isinstance(config, dict) or "env_steps" not in config:
        raise bad("its config is not a run config")
    missing = [key for key in PIPELINE_KEYS if key not in state["pipeline"]]
    if missing:
        raise bad(f"pipeline state lacks {', '.join(missing)}")
    pipeline = state["pipeline"]
    kinds = {"next_eval_step": (int,), "next_checkpoint_step": (int, type(None)), "off_schedule_eval": (bool,),
             "last_eval": (dict,), "wall_time": (int, float)}
    for key, allowed in kinds.items():
        value = pipeline[key]
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise bad(f"pipeline '{key}' is a {type(value).__name__}")
    last_eval = pipeline["last_eval"]  # {} or the latest progress row: its env_step an int, values numbers
    if last_eval and (not isinstance(last_eval.get("env_step"), int) or isinstance(last_eval["env_step"], bool)
                      or not all(isinstance(k, str) and isinstance(v, (int, float)) for k, v in last_eval.items())):
        raise bad("pipeline 'last_eval' is not an evaluation row")
    if state["env_step"] < 0:
        raise bad(f"env_step {state['env_step']} is negative")
    collector_step = state["collector"].get("envstep")
    if collector_step is not None and collector_step != state["env_step"]:
        raise bad(f"env_step {state['env_step']} differs from the collector's {collector_step!r}")


def read_run_config(run_dir: Path) -> dict:
    """A run directory's ``config.json``.

    Raises:
        CheckpointError: the folder does not exist, has no config.json, or it is not a JSON object.
    """
    if not run_dir.exists():
        raise CheckpointError(f"run directory '{run_dir}' does not exist")
    if not (run_dir / "config.json").is_file():
        raise CheckpointError(f"'{run_dir}' is not a run directory (no config.json)")
    try:
        config = json.loads((run_dir / "config.json").read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"'{run_dir / 'config.json'}' is not valid JSON ({err})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"'{run_dir / 'config.json'}' is not a run config (a JSON object)")
    return config


def misfit_error(path: Path, err: Exception) -> CheckpointError:
    """The one-line error for a checkpoint whose weights or state do not fit its config."""
    first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return CheckpointError(f"checkpoint '{path}' does not fit its config ({type(err).__name__}: {first_line})")


def checkpoint_paths(run_dir: Path) -> list[Path]:
    """Checkpoints newest first: a complete ``.checkpoint.pt.new`` that a kill left between the
    two renames of a write, ``checkpoint.pt``, then the kept older ones."""
    older = sorted((run_dir / "checkpoints").glob("checkpoint_*.pt"),
                   key=lambda p: int(p.stem.split("_")[-1]), reverse=True)
    pending = run_dir / f".{CHECKPOINT_NAME}.new"  # written and renamed into place only once complete
    return [*([pending] if pending.exists() else []), run_dir / CHECKPOINT_NAME, *older]


def rotate_and_save(state: dict, run_dir: Path, keep: int) -> Path:
    """Write ``state`` to a temporary file, move the current checkpoint aside, rename the new one in."""
    latest = run_dir / CHECKPOINT_NAME
    tmp = save_checkpoint(state, run_dir / f".{CHECKPOINT_NAME}.new")
    _archive_latest(run_dir, keep)
    tmp.replace(latest)
    for stale in checkpoint_paths(run_dir)[max(keep, 1):]:
        stale.unlink(missing_ok=True)
    return latest


def finish_interrupted_write(run_dir: Path, keep: int) -> None:
    """Complete a checkpoint write that a kill cut between its two renames: a complete
    ``.checkpoint.pt.new`` takes ``checkpoint.pt``'s place (which moves to ``checkpoints/``);
    one that does not load is removed."""
    pending = run_dir / f".{CHECKPOINT_NAME}.new"
    if not pending.exists():
        return
    try:
        validate_checkpoint(load_checkpoint(pending), pending)
    except CheckpointError as err:
        print(f"warning: {err}; removed", flush=True)
        pending.unlink()
        return
    _archive_latest(run_dir, keep)
    pending.replace(run_dir / CHECKPOINT_NAME)


def _archive_latest(run_dir: Path, keep: int) -> None:
    """Move ``checkpoint.pt`` to ``checkpoints/checkpoint_<step>.pt`` when older ones are kept."""
    latest = run_dir / CHECKPOINT_NAME
    if latest.exists() and keep > 1:
        history = run_dir / "checkpoints"
        history.mkdir(exist_ok=True)
        previous = load_step(latest)
        if previous is not None:
            latest.replace(history / f"checkpoint_{previous}.pt")


def load_step(path: Path) -> int | None:
    """The env step a checkpoint was written at, or None when it cannot be read."""
    try:
        step = load_checkpoint(path)["env_step"]
    except (CheckpointError, KeyError, TypeError):
        return None
    # a damaged entry (None, a float such as 1e241, a list) names no file
    valid = isinstance(step, int) and not isinstance(step, bool) and 0 <= step < 10**15
    return step if valid else None


T = TypeVar("T")


def first_usable_checkpoint(run_dir: Path, use: Callable[[Path], T]) -> T:
    """``use(path)`` of the newest checkpoint it accepts: one that raises CheckpointError is
    reported in a one-line warning and the next older one is tried.

    Raises:
        CheckpointError: no checkpoint was usable (each one's reason joined in one line).
    """
    errors = []
    for path in checkpoint_paths(run_dir):
        if not path.exists():
            continue
        try:
            return use(path)
        except CheckpointError as err:
            errors.append(str(err))
            print(f"warning: {err}; trying an older checkpoint", flush=True)
    detail = "; ".join(errors) if errors else "no checkpoint found"
    raise CheckpointError(f"cannot resume '{run_dir}': {detail}")


def _load_valid(path: Path) -> tuple[dict, Path]:
    state = load_checkpoint(path)
    validate_checkpoint(state, path)
    return state, path


def load_latest_checkpoint(run_dir: Path) -> tuple[dict, Path]:
    """The newest checkpoint of ``run_dir`` that loads and is complete; others are reported and skipped."""
    return first_usable_checkpoint(run_dir, _load_valid)
