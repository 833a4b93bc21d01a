"""Run output: progress.csv, TensorBoard events, an optional MLflow run and a progress bar."""
from __future__ import annotations

import contextlib
import csv
import json
import math
import re
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto import event_pb2
from tensorboardX.summary import scalar
from tqdm import tqdm

from workers.checkpoint import RunOutputError

PROGRESS_COLUMNS = ("env_step", "wall_time", "train_iter", "eval_return_mean", "eval_return_std")
MLFLOW_RUN_FILE = "mlflow_run.json"  # in the run directory: the MLflow run that a resume continues
MLFLOW_PARAMS_PER_BATCH = 100  # MLflow's limits on one log_batch call
MLFLOW_METRICS_PER_BATCH = 1000
MLFLOW_MAX_PARAM_LENGTH = 6000


class EventWriter:
    """TensorBoard scalars written from the calling thread, flushed every ``flush_secs``.

    tensorboardX's SummaryWriter writes from a background thread: when the disk fills,
    that thread dies printing a traceback and the next writes block on its full queue.
    Here a write error reaches the caller as a RunOutputError, and a partial event file
    is still readable up to its last whole record.
    """

    def __init__(self, run_dir: Path, flush_secs: float = 30.0) -> None:
        self.path = str(Path(run_dir) / "events.out.tfevents.*")  # until the file is named
        with self._writing():  # the file opens with a first event
            self.events = EventsWriter(str(Path(run_dir) / "events"))
        self.path = self.events._file_name
        self.flush_secs = float(flush_secs)
        self.last_flush = time.monotonic()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """OSError (e.g. a full disk) -> RunOutputError naming the event file."""
        try:
            yield
        except OSError as err:
            raise RunOutputError(self.path, err) from None

    def add_scalar(self, name: str, value: float, step: int) -> None:
        event = event_pb2.Event(wall_time=time.time(), step=int(step), summary=scalar(name, value))
        with self._writing():
            self.events.write_event(event)
        if time.monotonic() - self.last_flush >= self.flush_secs:
            self.flush()

    def flush(self) -> None:
        with self._writing():
            self.events.flush()
        self.last_flush = time.monotonic()

    def close(self) -> None:
        with self._writing():
            self.events.close()


@dataclass(frozen=True)
class MlflowTarget:
    """Where and as what a run is recorded in MLflow.

    Attributes:
        tracking_uri: the tracking store: a local SQLite file (``sqlite:////abs/path/mlflow.db``)
            or a tracking server's URL.
        experiment: the experiment's name; created when the store has none of that name.
        artifact_location: where an experiment created here keeps its runs' artifacts (None: the
            store's default).
        params: the run's parameters, e.g. ``flatten_params(config)``.
        tags: the run's tags; ``mlflow.runName`` names the run.
    """

    tracking_uri: str
    experiment: str
    artifact_location: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)


def local_mlflow_store(folder: Path | str) -> tuple[str, str]:
    """The tracking URI and artifact location of a local MLflow store kept in ``folder``: the
    SQLite database ``mlflow.db`` and the artifacts in ``artifacts/``; no server.

    MLflow 3 refuses its older file store (a bare ``mlruns/`` tree) unless MLFLOW_ALLOW_FILE_STORE
    is set, and recommends SQLite for local use.
    """
    folder = Path(folder).resolve()
    return f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri()


def mlflow_name(name: str) -> str:
    """``name`` with each character that MLflow refuses in metric and parameter names as '_'
    (the names the pipeline logs, e.g. ``eval/return_mean``, are kept as they are)."""
    return re.sub(r"[^/\w.\- :]", "_", name)


def flatten_params(cfg: Mapping, prefix: str = "") -> dict[str, str]:
    """A config as MLflow parameters: nested dicts become dotted keys (``policy.type``), every
    other value its text (an empty dict is ``{}``)."""
    params = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            params.update(flatten_params(value, f"{name}."))
        else:
            params[mlflow_name(name)] = str(value)[:MLFLOW_MAX_PARAM_LENGTH]
    return params


