"""Run output: tensorboardX events, progress.csv and a progress bar."""
from __future__ import annotations

import csv
import math
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from tensorboardX import SummaryWriter
from tqdm import tqdm

PROGRESS_COLUMNS = ("env_step", "wall_time", "train_iter", "eval_return_mean", "eval_return_std")


class RunLogger:
    """Writes scalars to TensorBoard and one ``progress.csv`` row per evaluation.

    Scalars logged before ``open`` (while components are being built) are kept
    as the latest values but not written.
    """

    def __init__(self, total_steps: int, show_progress: bool = True) -> None:
        self.total_steps = int(total_steps)
        self.show_progress = show_progress
        self.run_dir: Path | None = None
        self.writer: SummaryWriter | None = None
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
        self.writer = SummaryWriter(str(self.run_dir), flush_secs=30)
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
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns, restval="")
            writer.writeheader()
            writer.writerows(self.rows)
        tmp.replace(path)

    def message(self, text: str, always: bool = False) -> None:
        """Print ``text`` above the progress bar; without a bar only when ``always``."""
        if self.bar is not None:
            self.bar.write(text)
        elif always or self.show_progress:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.writer is not None:
            self.writer.close()
            self.writer = None
