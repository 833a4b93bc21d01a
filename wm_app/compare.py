"""Compare configs and their variants over seeds: run every (row, seed) pair, then write a
table with bootstrap intervals, a CSV and plots (``wm_app.compare_report``).

Rows are configs or variants of them (``CONFIG:key=value``, ``--grid``; ``wm_app.variants``).
Pairs run in parallel processes (threads per process chosen so the machine is not
oversubscribed) or as Ray tasks. Each pair has a fixed run directory under
the output directory, so running the same command again skips finished pairs
and resumes interrupted ones from their checkpoints. With "mlflow" in ``logger.backends``
every pair is an MLflow run in one experiment named after the output directory, tagged with
its row and seed (the local store: ``<out>/runs/mlruns``).
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from registry import plugin_names
from wm_app.compare_report import (
    THRESHOLDS,
    parse_normalize,
    read_results_csv,
    steps_to_threshold,
    task_scales,
    write_report,
)
from wm_app.experiment import compose_config
from wm_app.variants import Row, plan_rows
from wm_core.config import ConfigError
from workers.logger import read_progress

BACKENDS = ("local", "ray")
RESULT_NAME = "result.json"


class RunFailed(RuntimeError):
    """A run that stopped early (a failure the pipeline reported, or a signal)."""


@dataclass
class Pair:
    """One (row, seed) run of a comparison."""

    config: str
    seed: int
    run_dir: Path
    settings: dict = field(default_factory=dict)  # preset, sets (with the variant's), env_steps: must match
    threads: int = 1  # torch threads of the run
    label: str = ""  # the row's name (default: the config's stem)
    method: str = ""  # the row's name without its task (default: the label)
    variant: str = ""  # the row as written on the command line
    experiment: str = ""  # the MLflow experiment of every pair of the comparison (with "mlflow" in logger.backends)

    @property
    def name(self) -> str:
        return self.label or Path(self.config).stem

    def identity(self) -> dict[str, Any]:
        """What the current command calls this pair (a result read back takes these)."""
        return {"config": self.name, "method": self.method or self.name, "variant": self.variant or self.config}

    def mlflow_labels(self) -> dict[str, Any]:
        """The MLflow experiment and tags of this pair's run (used when the run records to MLflow)."""
        tags = {"row": self.name, "seed": str(self.seed), "variant": self.variant or self.config,
                "mlflow.runName": f"{self.name} seed{self.seed}"}
        return {"mlflow_experiment": self.experiment or None, "mlflow_tags": tags}


# A pool worker's view of a signal to the comparison: the pair it runs finishes its step and saves,
# and the worker starts no pair after it (the pool may already have handed it the next one).
_worker: dict[str, Any] = {"in_pool": False, "stopped_by": None, "pipeline": None}


def _init_pool_worker() -> None:
    """Pool initializer: SIGINT/SIGTERM between runs (a run installs its own handlers) and the
    parent's forwarded stop request (SIGUSR1) mark the worker stopped."""
    _worker.update(in_pool=True, stopped_by=None, pipeline=None)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _worker_signalled)
    if hasattr(signal, "SIGUSR1"):
        signal.signal(signal.SIGUSR1, _parent_stop_request)


def _worker_signalled(signum: int, frame: Any) -> None:
    _worker["stopped_by"] = _worker["stopped_by"] or signum


def _parent_stop_request(signum: int, frame: Any) -> None:
    """The comparison's process was signalled: stop as SIGTERM would (once, even if the same
    signal also reached this process directly)."""
    _worker["stopped_by"] = _worker["stopped_by"] or signal.SIGTERM
    if _worker["pipeline"] is not None:
        _worker["pipeline"].request_stop(signal.SIGTERM, " (by the comparison)")


