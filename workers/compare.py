"""Compare configs over seeds: run every (config, seed) pair, then write a table, a CSV and plots.

Pairs run in parallel processes (threads per process chosen so the machine is
not oversubscribed) or as Ray tasks. Each pair has a fixed run directory under
the output directory, so running the same command again skips finished pairs
and resumes interrupted ones from their checkpoints.
"""
from __future__ import annotations

import csv
import json
import math
import os
import shutil
import statistics
import time
import traceback
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from registry import plugin_names
from worldmodels.config import ConfigError
from worldmodels.envs import env_base_name
from worldmodels.experiment import compose_config

BACKENDS = ("local", "ray")
# Eval return that counts as solving a task, by env name (without version).
THRESHOLDS = {"Pendulum": -200.0, "InvertedPendulum": 950.0, "InvertedDoublePendulum": 9000.0,
              "CartPole": 450.0, "Hopper": 3000.0, "Walker2d": 3000.0, "HalfCheetah": 5000.0, "Ant": 3000.0}
RESULT_NAME = "result.json"


class RunFailed(RuntimeError):
    """A run that stopped early (a failure the pipeline reported, or a signal)."""


@dataclass
class Pair:
    """One (config, seed) run of a comparison."""

    config: str
    seed: int
    run_dir: Path
    settings: dict = field(default_factory=dict)  # preset, sets, env_steps: a finished pair must match
    threads: int = 1  # torch threads of the run

    @property
    def name(self) -> str:
        return Path(self.config).stem


def run_pair(pair: Pair) -> dict[str, Any]:
    """Run (or resume, or skip) one pair; never raises: a failure comes back as ``error``."""
    from workers.pipeline import SerialPipeline

    result_path = pair.run_dir / RESULT_NAME
    try:
        if result_path.is_file():
            result = json.loads(result_path.read_text())
            if result.get("settings") == pair.settings:
                return dict(result, skipped=True)
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
                                                 trust_plugins=plugin_names(cfg))
            else:
                if pair.run_dir.exists():  # an earlier attempt that never reached a checkpoint
                    shutil.rmtree(pair.run_dir)
                pipeline = SerialPipeline(cfg, show_progress=False, run_dir=pair.run_dir)
            summary = pipeline.run()
            if summary["failure"] is not None:
                raise RunFailed(summary["failure"])
            if summary["stopped_by"] is not None:
                raise RunFailed(f"stopped by {summary['stopped_by']}")
        rows = _progress_rows(pair.run_dir)
        wall_time = rows[-1]["wall_time"] if rows else summary["wall_time"]
        result = {"config": pair.name, "seed": pair.seed, "settings": pair.settings, "env_id": cfg.env.id,
                  "env_steps": summary["env_steps"], "wall_time": wall_time, "parameters": summary["parameters"],
                  "rows": rows}
        result_path.write_text(json.dumps(result))
        return result
    except Exception as err:  # reported in the summary; the other pairs go on
        message = str(err) if isinstance(err, RunFailed) else f"{type(err).__name__}: {err}"
        return {"config": pair.name, "seed": pair.seed, "error": message,
                "traceback": traceback.format_exc()}


def _checkpoint_step(run_dir: Path) -> int | None:
    from workers.checkpoint import CheckpointError
    from workers.pipeline import load_latest_checkpoint

    if not run_dir.is_dir():
        return None
    try:
        return int(load_latest_checkpoint(run_dir)[0]["env_step"])
    except CheckpointError:
        return None


def _progress_rows(run_dir: Path) -> list[dict[str, float]]:
    with open(run_dir / "progress.csv", newline="") as handle:
        return [{k: float(row[k]) for k in ("env_step", "wall_time", "eval_return_mean", "eval_return_std")}
                for row in csv.DictReader(handle)]


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
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(run_pair, pair) for pair in pairs]
            for future in futures:
                if future.cancelled():
                    continue
                results.append(_report(future.result(), progress))
                if _stopped_by_signal(results[-1]):
                    for pending in futures:
                        pending.cancel()
    finished = {(result["config"], result["seed"]) for result in results}
    return results + [{"config": pair.name, "seed": pair.seed, "error": NOT_RUN} for pair in pairs
                      if (pair.name, pair.seed) not in finished]


