"""Offline benchmark: SAC and MBPO with MOPO's penalty trained from fixed Pendulum datasets.

    python benchmarks/offline.py --source runs/pendulum_sac/<stamp>_s0 --out /tmp/offline \\
        [--seeds 3] [--random-steps 10000] [--sac-updates 10000] [--mbpo-updates 1000] \\
        [--penalty 1.0] [--report docs/benchmarks/offline]

Datasets: ``replay``, the replay buffer of a finished run (``--source``, exported with
``worldmodels export``), and ``random``, ``--random-steps`` Pendulum transitions under uniformly
random actions. Rows: ``pendulum_sac`` offline (``--sac-updates`` update steps, one SAC update
each) and ``pendulum_mbpo`` offline with ``world_model.reward_penalty`` (``--mbpo-updates``
update steps, ten SAC updates each and the model refitted every 250). Every (row, dataset,
seed) runs once; a finished one is read back, so the same command resumes. Prints and writes
(``--report``) the final eval return of every seed and the median per row and dataset.
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path

ROWS = {  # row -> (config, extra --set values, budget argument)
    "offline_sac": ("pendulum_sac", [], "sac_updates"),
    "offline_mbpo_mopo": ("pendulum_mbpo", ["world_model.reward_penalty={penalty}"], "mbpo_updates"),
}


def make_datasets(args: argparse.Namespace, out: Path) -> dict[str, Path]:
    import gymnasium as gym
    import numpy as np

    from workers.buffer import random_buffer
    from workers.dataset import KEYS, export_run

    paths = {"replay": out / "replay.npz", "random": out / "random.npz"}
    if not paths["replay"].exists():
        if str(args.source).endswith(".npz"):
            import shutil
            shutil.copyfile(args.source, paths["replay"])
        else:
            export_run(args.source, paths["replay"])
    if not paths["random"].exists():
        buffer = random_buffer(gym.make("Pendulum-v1"), args.random_steps, seed=12345)
        with open(paths["random"], "wb") as handle:
            np.savez(handle, **buffer.transitions(keys=KEYS))
    return paths


def run_one(row: str, dataset: Path, seed: int, args: argparse.Namespace, run_dir: Path) -> dict:
    """One offline run (or its recorded result); returns final and best eval returns."""
    from wm_app.experiment import compose_config
    from workers.pipeline import SerialPipeline

    record = run_dir / "result.json"
    if record.exists():
        return json.loads(record.read_text())
    config, sets, budget = ROWS[row]
    sets = [s.format(penalty=args.penalty) for s in sets]
    sets += [f"offline.dataset={str(dataset)!r}", f"offline.updates={getattr(args, budget)}", "num_threads=1"]
    cfg = compose_config(config, None, sets, seed)
    if run_dir.exists():  # a run that was stopped before it finished starts again
        import shutil
        shutil.rmtree(run_dir)
    start = time.perf_counter()
    result = SerialPipeline(cfg, out_dir=run_dir.parent, show_progress=False, run_dir=run_dir).run()
    if result["failure"] is not None or result["stopped_by"] is not None:
        raise SystemExit(f"{row} on {dataset.name} seed {seed}: {result['failure'] or result['stopped_by']}")
    with open(run_dir / "progress.csv") as handle:
        returns = [float(r["eval_return_mean"]) for r in csv.DictReader(handle)]
    summary = {"row": row, "dataset": dataset.stem, "seed": seed, "updates": result["env_steps"],
               "policy_updates": result["train_iter"], "final": returns[-1], "best": max(returns),
               "wall_s": round(time.perf_counter() - start, 1)}
    record.write_text(json.dumps(summary))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True,
                        help="a finished run directory (its replay buffer is 'replay'), or an .npz dataset")
    parser.add_argument("--out", required=True, help="datasets and runs go here (a rerun resumes)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--random-steps", type=int, default=10_000)
    parser.add_argument("--sac-updates", type=int, default=10_000)
    parser.add_argument("--mbpo-updates", type=int, default=1_000)
    parser.add_argument("--penalty", type=float, default=1.0, help="MOPO's lambda for the mbpo row")
    parser.add_argument("--rows", nargs="*", default=list(ROWS), choices=list(ROWS))
    parser.add_argument("--datasets", nargs="*", default=["replay", "random"], choices=["replay", "random"])
    parser.add_argument("--report", default=None, help="folder for results.csv and summary.md")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    paths = make_datasets(args, out)
    results = []
    for dataset in args.datasets:
        for row in args.rows:
            for seed in range(args.seeds):
                result = run_one(row, paths[dataset], seed, args, out / "runs" / f"{row}_{dataset}" / f"seed{seed}")
                print(f"{row} on {dataset} seed {seed}: final {result['final']:.1f}, best {result['best']:.1f} "
                      f"({result['policy_updates']} policy updates, {result['wall_s']:.0f} s)", flush=True)
                results.append(result)
    lines = ["| row | dataset | seeds | final return, median (per seed) | best eval, median | wall-clock per run (s) |",
             "|---|---|---|---|---|---|"]
    for dataset in args.datasets:
        for row in args.rows:
            group = [r for r in results if r["row"] == row and r["dataset"] == dataset]
            finals = ", ".join(f"{r['final']:.1f}" for r in group)
            lines.append(f"| {row} | {dataset} | {len(group)} | {statistics.median(r['final'] for r in group):.1f} "
                         f"({finals}) | {statistics.median(r['best'] for r in group):.1f} | "
                         f"{statistics.median(r['wall_s'] for r in group):.0f} |")
    table = "\n".join(lines)
    print(table)
    if args.report:
        report = Path(args.report)
        report.mkdir(parents=True, exist_ok=True)
        with open(report / "results.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(results[0]))
            writer.writeheader()
            writer.writerows(results)
        settings = (f"SAC {args.sac_updates} update steps; MBPO {args.mbpo_updates} update steps with "
                    f"reward_penalty {args.penalty}; random dataset {args.random_steps} steps")
        (report / "summary.md").write_text(table + "\n\n" + settings + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
