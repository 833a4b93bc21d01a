"""benchmarks/dmc.py: the table, CSV and plots regenerate from whatever runs are on disk."""
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import dmc  # noqa: E402


def write_progress(run_dir: Path, rows):
    run_dir.mkdir(parents=True)
    with open(run_dir / "progress.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["env_step", "wall_time", "train_iter", "eval_return_mean", "eval_return_std"])
        for step, wall, value in rows:
            writer.writerow([step, wall, 0, value, 0.0])


HERE = "Test CPU, 2 cores, no native bf16"


def test_report_takes_medians_at_each_budget_and_counts_seeds_there(tmp_path, monkeypatch):
    monkeypatch.setattr(dmc, "machine_name", lambda: HERE)
    runs = tmp_path / "runs" / "cartpole_swingup_dreamerv3" / "runs" / "dmc_cartpole_swingup_dreamerv3"
    write_progress(runs / "seed0", [(0, 1, 10), (50_000, 1800, 200), (100_000, 3600, 500)])
    write_progress(runs / "seed1", [(0, 1, 10), (45_000, 3000, 999), (50_000, 3600, 300), (100_000, 7200, 700)])
    write_progress(runs / "seed2", [(0, 1, 10), (50_000, 2000, 400), (60_000, 2500, 450)])
    write_progress(runs / "seed3", [(0, 1, 10), (100_000, 10, 1000)])  # beyond --seeds 3: not counted
    docs = tmp_path / "docs"
    text = dmc.report(tmp_path / "runs", docs, dmc.TASKS, dmc.METHODS, seeds=3)
    row = next(line for line in text.splitlines() if line.startswith("| cartpole-swingup | ours: dreamerv3"))
    assert "| 300 (200–400) [3 of 3] | 600 (500–700) [2 of 3] | 1.50 h (A) | 18.5 (A) |" in row
    assert "s2: 60,000 (A)" in row
    assert f"Machines (the letters after each seed, wall-clock and env steps/s): A = {HERE}." in text
    assert "| walker-walk | ours: sac | n/a [0 of 3] | n/a [0 of 3] | n/a | n/a | not started |" in text
    assert "| cartpole-swingup | DreamerV3 (published; 789 at 500k) | | 677 |" in text
    with open(docs / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 + 4 + 3 and {row["machine"] for row in rows} == {HERE}
    assert (docs / "table.md").read_text() == text
    assert all((docs / f"{task}.png").stat().st_size > 0 for task in dmc.TASKS)


def test_a_seed_whose_run_folder_is_gone_keeps_its_committed_rows_and_one_on_disk_replaces_them(tmp_path,
                                                                                               monkeypatch):
    monkeypatch.setattr(dmc, "machine_name", lambda: HERE)
    docs = tmp_path / "docs"
    docs.mkdir()
    with open(docs / "results.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        # rows without a machine (written before results.csv had the column), then one with its machine
        writer.writerow(["task", "method", "seed", "env_step", "wall_time", "eval_return_mean"])
        writer.writerow(["cartpole_swingup", "tdmpc", 0, 50_000, 3000, 600])
        writer.writerow(["cartpole_swingup", "tdmpc", 0, 100_000, 6000, 850])
        writer.writerow(["cartpole_swingup", "tdmpc", 1, 50_000, 3000, 1])  # replaced by the run on disk
    old_rows = (docs / "results.csv").read_text().splitlines()
    (docs / "results.csv").write_text("\n".join([",".join(dmc.COLUMNS)] + [row + "," for row in old_rows[1:]]
                                                + ["cartpole_swingup,tdmpc,2,100000,9000,700,\"Other CPU, 2 cores\""])
                                      + "\n")
    runs = tmp_path / "runs" / "cartpole_swingup_tdmpc" / "runs" / "dmc_cartpole_swingup_tdmpc"
    write_progress(runs / "seed1", [(0, 1, 10), (50_000, 2000, 400), (100_000, 4000, 800)])
    text = dmc.report(tmp_path / "runs", docs, dmc.TASKS, dmc.METHODS, seeds=3)
    row = next(line for line in text.splitlines() if line.startswith("| cartpole-swingup | ours: tdmpc"))
    # machines by name: A the unrecorded earlier one, B "Other CPU", C this one
    assert "| 500 (400–600) [2 of 3] | 800 (700–850) [3 of 3] | 1.67 h (A), 2.50 h (B), 1.11 h (C) | " \
           "16.7 (A), 11.1 (B), 25.0 (C) | s0: 100,000 (A), s1: 100,000 (C), s2: 100,000 (B) |" in row
    assert f"A = {dmc.UNRECORDED}; B = Other CPU, 2 cores; C = {HERE}." in text
    assert "| cheetah-run | ours: tdmpc" not in text  # no dmc_cheetah_run_tdmpc config
    with open(docs / "results.csv") as handle:
        kept = [row for row in csv.DictReader(handle) if row["method"] == "tdmpc"]
    assert [(r["seed"], r["env_step"], r["eval_return_mean"], r["machine"]) for r in kept] == [
        ("0", "50000", "600.0", dmc.UNRECORDED), ("0", "100000", "850.0", dmc.UNRECORDED), ("1", "0", "10.0", HERE),
        ("1", "50000", "400.0", HERE), ("1", "100000", "800.0", HERE), ("2", "100000", "700.0", "Other CPU, 2 cores")]


def test_run_skips_the_seeds_that_finished_elsewhere_and_resumes_the_rest(tmp_path, monkeypatch):
    docs = tmp_path / "docs"
    docs.mkdir()
    with open(docs / "results.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["task", "method", "seed", "env_step", "wall_time", "eval_return_mean"])
        writer.writerow(["cartpole_swingup", "tdmpc", 0, 100_000, 6000, 850])  # finished on another machine
        writer.writerow(["cartpole_swingup", "tdmpc", 1, 100_000, 6000, 800])  # finished, and its folder is here
        writer.writerow(["cartpole_swingup", "tdmpc", 2, 30_000, 2000, 500])   # stopped short elsewhere
    runs = tmp_path / "runs" / "cartpole_swingup_tdmpc" / "runs" / "dmc_cartpole_swingup_tdmpc"
    write_progress(runs / "seed1", [(0, 1, 10), (100_000, 4000, 800)])
    assert dmc.seeds_to_run(tmp_path / "runs", docs, "cartpole_swingup", "tdmpc", 3) == [1, 2]
    assert dmc.seeds_to_run(tmp_path / "runs", docs, "walker_walk", "tdmpc", 2) == [0, 1]
    calls = []
    import wm_app.cli

    monkeypatch.setattr(wm_app.cli, "main", lambda argv: calls.append(argv) or 0)
    dmc.run(tmp_path / "runs", docs, ["cartpole_swingup"], ["tdmpc"], 3, workers=2)
    assert calls == [["compare", "dmc_cartpole_swingup_tdmpc", "--seeds", "3", "--only-seed", "1", "--only-seed",
                      "2", "--workers", "2", "--threads", "1", "--out",
                      str(tmp_path / "runs" / "cartpole_swingup_tdmpc")]]
    calls.clear()
    dmc.run(tmp_path / "runs", docs, ["cartpole_swingup"], ["tdmpc"], 2, workers=1)
    assert calls == [["compare", "dmc_cartpole_swingup_tdmpc", "--seeds", "2", "--only-seed", "1", "--workers",
                      "1", "--threads", "1", "--out", str(tmp_path / "runs" / "cartpole_swingup_tdmpc")]]
