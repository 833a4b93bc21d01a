"""DeepMind Control Suite benchmark: our DreamerV3, TD-MPC-style planner and SAC at 50k and 100k
env steps beside the published figures, as a markdown table that regenerates from the runs on
disk and the results already committed.

    python benchmarks/dmc.py --out ~/dmc_runs --run                 # run (or resume) every run, then report
    python benchmarks/dmc.py --out ~/dmc_runs --run --tasks walker_walk --methods dreamerv3   # a share of them
    python benchmarks/dmc.py --out ~/dmc_runs                       # report only, from what is on disk

Each (task, method) is one ``worldmodels compare`` of ``configs/dmc_<task>_<method>.py``
over seeds 0..N-1 into ``OUT/<task>_<method>``, one run at a time on one thread (``--workers 2``:
two seeds at once), so two invocations with different ``--tasks``/``--methods`` use the two
cores of a small machine. A seed whose committed rows in ``results.csv`` reach 100k env steps
and that has no run folder under ``--out`` (it finished on another machine) is not run again.
A 100k-step DreamerV3 run takes hours on a CPU: stop any time (Ctrl-C saves a checkpoint)
and run the same command again to resume. The report reads every run's ``progress.csv``,
finished or not, and says how many seeds reached each budget. A seed whose run folder is not
under ``--out`` (it ran on another machine, whose folder is gone) keeps the rows it has in the
committed ``results.csv``; a seed on disk replaces them. A (task, method) with no config is
left out of the table.

Writes into ``--docs`` (default ``docs/benchmarks/dmc``): ``table.md``, ``results.csv``
(every evaluation of every run, with the machine that ran it: the CPU this report runs on
for a run folder under ``--out``, the recorded one for a committed row) and ``<task>.png``
(learning curves with the published figures marked). Wall-clock and env steps/s are given
per machine, as the same run takes different times on different CPUs.

Env steps are control steps (an agent step with action repeat 2 is 2 env steps), the
convention of every source below.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import platform
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

TASKS = ("cartpole_swingup", "walker_walk", "cheetah_run")
METHODS = ("dreamerv3", "tdmpc", "sac")
BUDGETS = (50_000, 100_000)
COLUMNS = ["task", "method", "seed", "env_step", "wall_time", "eval_return_mean", "machine"]
# the machine of a committed row written before results.csv recorded one
UNRECORDED = "AMD EPYC, 2 cores (an earlier session's machine; its kind was not recorded)"

SOURCES = {
    "tdmpc2": "TD-MPC2 repository, results/<method>/<task>.csv, 3 seeds (github.com/nicklashansen/tdmpc2, "
              "commit 88095e7)",
    "dreamerv3": "DreamerV3 repository, scores/dmc_proprio-dreamerv3.json.gz, 5 seeds "
                 "(github.com/danijar/dreamerv3, commit 2411f7d)",
    "curl": "CURL (Srinivas, Laskin, Abbeel, ICML 2020), Table 1, 'State SAC'",
}
# Published mean returns at 100k and 500k env steps: (method, task) -> [(value at 100k,
# value at 500k, source key)]. Read from the sources' own result files and tables.
PUBLISHED: dict[tuple[str, str], list[tuple[float, float, str]]] = {
    ("DreamerV3", "cartpole_swingup"): [(676.7, 788.8, "tdmpc2"), (527.7, 856.0, "dreamerv3")],
    ("DreamerV3", "walker_walk"): [(630.1, 878.4, "tdmpc2"), (475.2, 881.0, "dreamerv3")],
    ("DreamerV3", "cheetah_run"): [(335.7, 493.8, "tdmpc2"), (283.2, 596.3, "dreamerv3")],
    ("TD-MPC2", "cartpole_swingup"): [(839.4, 876.1, "tdmpc2")],
    ("TD-MPC2", "walker_walk"): [(961.9, 978.7, "tdmpc2")],
    ("TD-MPC2", "cheetah_run"): [(519.1, 757.6, "tdmpc2")],
    ("SAC", "cartpole_swingup"): [(835.0, 834.6, "tdmpc2"), (835.0, 848.0, "curl")],
    ("SAC", "walker_walk"): [(708.2, 952.9, "tdmpc2"), (891.0, 948.0, "curl")],
    ("SAC", "cheetah_run"): [(310.1, 594.5, "tdmpc2"), (616.0, 795.0, "curl")],
}


def run_dirs(out: Path, task: str, method: str) -> list[Path]:
    """Every seed's run directory of one (task, method), in seed order."""
    parent = out / f"{task}_{method}" / "runs" / f"dmc_{task}_{method}"
    found = [p for p in parent.glob("seed*") if p.is_dir() and (p / "progress.csv").is_file()]
    return sorted(found, key=lambda p: int(p.name[4:]))


