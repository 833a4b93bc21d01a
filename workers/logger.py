"""Run output: TensorBoard events, progress.csv and a progress bar."""
from __future__ import annotations

import contextlib
import csv
import math
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto import event_pb2
from tensorboardX.summary import scalar
from tqdm import tqdm

from workers.checkpoint import RunOutputError

PROGRESS_COLUMNS = ("env_step", "wall_time", "train_iter", "eval_return_mean", "eval_return_std")


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


class RunLogger:
    """Writes scalars to TensorBoard and one ``progress.csv`` row per evaluation.

    Scalars logged before ``open`` (while components are being built) are kept
    as the latest values but not written.
    """

    def __init__(self, total_steps: int, show_progress: bool = True) -> None:
        self.total_steps = int(total_steps)
        self.show_progress = show_progress
        self.run_dir: Path | None = None
        self.writer: EventWriter | None = None
        self.bar: tqdm | None = None
        self.latest: dict[str, float] = {}
        self.rows: list[dict[str, float]] = []
        self.columns: list[str] = list(PROGRESS_COLUMNS)
        self.start_time = time.perf_counter()
        self.last_eval = float("nan")
        self.last_eval_text = ""
        self.progress_metric: str | None = None  # e.g. "world_model/loss": shown beside the return

    def open(self, run_dir: Path, start_step: int = 0, wall_offset: float = 0.0) -> None:
        """Start writing into ``run_dir``; a resumed run passes its step and training time so far."""
        self.run_dir = Path(run_dir)
        self.writer = EventWriter(self.run_dir, flush_secs=30)
        self.start_time = time.perf_counter() - wall_offset
        for row in self.rows:
            for key in row:
                if key not in self.columns:
                    self.columns.append(key)
        if self.show_progress:
            self.bar = tqdm(total=self.total_steps, initial=start_step, unit="step", dynamic_ncols=True,
                            desc="env steps", file=sys.stdout, mininterval=0.5, smoothing=0.05)

    def wall_time(self) -> float:
        return time.perf_counter() - self.start_time

    def log_scalars(self, prefix: str, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            name = f"{prefix}/{key}"
            value = float(value)
            self.latest[name] = value
            if self.writer is not None and math.isfinite(value):
                self.writer.add_scalar(name, value, step)
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

    def close(self) -> RunOutputError | None:
        """Close the bar and the event file; returns (not raises) an error writing the last events,
        so that a failure already on its way out is not replaced by it."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.writer is not None:
            writer, self.writer = self.writer, None
            try:
                writer.close()
            except RunOutputError as err:
                return err
        return None


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
