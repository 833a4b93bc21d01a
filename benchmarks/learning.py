"""Learning-curve benchmark: eval return at fixed env-step checkpoints over several seeds.

    python benchmarks/learning.py pendulum_sac --seeds 3 --env-steps 15000 [--workers 2]

Prints the median and range over seeds at every evaluation step and writes
every evaluation of every seed to a CSV.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path


def run_seed(config: str, seed: int, env_steps: int | None, preset: str | None, sets: list[str],
             out: str) -> dict:
    from wm_app.experiment import compose_config
    from workers.pipeline import serial_pipeline

    cfg = compose_config(config, preset, sets, seed, env_steps)
    result = serial_pipeline(cfg, out_dir=out, show_progress=False)
    with open(Path(result["run_dir"]) / "progress.csv") as handle:
        result["rows"] = list(csv.DictReader(handle))
    result["seed"] = seed
    return result


def summarise(results: list[dict]) -> list[dict]:
    """Median, min and max of eval_return_mean over seeds at each env step all seeds reached."""
    by_step: dict[int, dict[int, float]] = {}
    for result in results:
        for row in result["rows"]:
            by_step.setdefault(int(row["env_step"]), {})[result["seed"]] = float(row["eval_return_mean"])
    table = []
    for step in sorted(by_step):
        values = by_step[step]
        if len(values) < len(results):
            continue
        returns = [values[r["seed"]] for r in results]
        table.append({"env_step": step, "median": statistics.median(returns), "min": min(returns),
                      "max": max(returns), "per_seed": returns})
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    parser.add_argument("--env-steps", type=int, default=None)
    parser.add_argument("--preset", default=None)
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--workers", type=int, default=1, help="seeds run in parallel (one torch thread each)")
    parser.add_argument("--out", default="benchmarks/results/runs")
    parser.add_argument("--csv", default=None, help="default: benchmarks/results/learning_<config>.csv")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    jobs = [(args.config, seed, args.env_steps, args.preset, args.sets, args.out) for seed in range(args.seeds)]
    if args.workers > 1:
        with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
            results = list(pool.map(run_seed, *zip(*jobs, strict=True)))
    else:
        results = [run_seed(*job) for job in jobs]

    name = Path(args.config).stem
    print(f"\n{name}: eval return (mean of each seed's evaluation episodes) over seeds {list(range(args.seeds))}")
    print(f"{'env_step':>9} {'median':>9} {'min':>9} {'max':>9}   per seed")
    table = summarise(results)
    for row in table:
        per_seed = " ".join(f"{v:8.1f}" for v in row["per_seed"])
        print(f"{row['env_step']:>9} {row['median']:>9.1f} {row['min']:>9.1f} {row['max']:>9.1f}   {per_seed}")
    for result in results:
        print(f"seed {result['seed']}: {result['env_steps']} env steps in {result['wall_time']:.0f} s "
              f"({result['env_steps_per_s']:.0f} env steps/s), final {result['eval_return_mean']:.1f}")
    print(f"total wall-clock {time.perf_counter() - start:.0f} s")

    csv_path = Path(args.csv or f"benchmarks/results/learning_{name}.csv")
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    with open(csv_path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["config", "seed", "env_step", "wall_time", "eval_return_mean", "eval_return_std"])
        for result in results:
            for row in result["rows"]:
                writer.writerow([name, result["seed"], row["env_step"], row["wall_time"],
                                 row["eval_return_mean"], row["eval_return_std"]])
    print(f"wrote {csv_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