NOT_RUN = "not run: the compare was stopped by a signal; run the same command again to resume"


def _stopped_by_signal(result: dict) -> bool:
    return str(result.get("error", "")).startswith("stopped by SIG")


def _report(result: dict, progress: Any) -> dict:
    if progress is not None:
        progress(result)
    return result


def compare(configs: Sequence[str], seeds: int, *, env_steps: int | None = None, preset: str | None = None,
            sets: Iterable[str] = (), workers: int | None = None, threads: int | None = None,
            backend: str = "local",
            address: str | None = None, out: str | Path | None = None, progress: Any = None) -> Path:
    """Run every (config, seed) pair and write the comparison; returns the output directory.

    ``threads``: torch threads of each run (default 1); a ``num_threads`` in ``sets`` wins.

    Raises:
        ConfigError: a config that does not resolve (checked for every config before anything runs).
    """
    if backend not in BACKENDS:
        raise ConfigError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {seeds}")
    sets = list(sets)
    for config in configs:  # fail fast, before any run starts
        compose_config(config, preset, sets, 0, env_steps)
    cpus = os.cpu_count() or 1
    workers = max(1, min(workers or cpus, len(configs) * seeds))
    if threads is None:
        threads = 1  # small RL networks are latency-bound: one thread per run (README, "CPU threads")
    elif threads < 1:
        raise ConfigError(f"--threads must be >= 1, got {threads}")
    out = Path(out) if out is not None else default_out_dir(configs, preset)
    settings = {"preset": preset, "sets": sets, "env_steps": env_steps}
    pairs = [Pair(config, seed, out / "runs" / Path(config).stem / f"seed{seed}", settings, threads)
             for config in configs for seed in range(seeds)]
    start = time.perf_counter()
    if backend == "ray":
        results = _run_ray(pairs, workers, threads, address)
        for result in results:
            _report(result, progress)
    else:
        results = _run_local(pairs, workers, progress)
    write_outputs(out, [Path(c).stem for c in configs], results, time.perf_counter() - start)
    return out


def default_out_dir(configs: Sequence[str], preset: str | None) -> Path:
    name = "_vs_".join(Path(c).stem for c in configs) + (f"_{preset}" if preset else "")
    return Path("comparisons") / name


# -- outputs ----------------------------------------------------------------
def steps_to_threshold(rows: Sequence[dict], threshold: float | None) -> float | None:
    """The first evaluated env step whose mean return reaches ``threshold``."""
    if threshold is None:
        return None
    for row in rows:
        if row["eval_return_mean"] >= threshold:
            return row["env_step"]
    return None


def threshold_label(reached: Sequence[float | None], threshold: float | None) -> str:
    """Median env steps to the threshold over seeds, a seed that did not reach it within its
    budget counting as later than any that did (so the median exists while more than half
    reached it)."""
    if threshold is None:
        return "n/a (no threshold)"
    missing = sum(steps is None for steps in reached)
    median = statistics.median(math.inf if steps is None else steps for steps in reached)
    if math.isinf(median):
        return f"not reached by {missing} of {len(reached)} (≥ {threshold:g})"
    late = f"; {missing} of {len(reached)} not within the budget" if missing else ""
    return f"{_fmt(median, 0)} (≥ {threshold:g}{late})"