def evaluation(record: dict, machine: str) -> dict:
    """The three numbers the table uses from a progress.csv or results.csv row, and its machine."""
    return {**{key: float(record[key]) for key in ("env_step", "wall_time", "eval_return_mean")},
            "machine": machine}


def read_rows(run_dir: Path, machine: str) -> list[dict]:
    with open(run_dir / "progress.csv") as handle:
        return [evaluation(row, machine) for row in csv.DictReader(handle)
                if row.get("eval_return_mean") not in (None, "")]


def read_committed(path: Path) -> dict[tuple[str, str, int], list[dict]]:
    """The rows of a committed ``results.csv`` by (task, method, seed); {} when there is none.
    A row without a machine (written before the column existed) gets ``UNRECORDED``."""
    if not path.is_file():
        return {}
    found: dict[tuple[str, str, int], list[dict]] = {}
    with open(path) as handle:
        for row in csv.DictReader(handle):
            found.setdefault((row["task"], row["method"], int(row["seed"])), []).append(
                evaluation(row, row.get("machine") or UNRECORDED))
    return {key: sorted(rows, key=lambda r: r["env_step"]) for key, rows in found.items()}


def has_config(task: str, method: str) -> bool:
    return (Path(__file__).resolve().parents[1] / "configs" / f"dmc_{task}_{method}.py").is_file()


def at_budget(rows: Sequence[dict], budget: int) -> dict | None:
    """The evaluation at ``budget`` env steps (the last one at or before it, once the run got there)."""
    if not rows or rows[-1]["env_step"] < budget:
        return None
    before = [row for row in rows if row["env_step"] <= budget]
    return before[-1] if before else None  # None: the first recorded evaluation is past the budget


def median_range(values: Sequence[float]) -> str:
    if not values:
        return "n/a"
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"


def our_row(task: str, method: str, runs: dict[int, list[dict]], seeds: int, labels: dict[str, str]) -> str:
    """One table row; ``labels`` names each machine by a letter (the footnote says which is which)."""
    cells = []
    for budget in BUDGETS:
        reached = [at_budget(rows, budget) for rows in runs.values()]
        values = [row["eval_return_mean"] for row in reached if row is not None]
        cells.append(f"{median_range(values)} [{len(values)} of {seeds}]")
    final = [row for row in (at_budget(rows, BUDGETS[-1]) for rows in runs.values()) if row is not None]
    walls: dict[str, list[float]] = {}
    for row in final:
        walls.setdefault(row["machine"], []).append(row["wall_time"])
    per_machine = sorted(walls.items(), key=lambda item: labels[item[0]])
    wall = ", ".join(f"{statistics.median(w) / 3600:.2f} h ({labels[m]})" for m, w in per_machine) or "n/a"
    rate = ", ".join(f"{BUDGETS[-1] / statistics.median(w):.1f} ({labels[m]})" for m, w in per_machine) or "n/a"
    progress = ", ".join(f"s{seed}: {int(rows[-1]['env_step']):,} ({labels[rows[-1]['machine']]})"
                         for seed, rows in sorted(runs.items()) if rows)
    return (f"| {task.replace('_', '-')} | ours: {method} | {cells[0]} | {cells[1]} | {wall} | {rate} | "
            f"{progress or 'not started'} |")


def published_rows(task: str) -> list[str]:
    lines = []
    for (method, name), entries in PUBLISHED.items():
        if name != task:
            continue
        for at_100k, at_500k, source in entries:
            lines.append(f"| {task.replace('_', '-')} | {method} (published; {at_500k:,.0f} at 500k) | | "
                         f"{at_100k:,.0f} | | | source: {source} |")
    return lines


def machine_name() -> str:
    """This machine as results.csv records it: CPU model, cores, whether it runs bf16 natively."""
    import os

    from wm_core.precision import cpu_has_native_bf16

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    bf16 = "native bf16" if cpu_has_native_bf16() else "no native bf16"
    return f"{cpu}, {os.cpu_count()} cores, {bf16}"


