"""The outputs of ``worldmodels compare``: ``results.csv``, ``summary.md`` and plots, from the runs'
results or from a ``results.csv`` alone (``worldmodels compare --report``).

A result is a dict per (row, seed): ``config`` (the row's name), ``method``, ``env_id``,
``seed``, ``rows`` (progress rows: env_step, wall_time, eval_return_mean, eval_return_std),
``wall_time``, ``env_steps``, optional ``parameters``, ``variant``; or ``error``.
"""
from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from wm_app import stats
from wm_core.config import ConfigError
from wm_envs.make import env_base_name

# Eval return that counts as solving a task, by env name (without version).
THRESHOLDS = {"Pendulum": -200.0, "InvertedPendulum": 950.0, "InvertedDoublePendulum": 9000.0,
              "CartPole": 450.0, "Hopper": 3000.0, "Walker2d": 3000.0, "HalfCheetah": 5000.0, "Ant": 3000.0,
              "MountainCarContinuous": 90.0}  # gymnasium's reward_threshold: the flag reached, at little cost
DMC_PREFIX = "dm_control/"
DMC_SCALE = (0.0, 1000.0)  # DMC returns lie in [0, 1000]
CSV_COLUMNS = ["config", "seed", "env_step", "wall_time", "eval_return_mean", "eval_return_std", "env_id",
               "method", "variant", "parameters"]
CURVE_RESAMPLES = 2_000  # per evaluation point of the curve bands


# -- normalisation ------------------------------------------------------------
def parse_normalize(items: Sequence[str]) -> dict[str, tuple[float, float]]:
    """``["Pendulum-v1=-1600,0"]`` -> ``{"Pendulum-v1": (-1600.0, 0.0)}`` (score = (return - low) / (high - low)).

    Raises:
        ConfigError: not ``TASK=LOW,HIGH`` with two numbers, LOW < HIGH.
    """
    scales = {}
    for item in items:
        task, sep, text = item.partition("=")
        parts = text.split(",")
        try:
            low, high = (float(p) for p in parts) if len(parts) == 2 else (None, None)
        except ValueError:
            low = high = None
        if not sep or not task.strip() or low is None or not low < high:
            raise ConfigError(f"--normalize expects TASK=LOW,HIGH with LOW < HIGH (e.g. Pendulum-v1=-1600,0), "
                              f"got {item!r}")
        scales[task.strip()] = (low, high)
    return scales