@contextlib.contextmanager
def _store_lock(tracking_uri: str) -> Iterator[None]:
    """An exclusive lock beside a local SQLite store while it is opened: runs that start at once
    (compare's) would otherwise create its tables, or an experiment, twice."""
    if not tracking_uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    lock_path = Path(tracking_uri[len("sqlite:///"):].split("?", 1)[0] + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class MlflowWriter:
    """One MLflow run of a run directory: parameters and tags when it opens, scalars sent in
    batches every ``flush_secs``, artifacts and the run's status when it closes.

    The run's id is kept in the run directory (``mlflow_run.json``), so a resumed run continues
    the same MLflow run. An error of the tracking store reaches the caller as a RunOutputError.
    MLflow is imported here only: a run that does not ask for it does not need it installed.
    """

    def __init__(self, run_dir: Path, target: MlflowTarget, flush_secs: float = 30.0) -> None:
        from mlflow.entities import Metric, Param
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        self._metric, self._param, self._store_error = Metric, Param, MlflowException
        self.uri = target.tracking_uri
        self.flush_secs = float(flush_secs)
        self.pending: list[Any] = []
        with self._writing(self.uri), _store_lock(self.uri):
            self.client = MlflowClient(tracking_uri=self.uri)
            experiment_id = self._experiment_id(target)
        record = Path(run_dir) / MLFLOW_RUN_FILE
        with self._writing(self.uri):
            self.run_id = self._continue(record, target) or self._create(experiment_id, target)
        with self._writing(record):
            record.write_text(json.dumps({"tracking_uri": self.uri, "run_id": self.run_id}) + "\n")
        self.last_flush = time.monotonic()

    @contextlib.contextmanager
    def _writing(self, where: Path | str) -> Iterator[None]:
        """An error of the tracking store or the disk -> RunOutputError naming ``where``."""
        try:
            yield
        except (self._store_error, OSError) as err:
            message = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise RunOutputError(where, OSError(message)) from None

    def _experiment_id(self, target: MlflowTarget) -> str:
        experiment = self.client.get_experiment_by_name(target.experiment)
        if experiment is not None:
            return experiment.experiment_id
        return self.client.create_experiment(target.experiment, artifact_location=target.artifact_location)

    def _continue(self, record: Path, target: MlflowTarget) -> str | None:
        """The id of the run that ``record`` names, reopened; None when there is none to continue
        (a new run directory, or a run no longer in the store)."""
        try:
            run_id = json.loads(record.read_text())["run_id"]
            run = self.client.get_run(run_id)
        except (OSError, ValueError, KeyError, TypeError, self._store_error):
            return None
        if run.info.lifecycle_stage != "active":
            return None
        self.client.update_run(run_id, status="RUNNING")
        logged = run.data.params
        # a parameter keeps its first value (MLflow refuses a change): a resume's new budget is a tag
        self._log_params(run_id, {k: v for k, v in target.params.items() if k not in logged})
        changed = {f"resumed.{k}": v for k, v in target.params.items() if k in logged and logged[k] != v}
        for key, value in {**target.tags, **changed}.items():
            self.client.set_tag(run_id, key, value)
        return run_id

    def _create(self, experiment_id: str, target: MlflowTarget) -> str:
        run_id = self.client.create_run(experiment_id, tags=dict(target.tags)).info.run_id
        self._log_params(run_id, target.params)
        return run_id

    def _log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        items = [self._param(key, value) for key, value in params.items()]
        for start in range(0, len(items), MLFLOW_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=items[start:start + MLFLOW_PARAMS_PER_BATCH])

    def add_scalar(self, name: str, value: float, step: int) -> None:
        self.pending.append(self._metric(mlflow_name(name), float(value), int(time.time() * 1000), int(step)))
        if len(self.pending) >= MLFLOW_METRICS_PER_BATCH or time.monotonic() - self.last_flush >= self.flush_secs:
            self.flush()

    def flush(self) -> None:
        metrics, self.pending = self.pending, []
        with self._writing(self.uri):
            for start in range(0, len(metrics), MLFLOW_METRICS_PER_BATCH):
                self.client.log_batch(self.run_id, metrics=metrics[start:start + MLFLOW_METRICS_PER_BATCH])
        self.last_flush = time.monotonic()

    def close(self, status: str = "FINISHED", artifacts: Sequence[Path] = ()) -> None:
        """Send the last scalars and the ``artifacts`` that exist, then end the run with ``status``
        (FINISHED, FAILED or KILLED; a resume sets it RUNNING again)."""
        try:
            self.flush()
            with self._writing(self.uri):
                for path in artifacts:
                    if Path(path).is_file():
                        self.client.log_artifact(self.run_id, str(path))
        finally:
            with self._writing(self.uri):
                self.client.set_terminated(self.run_id, status)


class RunLogger:
    """Writes one ``progress.csv`` row per evaluation, and scalars to TensorBoard (unless
    ``tensorboard`` is False) and to an MLflow run (when ``open`` is given one).

    progress.csv is always written: resume and compare read it back. Scalars logged before
    ``open`` (while components are being built) are kept as the latest values but not written.
    """

    def __init__(self, total_steps: int, show_progress: bool = True, tensorboard: bool = True,
                 unit: str = "env steps") -> None:
        self.total_steps = int(total_steps)
        self.unit = unit  # what the progress bar counts
        self.show_progress = show_progress
        self.tensorboard = tensorboard
        self.run_dir: Path | None = None
        self.writer: EventWriter | None = None
        self.mlflow: MlflowWriter | None = None
        self.bar: tqdm | None = None
        self.latest: dict[str, float] = {}
        self.rows: list[dict[str, float]] = []
        self.columns: list[str] = list(PROGRESS_COLUMNS)
        self.start_time = time.perf_counter()
        self.last_eval = float("nan")
        self.last_eval_text = ""
        self.progress_metric: str | None = None  # e.g. "world_model/loss": shown beside the return

    def open(self, run_dir: Path, start_step: int = 0, wall_offset: float = 0.0,
             mlflow: MlflowTarget | None = None) -> None:
        """Start writing into ``run_dir`` (and ``mlflow``'s run); a resumed run passes its step and
        training time so far."""
        self.run_dir = Path(run_dir)
        if self.tensorboard:
            self.writer = EventWriter(self.run_dir, flush_secs=30)
        if mlflow is not None:
            self.mlflow = MlflowWriter(self.run_dir, mlflow, flush_secs=30)
        self.start_time = time.perf_counter() - wall_offset
        for row in self.rows:
            for key in row:
                if key not in self.columns:
                    self.columns.append(key)
        if self.show_progress:
            self.bar = tqdm(total=self.total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                            desc=self.unit, file=sys.stdout, mininterval=0.5, smoothing=0.05)

    def wall_time(self) -> float:
        return time.perf_counter() - self.start_time

    def log_scalars(self, prefix: str, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            name = f"{prefix}/{key}"
            value = float(value)
            self.latest[name] = value
            if self.writer is not None and math.isfinite(value):
                self.writer.add_scalar(name, value, step)
            if self.mlflow is not None and math.isfinite(value):
                self.mlflow.add_scalar(name, value, step)
            if name == self.progress_metric:
                self._show_postfix()

    def advance(self, envstep: int) -> None:
        if self.bar is not None:
            self.bar.update(envstep - self.bar.n)

    def log_evaluation(self, envstep: int, train_iter: int, mean: float, std: float) -> dict[str, float]:
        """Record an evaluation: TensorBoard, a progress.csv row (with the latest model metrics)."""
        self.last_eval = mean
        self.log_scalars("eval", {"return_mean": mean, "return_std": std}, envstep)
        row = {"env_step": envstep, "wall_time": round(self.wall_time(), 3), "train_iter": train_iter,
               "eval_return_mean": mean, "eval_return_std": std}
        if "imagination/rollout_length" in self.latest:  # the schedule's length, for every kind of model
            row["rollout_length"] = self.latest["imagination/rollout_length"]
        row.update({k: v for k, v in sorted(self.latest.items()) if k.startswith("world_model/")})
        self.rows.append(row)
        for key in row:
            if key not in self.columns:
                self.columns.append(key)
        self._write_csv()
        self.last_eval_text = f"eval return {mean:.1f} ± {std:.1f}"
        self._show_postfix()
        return row

    def _show_postfix(self) -> None:
        """The progress bar's text: the latest evaluation and the model's latest loss."""
        if self.bar is None:
            return
        parts = [self.last_eval_text] if self.last_eval_text else []
        if self.progress_metric in self.latest:
            parts.append(f"model {self.progress_metric.split('/', 1)[1]} {self.latest[self.progress_metric]:.3g}")
        self.bar.set_postfix_str(", ".join(parts), refresh=False)

    def _write_csv(self) -> None:
        if self.run_dir is None:
            return
        path = self.run_dir / "progress.csv"
        tmp = path.with_suffix(".csv.tmp")
        try:
            with open(tmp, "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=self.columns, restval="")
                writer.writeheader()
                writer.writerows(self.rows)
            tmp.replace(path)
        except OSError as err:  # a full disk: the previous progress.csv stays whole, no partial file stays
            tmp.unlink(missing_ok=True)
            raise RunOutputError(path, err) from None

    def message(self, text: str, always: bool = False) -> None:
        """Print ``text`` above the progress bar; without a bar only when ``always``."""
        if self.bar is not None:
            self.bar.write(text)
        elif always or self.show_progress:
            print(text, flush=True)

    def close(self, status: str = "FINISHED", artifacts: Sequence[Path] = ()) -> RunOutputError | None:
        """Close the bar and the event file, and end the MLflow run with ``status`` after sending it
        the ``artifacts``; returns (not raises) the first error writing the last output, so that a
        failure already on its way out is not replaced by it."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        error = None
        if self.writer is not None:
            writer, self.writer = self.writer, None
            try:
                writer.close()
            except RunOutputError as err:
                error = err
        if self.mlflow is not None:
            mlflow, self.mlflow = self.mlflow, None
            try:
                mlflow.close(status, artifacts)
            except RunOutputError as err:
                error = error or err
        return error


def read_progress(run_dir: Path | str) -> list[dict[str, float | int]]:
    """Every row of a run's ``progress.csv`` (values as numbers, empty cells left out); [] when
    the run has none yet."""
    path = Path(run_dir) / "progress.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return [{k: _number(v) for k, v in row.items() if v != ""} for row in csv.DictReader(handle)]


def _number(text: str) -> float | int:
    try:
        return int(text)
    except ValueError:
        return float(text)