def run_pair(pair: Pair) -> dict[str, Any]:
    """Run (or resume, or skip) one pair; never raises: a failure comes back as ``error``."""
    from workers.pipeline import SerialPipeline

    result_path = pair.run_dir / RESULT_NAME
    not_run = {**pair.identity(), "seed": pair.seed, "error": NOT_RUN}
    if _worker["stopped_by"] is not None:
        return not_run
    try:
        if result_path.is_file():
            result = json.loads(result_path.read_text())
            if result.get("settings") == pair.settings:
                return dict(result, skipped=True, **pair.identity())
        s = pair.settings
        sets = list(s["sets"])
        if not any(item.split("=", 1)[0].strip() == "num_threads" for item in sets):  # the user's value wins
            sets.append(f"num_threads={pair.threads}")
        cfg = compose_config(pair.config, s["preset"], sets, pair.seed, s["env_steps"])
        checkpoint_step = _checkpoint_step(pair.run_dir)
        if checkpoint_step is not None and checkpoint_step >= cfg.env_steps:  # finished, result not yet written
            pipeline = SerialPipeline(cfg, show_progress=False, run_dir=pair.run_dir)
            summary = {"env_steps": checkpoint_step, "wall_time": float("nan"),
                       "parameters": pipeline.parameter_count()}
        else:
            if checkpoint_step is not None:  # the plugins of the user's own config are trusted, no others
                pipeline = SerialPipeline.resume(pair.run_dir, cfg.env_steps, show_progress=False,
                                                 trust_plugins=plugin_names(cfg), **pair.mlflow_labels())
            else:
                if pair.run_dir.exists():  # an earlier attempt that never reached a checkpoint
                    shutil.rmtree(pair.run_dir)
                pipeline = SerialPipeline(cfg, show_progress=False, run_dir=pair.run_dir, **pair.mlflow_labels())
            _worker["pipeline"] = pipeline
            if _worker["stopped_by"] is not None:  # signalled while this pair was being set up
                return not_run
            try:
                summary = pipeline.run()
            finally:
                _worker["pipeline"] = None
            if summary["stopped_by"] is not None and _worker["in_pool"]:
                _worker["stopped_by"] = signal.Signals[summary["stopped_by"]]
            if summary["failure"] is not None:
                raise RunFailed(summary["failure"])
            if summary["stopped_by"] is not None:
                raise RunFailed(f"stopped by {summary['stopped_by']}")
        rows = _progress_rows(pair.run_dir)
        wall_time = rows[-1]["wall_time"] if rows else summary["wall_time"]
        result = {**pair.identity(), "seed": pair.seed, "settings": pair.settings, "env_id": cfg.env.id,
                  "env_steps": summary["env_steps"], "wall_time": wall_time, "parameters": summary["parameters"],
                  "rows": rows}
        result_path.write_text(json.dumps(result))
        return result
    except Exception as err:  # reported in the summary; the other pairs go on
        message = str(err) if isinstance(err, RunFailed) else f"{type(err).__name__}: {err}"
        return {**pair.identity(), "seed": pair.seed, "error": message,
                "traceback": traceback.format_exc()}


def _checkpoint_step(run_dir: Path) -> int | None:
    from workers.checkpoint import CheckpointError, load_latest_checkpoint

    if not run_dir.is_dir():
        return None
    try:
        return int(load_latest_checkpoint(run_dir)[0]["env_step"])
    except CheckpointError:
        return None


def _progress_rows(run_dir: Path) -> list[dict[str, float]]:
    return [{k: float(row[k]) for k in ("env_step", "wall_time", "eval_return_mean", "eval_return_std")}
            for row in read_progress(run_dir)]