def task_scales(tasks: Sequence[str], given: Mapping[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    """The (low, high) of each task that has one: given by env id or by its name without version;
    DMC tasks default to [0, 1000]. Tasks with none are left out (no aggregate across tasks)."""
    scales = {}
    for task in dict.fromkeys(tasks):
        scale = given.get(task) or given.get(env_base_name(task))
        if scale is None and task.startswith(DMC_PREFIX):
            scale = DMC_SCALE
        if scale is not None:
            scales[task] = scale
    return scales


def _normalised(value: float, scale: tuple[float, float]) -> float:
    low, high = scale
    return (value - low) / (high - low)


# -- reading and writing results.csv ------------------------------------------
def write_results_csv(path: Path, results: Sequence[dict]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for result in results:
            for row in result.get("rows", []):
                writer.writerow([result["config"], result["seed"], int(row["env_step"]), row["wall_time"],
                                 row["eval_return_mean"], row["eval_return_std"], result.get("env_id", ""),
                                 result.get("method", result["config"]), result.get("variant", ""),
                                 result.get("parameters", "")])


def read_results_csv(path: Path) -> tuple[list[str], list[dict]]:
    """Row names (in file order) and one result per (row, seed) from a ``results.csv``. A file
    written before the env_id column existed names shipped configs: their env id is resolved.

    Raises:
        ConfigError: no such file, a missing column, or an env id that cannot be found.
    """
    if path.is_dir():
        path = path / "results.csv"
    if not path.is_file():
        raise ConfigError(f"--report needs a results.csv (or a folder holding one); {str(path)!r} is not a file")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        needed = set(CSV_COLUMNS[:6]) - set(reader.fieldnames or [])
        if needed:
            raise ConfigError(f"{path} lacks the column(s) {', '.join(sorted(needed))}")
        records = list(reader)
    results: dict[tuple[str, int], dict] = {}
    env_ids: dict[str, str] = {}
    for record in records:
        key = (record["config"], int(record["seed"]))
        if key not in results:
            env_id = record.get("env_id") or env_ids.get(key[0]) or _shipped_env_id(key[0], path)
            env_ids[key[0]] = env_id
            results[key] = {"config": key[0], "seed": key[1], "rows": [], "env_id": env_id,
                            "method": record.get("method") or key[0], "variant": record.get("variant", "")}
        result = results[key]
        if record.get("parameters"):
            result["parameters"] = int(record["parameters"])
        result["rows"].append({k: float(record[k]) for k in CSV_COLUMNS[2:6]})
    for result in results.values():
        result["rows"].sort(key=lambda row: row["env_step"])
        result["env_steps"] = int(result["rows"][-1]["env_step"])
        result["wall_time"] = result["rows"][-1]["wall_time"]
    names = list(dict.fromkeys(name for name, _ in results))
    return names, list(results.values())


def _shipped_env_id(name: str, path: Path) -> str:
    from wm_app.experiment import compose_config

    try:
        return compose_config(name).env.id
    except ConfigError:
        raise ConfigError(f"{path} has no env_id column and '{name}' is not a shipped config whose env "
                          "could be looked up") from None


# -- per-row statistics ---------------------------------------------------------
def steps_to_threshold(rows: Sequence[dict], threshold: float | None) -> float | None:
    """The first evaluated env step whose mean return reaches ``threshold``."""
    if threshold is None:
        return None
    for row in rows:
        if row["eval_return_mean"] >= threshold:
            return row["env_step"]
    return None


def final_return(result: dict) -> float:
    return result["rows"][-1]["eval_return_mean"]


def learning_auc(result: dict) -> float:
    rows = result["rows"]
    return stats.area_under_curve([r["env_step"] for r in rows], [r["eval_return_mean"] for r in rows])


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.{digits}f}"


def estimate_text(estimate: stats.Estimate, digits: int = 1) -> str:
    """``-121.5 (-140.2 to -100.3)``; the interval is left out when there is none."""
    if estimate.low is None:
        return _fmt(estimate.value, digits)
    return f"{_fmt(estimate.value, digits)} ({_fmt(estimate.low, digits)} to {_fmt(estimate.high, digits)})"


def threshold_text(reached: Sequence[float | None], threshold: float | None, budget: float, seed: int) -> str:
    """Median env steps to the threshold over seeds with its interval; a seed that did not reach it
    within its budget counts as later than any that did."""
    if threshold is None:
        return "n/a (no threshold)"
    estimate = stats.threshold_steps_estimate(reached, budget, seed=seed)

    def steps(value: float) -> str:
        return f"> {budget:,.0f}" if value > budget else _fmt(value, 0)

    missing = sum(step is None for step in reached)
    text = "not reached" if estimate.value > budget else steps(estimate.value)
    if estimate.low is not None:
        text += f" ({steps(estimate.low)} to {steps(estimate.high)})"
    late = f"; {missing} of {len(reached)} not within the budget" if missing else ""
    return f"{text} (≥ {threshold:g}{late})"


def _done(results: Sequence[dict], name: str) -> list[dict]:
    return [r for r in results if r["config"] == name and "error" not in r and r.get("rows")]


def row_line(name: str, results: Sequence[dict], seed: int, with_parameters: bool) -> str:
    done = _done(results, name)
    failed = [r for r in results if r["config"] == name and "error" in r]
    columns = 9 + with_parameters
    if not done:
        return f"| {name} | 0 of {len(failed)} | failed |" + " n/a |" * (columns - 2)
    finals, aucs = [final_return(r) for r in done], [learning_auc(r) for r in done]
    cells = [stats.stratified_bootstrap([values], statistic, seed=stats.stable_seed(seed, name, metric))
             for metric, values in (("final", finals), ("auc", aucs))
             for statistic in (stats.aggregate_iqm, stats.aggregate_mean)]
    threshold = THRESHOLDS.get(env_base_name(done[0]["env_id"]))
    budget = max(r["rows"][-1]["env_step"] for r in done)
    label = threshold_text([steps_to_threshold(r["rows"], threshold) for r in done], threshold, budget,
                           stats.stable_seed(seed, name, "threshold"))
    wall = float(np.mean([r["wall_time"] for r in done]))
    rate = float(np.mean([r["env_steps"] / max(r["wall_time"], 1e-9) for r in done]))
    seeds_text = f"{len(done)}" + (f" of {len(done) + len(failed)}" if failed else "")
    line = (f"| {name} | {seeds_text} | " + " | ".join(estimate_text(c) for c in cells)
            + f" | {label} | {_fmt(wall, 0)} | {_fmt(rate, 0)} |")
    if with_parameters:
        parameters = done[0].get("parameters")
        line += f" {parameters:,} |" if parameters is not None else " n/a |"
    return line


def few_seeds_note(seed_counts: Sequence[int]) -> str:
    """What an interval over fewer than ``stats.FEW_SEEDS`` seeds can and cannot say ('' for enough)."""
    fewest = min(seed_counts, default=0)
    if fewest >= stats.FEW_SEEDS:
        return ""
    if fewest < 2:
        return (f"**{fewest} seed{'s' if fewest != 1 else ''} in a row: no interval.** A bootstrap needs at "
                f"least 2 runs to resample, so one run gives a number with no measure of its uncertainty; "
                f"run --seeds {stats.FEW_SEEDS} or more (10 for a claim that one row beats another).\n")
    return (f"**Fewer than {stats.FEW_SEEDS} seeds ({fewest} in the smallest row): the intervals are wide and "
            f"still too narrow.** Each is a bootstrap over {fewest} returns, so it spans most of the range "
            f"between the worst and the best seed, and it cannot show how seeds that were not run would do "
            f"(resampling {fewest} values repeats them, which understates the spread)"
            + ("; below 4 seeds the IQM trims nothing and equals the mean" if fewest < 4 else "")
            + f". Treat differences as indicative; run --seeds {stats.FEW_SEEDS} or more (10 for a claim "
            "that one row beats another).\n")


# -- pairs and tasks -----------------------------------------------------------
def improvement_lines(names: Sequence[str], results: Sequence[dict], seed: int) -> list[str]:
    """P(row A > row B) of the final return for each pair of rows on the same task."""
    lines = []
    for a, b in itertools.combinations(names, 2):
        done_a, done_b = _done(results, a), _done(results, b)
        if not done_a or not done_b or done_a[0]["env_id"] != done_b[0]["env_id"]:
            continue
        estimate = stats.probability_of_improvement([[final_return(r) for r in done_a]],
                                                    [[final_return(r) for r in done_b]],
                                                    seed=stats.stable_seed(seed, a, b, "improvement"))
        lines.append(f"| {a} | {b} | {estimate_text(estimate, 2)} |")
    return lines


def method_scores(results: Sequence[dict], scales: Mapping[str, tuple[float, float]],
                  metric=final_return) -> dict[str, dict[str, list[float]]]:
    """Normalised scores by method and task: ``{method: {task: [score per seed]}}``."""
    scores: dict[str, dict[str, list[float]]] = {}
    for result in results:
        if "error" in result or not result.get("rows"):
            continue
        per_task = scores.setdefault(result.get("method", result["config"]), {})
        per_task.setdefault(result["env_id"], []).append(_normalised(metric(result), scales[result["env_id"]]))
    return scores


def aggregate_section(results: Sequence[dict], scales: Mapping[str, tuple[float, float]], seed: int) -> str:
    """IQM and mean of normalised final return and AUC per method across its tasks (stratified
    by task), and P(A > B) between methods run on the same tasks."""
    finals, aucs = method_scores(results, scales), method_scores(results, scales, learning_auc)
    lines = ["| method | tasks | runs | final score IQM (95% CI) | final score mean (95% CI) | "
             "AUC score IQM (95% CI) | AUC score mean (95% CI) |", "|---|---|---|---|---|---|---|"]
    for method, per_task in finals.items():
        tasks = sorted(per_task)
        cells = [stats.stratified_bootstrap([table[method][t] for t in tasks], statistic,
                                            seed=stats.stable_seed(seed, method, metric, "tasks"))
                 for metric, table in (("final", finals), ("auc", aucs))
                 for statistic in (stats.aggregate_iqm, stats.aggregate_mean)]
        lines.append(f"| {method} | {len(tasks)} | {sum(len(v) for v in per_task.values())} | "
                     + " | ".join(estimate_text(c, 3) for c in cells) + " |")
    pairs = []
    for a, b in itertools.combinations(finals, 2):
        if sorted(finals[a]) != sorted(finals[b]):
            continue
        tasks = sorted(finals[a])
        estimate = stats.probability_of_improvement([finals[a][t] for t in tasks], [finals[b][t] for t in tasks],
                                                    seed=stats.stable_seed(seed, a, b, "tasks"))
        pairs.append(f"| {a} | {b} | {len(tasks)} | {estimate_text(estimate, 2)} |")
    scale_text = "; ".join(f"{task}: ({low:g}, {high:g})" for task, (low, high) in scales.items())
    text = ("\nAcross tasks, on normalised scores ((return - low) / (high - low); " + scale_text
            + "), intervals from a bootstrap stratified by task:\n\n" + "\n".join(lines) + "\n")
    if pairs:
        text += ("\nProbability of improvement across tasks (final score):\n\n| A | B | tasks | P(A > B) (95% CI) |\n"
                 "|---|---|---|---|\n" + "\n".join(pairs) + "\n")
    return text


# -- summary ------------------------------------------------------------------
def summary_markdown(names: Sequence[str], results: Sequence[dict], footer: str,
                     scales: Mapping[str, tuple[float, float]] | None = None, seed: int = 0) -> str:
    """The table per row, the notes on the statistics, P(A > B) per pair, the aggregate across
    tasks when there are several, failed runs, and ``footer``."""
    with_parameters = any(r.get("parameters") is not None for r in results if "error" not in r)
    header = ("| row | seeds | final return IQM (95% CI) | final return mean (95% CI) | AUC IQM (95% CI) | "
              "AUC mean (95% CI) | env steps to threshold, median (95% CI) | wall-clock per run (s) | "
              "env steps/s |" + (" parameters |" if with_parameters else ""))
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    lines += [row_line(name, results, seed, with_parameters) for name in names]
    text = "\n".join(lines) + "\n\n"
    text += ("Final return: the last evaluation's mean return. AUC: the area under the eval-return curve "
             "divided by its env-step span (the mean return over training). IQM: the mean of the middle half "
             "of the seeds. Intervals: 95% percentile bootstrap over seeds "
             f"({stats.N_RESAMPLES:,} resamples, seeded: the same results give the same table).\n")
    note = few_seeds_note([len(_done(results, name)) for name in names if _done(results, name)])
    if note:
        text += "\n" + note
    improvements = improvement_lines(names, results, seed)
    if improvements:
        text += ("\nProbability of improvement, P(A > B): the chance that a seed of A ends with a higher final "
                 "return than a seed of B (ties count half), with its 95% bootstrap interval:\n\n"
                 "| A | B | P(A > B) (95% CI) |\n|---|---|---|\n" + "\n".join(improvements) + "\n")
    tasks = list(dict.fromkeys(r["env_id"] for r in results if "error" not in r and r.get("rows")))
    missing = [task for task in tasks if task not in (scales or {})]
    if len(tasks) > 1 and not missing:
        text += aggregate_section(results, scales, seed)
    elif len(tasks) > 1:
        text += (f"\nSeveral tasks, but no score range for {', '.join(missing)}: no aggregate across tasks or "
                 f"performance profile (give --normalize TASK=LOW,HIGH, e.g. --normalize {missing[0]}=LOW,HIGH; "
                 "DMC tasks default to 0,1000).\n")
    errors = [f"- `{r['config']}` seed {r['seed']}: {r['error']}" for r in results if "error" in r]
    if errors:
        text += "\nFailed runs:\n\n" + "\n".join(errors) + "\n"
    return text + f"\n{footer}\n"


def write_report(out: Path, names: Sequence[str], results: Sequence[dict], footer: str,
                 scales: Mapping[str, tuple[float, float]] | None = None, *, write_csv: bool = True) -> list[Path]:
    """``results.csv`` (unless re-rendering from it), ``summary.md``, ``curves.png``,
    ``wallclock.png`` and, with several tasks, ``profile.png`` in ``out``; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if write_csv:
        write_results_csv(out / "results.csv", results)
        written.append(out / "results.csv")
    (out / "summary.md").write_text(summary_markdown(names, results, footer, scales))
    written.append(out / "summary.md")
    written += plot_curves(out, names, results)
    tasks = {r["env_id"] for r in results if "error" not in r and r.get("rows")}
    if len(tasks) > 1 and tasks <= set(scales or {}):
        written.append(plot_profiles(out, results, scales))
    return written


# -- plots --------------------------------------------------------------------
def curve_band(done: Sequence[dict], x_key: str, seed: int) -> tuple[list, list, list | None, list | None]:
    """x (mean over seeds), the mean return and its 95% bootstrap interval at each evaluation
    index every seed reached (no band for one seed)."""
    length = min(len(r["rows"]) for r in done)
    xs, means, lows, highs = [], [], [], []
    for i in range(length):
        values = [r["rows"][i]["eval_return_mean"] for r in done]
        xs.append(float(np.mean([r["rows"][i][x_key] for r in done])))
        estimate = stats.stratified_bootstrap([values], stats.aggregate_mean, seed=stats.stable_seed(seed, str(i)),
                                              n_resamples=CURVE_RESAMPLES)
        means.append(estimate.value)
        lows.append(estimate.low)
        highs.append(estimate.high)
    if lows and lows[0] is None:
        return xs, means, None, None
    return xs, means, lows, highs


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(out: Path, names: Sequence[str], results: Sequence[dict], seed: int = 0) -> list[Path]:
    plt = _pyplot()
    paths = []
    for x_key, filename, xlabel in (("env_step", "curves.png", "env steps"),
                                    ("wall_time", "wallclock.png", "wall-clock (s)")):
        fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
        for index, name in enumerate(names):
            done = _done(results, name)
            if not done:
                continue
            xs, means, lows, highs = curve_band(done, x_key, stats.stable_seed(seed, name, x_key))
            color = f"C{index % 10}"
            ax.plot(xs, means, color=color, label=f"{name} ({len(done)} seeds)")
            if lows is not None:
                ax.fill_between(xs, lows, highs, color=color, alpha=0.2, linewidth=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("eval return (mean over seeds, 95% bootstrap CI)")
        ax.grid(alpha=0.3)
        if ax.lines:  # no finished run yet (every pair stopped or failed): an empty plot, no legend
            ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        fig.savefig(out / filename)
        plt.close(fig)
        paths.append(out / filename)
    return paths


def plot_profiles(out: Path, results: Sequence[dict], scales: Mapping[str, tuple[float, float]],
                  seed: int = 0) -> Path:
    """Performance profiles: the fraction of runs (tasks weighted equally) whose normalised final
    score exceeds each threshold, per method, with 95% bootstrap bands."""
    plt = _pyplot()
    scores = method_scores(results, scales)
    everything = [s for per_task in scores.values() for values in per_task.values() for s in values]
    taus = np.linspace(min(everything + [0.0]), max(everything + [1.0]), 101)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for index, (method, per_task) in enumerate(scores.items()):
        profile, low, high = stats.performance_profile([per_task[t] for t in sorted(per_task)], taus,
                                                       seed=stats.stable_seed(seed, method, "profile"))
        color = f"C{index % 10}"
        ax.plot(taus, profile, color=color, label=f"{method} ({len(per_task)} tasks)")
        if low is not None:
            ax.fill_between(taus, low, high, color=color, alpha=0.2, linewidth=0)
    ax.set_xlabel("normalised final score τ")
    ax.set_ylabel("fraction of runs with score > τ")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "profile.png")
    plt.close(fig)
    return out / "profile.png"