def write_outputs(out: Path, names: Sequence[str], results: Sequence[dict], wall_time: float) -> None:
    """``results.csv``, ``summary.md``, ``curves.png`` and ``wallclock.png`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["config", "seed", "env_step", "wall_time", "eval_return_mean", "eval_return_std"])
        for result in results:
            for row in result.get("rows", []):
                writer.writerow([result["config"], result["seed"], int(row["env_step"]), row["wall_time"],
                                 row["eval_return_mean"], row["eval_return_std"]])
    (out / "summary.md").write_text(summary_markdown(names, results, wall_time))
    plot_curves(out, names, results)


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.{digits}f}"


def summary_markdown(names: Sequence[str], results: Sequence[dict], wall_time: float) -> str:
    lines = ["| config | seeds | final eval return (mean ± std) | env steps to threshold (median) | "
             "wall-clock per run (s) | env steps/s | parameters |",
             "|---|---|---|---|---|---|---|"]
    errors = []
    for name in names:
        done = [r for r in results if r["config"] == name and "error" not in r]
        failed = [r for r in results if r["config"] == name and "error" in r]
        errors += [f"- `{name}` seed {r['seed']}: {r['error']}" for r in failed]
        if not done:
            lines.append(f"| {name} | 0 of {len(failed)} | failed | n/a | n/a | n/a | n/a |")
            continue
        finals = [r["rows"][-1]["eval_return_mean"] for r in done]
        threshold = THRESHOLDS.get(env_base_name(done[0]["env_id"]))
        label = threshold_label([steps_to_threshold(r["rows"], threshold) for r in done], threshold)
        walls = [r["wall_time"] for r in done]
        rate = statistics.mean(r["env_steps"] / max(r["wall_time"], 1e-9) for r in done)
        std = statistics.pstdev(finals) if len(finals) > 1 else 0.0
        seeds_text = f"{len(done)}" + (f" of {len(done) + len(failed)}" if failed else "")
        lines.append(f"| {name} | {seeds_text} | {_fmt(statistics.mean(finals))} ± {_fmt(std)} | {label} | "
                     f"{_fmt(statistics.mean(walls), 0)} | {_fmt(rate, 0)} | {done[0]['parameters']:,} |")
    text = "\n".join(lines) + "\n"
    if errors:
        text += "\nFailed runs:\n\n" + "\n".join(errors) + "\n"
    skipped = sum(bool(r.get("skipped")) for r in results)
    earlier = f"; {skipped} of {len(results)} runs had finished before and were read back" if skipped else ""
    return text + f"\nWall-clock of this compare command: {wall_time:.0f} s{earlier}.\n"


def _curve(done: Sequence[dict], x_key: str) -> tuple[list, list, list, list]:
    """x (mean over seeds), and mean, min and max return at each evaluation index all seeds reached."""
    length = min(len(r["rows"]) for r in done)
    xs, means, lows, highs = [], [], [], []
    for i in range(length):
        values = [r["rows"][i]["eval_return_mean"] for r in done]
        xs.append(statistics.mean(r["rows"][i][x_key] for r in done))
        means.append(statistics.mean(values))
        lows.append(min(values))
        highs.append(max(values))
    return xs, means, lows, highs


def plot_curves(out: Path, names: Sequence[str], results: Sequence[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for x_key, filename, xlabel in (("env_step", "curves.png", "env steps"),
                                    ("wall_time", "wallclock.png", "wall-clock (s)")):
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
        for index, name in enumerate(names):
            done = [r for r in results if r["config"] == name and "error" not in r and r["rows"]]
            if not done:
                continue
            xs, means, lows, highs = _curve(done, x_key)
            color = f"C{index % 10}"
            ax.plot(xs, means, color=color, label=f"{name} ({len(done)} seeds)")
            ax.fill_between(xs, lows, highs, color=color, alpha=0.2, linewidth=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("eval return (mean line, min-max band over seeds)")
        ax.grid(alpha=0.3)
        if ax.lines:  # no finished run yet (every pair stopped or failed): an empty plot, no legend
            ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        fig.savefig(out / filename)
        plt.close(fig)