def _run_ray(pairs: Sequence[Pair], workers: int, threads: int, address: str | None) -> list[dict]:
    try:
        import ray
    except ModuleNotFoundError:
        raise ConfigError("--backend ray needs Ray: pip install 'worldmodels[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=address, num_cpus=None if address else workers * threads, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    remote = ray.remote(num_cpus=threads)(run_pair)
    return ray.get([remote.remote(pair) for pair in pairs])


def _run_local(pairs: Sequence[Pair], workers: int, progress: Any) -> list[dict]:
    """Every pair's result; a run stopped by SIGINT/SIGTERM (its checkpoint saved) stops the
    compare: the pairs not yet started are reported as not run, for the next call to resume."""
    results = []
    if workers == 1:
        for pair in pairs:
            results.append(_report(run_pair(pair), progress))
            if _stopped_by_signal(results[-1]):
                break
    else:
        pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_pool_worker)
        with _ignoring_stop_requests():
            futures = [pool.submit(run_pair, pair) for pair in pairs]  # the workers start here
        with _StopOnSignal(futures) as stop, pool:
            for future in futures:
                while not future.done():  # a worker that was still starting when asked to stop is asked again
                    wait([future], timeout=1.0)
                    stop.forward()
                if future.cancelled():
                    continue
                results.append(_report(future.result(), progress))
                if _stopped_by_signal(results[-1]):
                    _cancel(futures)
    finished = {(result["config"], result["seed"]) for result in results}
    return results + [{**pair.identity(), "seed": pair.seed, "error": NOT_RUN} for pair in pairs
                      if (pair.name, pair.seed) not in finished]


NOT_RUN = "not run: the compare was stopped by a signal; run the same command again to resume"


def _cancel(futures: Sequence[Future]) -> None:
    for pending in futures:
        pending.cancel()


@contextmanager
def _ignoring_stop_requests() -> Iterator[None]:
    """Pool workers are spawned ignoring the parent's stop request (SIGUSR1), whose default
    would kill one still starting; their initializer installs its handler."""
    if not hasattr(signal, "SIGUSR1"):
        yield
        return
    previous = signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGUSR1, previous)


class _StopOnSignal:
    """While the pool runs: SIGINT/SIGTERM to this process cancels the pairs not yet handed out
    and asks every worker to stop its pair after the current step (it saves a checkpoint) and
    to start no other. A second signal is passed on as it is: the runs stop at once."""

    def __init__(self, futures: Sequence[Future]) -> None:
        self.futures = futures
        self.seen: list[int] = []
        self.previous: dict = {}

    def __enter__(self) -> _StopOnSignal:
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[signum] = signal.signal(signum, self._on_signal)
            except ValueError:  # not the main thread: signals stay with the caller
                pass
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.seen.append(signum)
        if len(self.seen) > 1:
            for child in multiprocessing.active_children():
                _send(child.pid, signum)
            raise KeyboardInterrupt
        print(f"{signal.Signals(signum).name} received: the running pairs finish their step and save; "
              "the others are not started", file=sys.stderr, flush=True)
        _cancel(self.futures)
        self.forward()

    def forward(self) -> None:
        """Ask every worker to stop (a repeated request changes nothing in a worker)."""
        if self.seen:
            for child in multiprocessing.active_children():
                _send(child.pid, getattr(signal, "SIGUSR1", signal.SIGTERM))


def _send(pid: int | None, signum: int) -> None:
    if pid is None:
        return
    try:
        os.kill(pid, signum)
    except ProcessLookupError:  # it has just exited
        pass


def _stopped_by_signal(result: dict) -> bool:
    return str(result.get("error", "")).startswith("stopped by SIG")


def _report(result: dict, progress: Any) -> dict:
    if progress is not None:
        progress(result)
    return result