def report(out: Path, docs: Path, tasks: Sequence[str], methods: Sequence[str], seeds: int) -> str:
    docs.mkdir(parents=True, exist_ok=True)
    lines = ["| task | method | return at 50k env steps: median (range) [seeds there] | at 100k | "
             "wall-clock per 100k run | env steps/s | progress (env steps per seed) / source |",
             "|---|---|---|---|---|---|---|"]
    all_rows = []
    committed = read_committed(docs / "results.csv")
    here = machine_name()
    found: dict[tuple[str, str], dict[int, list[dict]]] = {}
    for task in tasks:
        for method in methods:
            runs = {seed: rows for (t, m, seed), rows in committed.items() if (t, m) == (task, method)}
            runs.update({int(d.name[4:]): read_rows(d, here) for d in run_dirs(out, task, method)})
            if runs or has_config(task, method):
                found[task, method] = {seed: rows for seed, rows in sorted(runs.items()) if seed < seeds}
    machines = sorted({row["machine"] for runs in found.values() for rows in runs.values() for row in rows})
    labels = {machine: chr(ord("A") + index) for index, machine in enumerate(machines)}
    for task in tasks:
        curves = {}
        for method in methods:
            if (task, method) not in found:
                continue
            runs = curves[method] = found[task, method]
            lines.append(our_row(task, method, runs, seeds, labels))
            all_rows += [(task, method, seed, row) for seed, rows in runs.items() for row in rows]
        lines += published_rows(task)
        plot_task(docs / f"{task}.png", task, curves)
    with open(docs / "results.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for task, method, seed, row in all_rows:
            writer.writerow([task, method, seed, int(row["env_step"]), row["wall_time"], row["eval_return_mean"],
                             row["machine"]])
    import torch

    notes = ["", "Sources:", ""] + [f"- {key}: {text}" for key, text in SOURCES.items()]
    notes += ["", "Machines (the letters after each seed, wall-clock and env steps/s): "
              + "; ".join(f"{label} = {machine}" for machine, label in labels.items())
              + f". Torch {torch.__version__}, one torch thread per run; table written "
              f"{datetime.date.today().isoformat()} on {here}.", "",
              "Env steps are control steps (action repeat 2: one agent step is 2 env steps). Our returns are "
              "the mean of 5 deterministic evaluation episodes at each budget; a seed still running counts "
              "only at the budgets it has reached. A seed run on an earlier machine keeps its committed rows "
              "and the machine they record."]
    text = "\n".join(lines + notes) + "\n"
    (docs / "table.md").write_text(text)
    return text


def plot_task(path: Path, task: str, curves: dict[str, dict[int, list[dict]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for index, (method, runs) in enumerate(curves.items()):
        color = f"C{index}"
        for seed, rows in sorted(runs.items()):
            ax.plot([r["env_step"] for r in rows], [r["eval_return_mean"] for r in rows], color=color, alpha=0.8,
                    label=f"ours: {method}" if seed == min(runs) else None)
    markers = {"DreamerV3": "o", "TD-MPC2": "*", "SAC": "s"}
    for (method, name), entries in PUBLISHED.items():
        if name == task:
            at_100k = max(entry[0] for entry in entries)
            ax.scatter([100_000], [at_100k], marker=markers[method], color="k", zorder=3,
                       label=f"{method} published at 100k (highest source)")
    ax.set_xlabel("env steps (control steps)")
    ax.set_ylabel("eval return (one line per seed)")
    ax.set_title(f"DeepMind Control {task.replace('_', '-')}")
    ax.set_xlim(0, 105_000)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def seeds_to_run(out: Path, docs: Path, task: str, method: str, seeds: int) -> list[int]:
    """Seeds 0..N-1 of one (task, method) that still need running: every seed with a run folder
    under ``out`` (to resume or skip there), and every seed without one whose committed rows in
    ``docs/results.csv`` stop short of the last budget. A seed that finished on another machine
    is not run again."""
    committed = read_committed(docs / "results.csv")
    on_disk = {int(d.name[4:]) for d in run_dirs(out, task, method)}
    return [seed for seed in range(seeds)
            if seed in on_disk or at_budget(committed.get((task, method, seed), []), BUDGETS[-1]) is None]


def run(out: Path, docs: Path, tasks: Sequence[str], methods: Sequence[str], seeds: int, workers: int) -> None:
    from wm_app.cli import main

    for task in tasks:
        for method in methods:
            if not has_config(task, method):
                print(f"dmc_{task}_{method}: no such config, skipped", file=sys.stderr)
                continue
            todo = seeds_to_run(out, docs, task, method, seeds)
            if not todo:
                print(f"dmc_{task}_{method}: every seed reached {BUDGETS[-1]:,} env steps (committed results), "
                      f"nothing to run", file=sys.stderr)
                continue
            only = [arg for seed in todo for arg in ("--only-seed", str(seed))] if len(todo) < seeds else []
            code = main(["compare", f"dmc_{task}_{method}", "--seeds", str(seeds), *only,
                         "--workers", str(workers), "--threads", "1", "--out", str(out / f"{task}_{method}")])
            if code != 0:
                print(f"dmc_{task}_{method}: compare exited with {code}; the report shows what finished",
                      file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="folder of the runs (keep it outside the checkout)")
    parser.add_argument("--run", action="store_true", help="run or resume the runs before reporting")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1,
                        help="runs at once, one thread each (default 1: leave a core for another invocation)")
    parser.add_argument("--docs", type=Path, default=Path("docs/benchmarks/dmc"), help="where the table goes")
    args = parser.parse_args(argv)
    if args.run:
        run(args.out, args.docs, args.tasks, args.methods, args.seeds, args.workers)
    print(report(args.out, args.docs, TASKS, METHODS, args.seeds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