class _EvaluationWatcher:
    """Reports each pair's evaluations while it runs, so that a comparison of hour-long runs
    shows progress before a run ends: a thread reads the pairs' ``progress.csv`` (written
    atomically) every ``interval`` seconds and calls ``evaluation`` with each new row. A pair
    is no longer watched once its result is reported (``finished``); rows already on disk when
    the comparison starts (a resumed or finished pair) are not reported again."""

    def __init__(self, pairs: Sequence[Pair], evaluation: Any, interval: float) -> None:
        self.pairs, self.evaluation, self.interval = pairs, evaluation, interval
        self.reported = {pair.run_dir: self._last_step(pair) for pair in pairs}
        self.done: set[Path] = set()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="compare-evaluations", daemon=True)

    @staticmethod
    def _rows(pair: Pair) -> list[dict]:
        try:
            return read_progress(pair.run_dir)
        except (OSError, ValueError):  # a run directory being replaced: read it next time
            return []

    def _last_step(self, pair: Pair) -> float:
        rows = self._rows(pair)
        return rows[-1]["env_step"] if rows else -1

    def __enter__(self) -> _EvaluationWatcher:
        if self.evaluation is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join()

    def _loop(self) -> None:
        while not self.stopping.wait(self.interval):
            self.poll()

    def poll(self) -> None:
        """Report the rows written since the last poll, pair by pair."""
        for pair in self.pairs:
            with self.lock:
                if pair.run_dir in self.done:
                    continue
                for row in self._rows(pair):
                    if row["env_step"] > self.reported[pair.run_dir] and "eval_return_mean" in row:
                        self.reported[pair.run_dir] = row["env_step"]
                        self.evaluation({**pair.identity(), "seed": pair.seed, **row})

    def finished(self, result: dict, progress: Any) -> dict:
        """Stop watching the pair of ``result``, then report the result (no evaluation line
        of that pair comes after it)."""
        with self.lock:
            self.done.update(pair.run_dir for pair in self.pairs
                             if (pair.name, pair.seed) == (result.get("config"), result.get("seed")))
            return _report(result, progress)


def compare(configs: Sequence[str], seeds: int, *, grid: Sequence[str] = (), normalize: Sequence[str] = (),
            env_steps: int | None = None, preset: str | None = None, sets: Iterable[str] = (),
            workers: int | None = None, threads: int | None = None, backend: str = "local",
            address: str | None = None, out: str | Path | None = None, progress: Any = None,
            announce: Any = None, evaluation: Any = None, evaluation_interval: float = 10.0,
            only_seeds: Iterable[int] | None = None) -> Path:
    """Run every (row, seed) pair and write the comparison; returns the output directory.

    Args:
        configs: configs or variants, ``CONFIG[:key=value...]`` (``wm_app.variants``).
        grid: ``key=v1,v2`` sweeps; every config is run with every combination.
        normalize: ``TASK=LOW,HIGH`` score ranges, needed when several tasks are compared
            (DMC tasks default to 0,1000).
        threads: torch threads of each run (default 1); a ``num_threads`` in ``sets`` wins.
        progress: called with each run's result as it finishes.
        evaluation: called with each new evaluation of a running pair (its identity, seed and
            progress.csv row: env_step, wall_time, eval_return_mean, ...), read from the run
            directories every ``evaluation_interval`` seconds (not for a remote Ray cluster,
            whose run directories are elsewhere).
        announce: called once with the planned rows and the number of runs, before any run.
        only_seeds: run only these of seeds 0..seeds-1 (the others ran elsewhere, e.g. on a
            machine whose run folders are gone but whose results are kept).

    Raises:
        ConfigError: a variant or grid that does not parse or resolve, two rows that resolve to
            the same config, or a task with no normalisation (all checked before anything runs).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    chosen = list(range(seeds)) if only_seeds is None else sorted(set(only_seeds))
    outside = [seed for seed in chosen if not 0 <= seed < seeds]
    if outside or not chosen:
        raise ConfigError(f"--only-seed must name seeds in 0..{seeds - 1} (--seeds {seeds}), got "
                          f"{', '.join(map(str, outside)) or 'none'}")
    sets = list(sets)
    rows = plan_rows(configs, grid, preset=preset, sets=sets, env_steps=env_steps)  # fail fast, before any run
    scales = task_scales([row.task for row in rows], parse_normalize(normalize))
    workers = max(1, min(workers or os.cpu_count() or 1, len(rows) * len(chosen)))
    threads = threads or 1  # small RL networks are latency-bound: one thread per run (README, "CPU threads")
    out = Path(out) if out is not None else default_out_dir(rows, preset)
    pairs = [_pair(row, seed, out, preset, sets, env_steps, threads) for row in rows for seed in chosen]
    if announce is not None:
        announce(rows, len(pairs))
    start = time.perf_counter()
    with _EvaluationWatcher(pairs, evaluation, evaluation_interval) as watcher:
        def report(result: dict) -> None:
            watcher.finished(result, progress)

        runs = run_order(pairs)
        if backend == "ray":
            results = _run_ray(runs, workers, threads, address)
            for result in results:
                report(result)
        else:
            results = _run_local(runs, workers, report)
        results = in_row_order(results, pairs)
    write_report(out, [row.label for row in rows], results, _footer(results, time.perf_counter() - start), scales)
    return out


def run_order(pairs: Sequence[Pair]) -> list[Pair]:
    """Seed by seed: every row's seed 0, then every row's seed 1, ... so that a comparison
    stopped part way (or still running) has the same seeds of every row to set side by side."""
    return sorted(pairs, key=lambda pair: pair.seed)  # stable: rows keep their order within a seed


def in_row_order(results: Sequence[dict], pairs: Sequence[Pair]) -> list[dict]:
    """``results`` reordered to ``pairs``' order (row by row, the order of the report)."""
    position = {(pair.name, pair.seed): i for i, pair in enumerate(pairs)}
    return sorted(results, key=lambda result: position.get((result["config"], result["seed"]), len(pairs)))


def _pair(row: Row, seed: int, out: Path, preset: str | None, sets: list[str], env_steps: int | None,
          threads: int) -> Pair:
    """A row's run for one seed, in ``<out>/runs/<variant folder>/seed<k>`` (the same folder for the
    same variant and seed whatever else the command compares, so rerunning resumes)."""
    settings = {"preset": preset, "sets": [*sets, *row.variant.sets], "env_steps": env_steps}
    return Pair(row.variant.config, seed, out / "runs" / row.variant.run_folder() / f"seed{seed}", settings,
                threads, label=row.label, method=row.method, variant=row.variant.spec,
                experiment=out.resolve().name)


def _footer(results: Sequence[dict], wall_time: float) -> str:
    skipped = sum(bool(r.get("skipped")) for r in results)
    earlier = f"; {skipped} of {len(results)} runs had finished before and were read back" if skipped else ""
    return f"Wall-clock of this compare command: {wall_time:.0f} s{earlier}."


def report(source: str | Path, *, normalize: Sequence[str] = (), out: str | Path | None = None) -> Path:
    """Re-render ``summary.md`` and the plots from a ``results.csv`` (or a folder holding one), with no
    runs; writes next to it unless ``out`` is given, and returns the output directory.

    Raises:
        ConfigError: no readable results.csv, or several tasks and one with no normalisation.
    """
    source = Path(source)
    names, results = read_results_csv(source)
    scales = task_scales([r["env_id"] for r in results], parse_normalize(normalize))
    target = Path(out) if out is not None else (source if source.is_dir() else source.parent)
    csv_name = source.name if source.is_file() else "results.csv"
    write_report(target, names, results, f"Rendered from {csv_name} by `worldmodels compare --report` (no runs).",
                 scales, write_csv=target.resolve() != (source if source.is_dir() else source.parent).resolve())
    return target


def default_out_dir(rows: Sequence[Row], preset: str | None) -> Path:
    """``comparisons/<config>_vs_<config>[_<preset>]``; variants add a hash of the rows."""
    stems = list(dict.fromkeys(row.variant.stem for row in rows))
    name = "_vs_".join(stems)
    if any(row.variant.sets for row in rows):
        specs = "\n".join(row.variant.spec for row in rows)
        name += f"_variants-{hashlib.sha1(specs.encode()).hexdigest()[:8]}"
    return Path("comparisons") / (name + (f"_{preset}" if preset else ""))


__all__ = ["THRESHOLDS", "Pair", "compare", "report", "run_pair", "steps_to_threshold"]
