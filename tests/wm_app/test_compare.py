import csv
import json
import os
import re
import sys
import textwrap
from pathlib import Path

import pytest

from wm_app.cli import main
from wm_app.compare import compare, report, steps_to_threshold
from wm_app.compare_report import few_seeds_note, threshold_text, write_report
from wm_app.experiment import compose_config
from wm_core.config import ConfigError
from workers.logger import read_progress
from workers.pipeline import SerialPipeline

BAD_CONFIG = textwrap.dedent("""
    import gymnasium as gym

    from tests.fake_envs import BadEnv

    if "WorldModelsCompareBadEnv-v0" not in gym.registry:
        gym.register("WorldModelsCompareBadEnv-v0", entry_point=BadEnv, kwargs=dict(mode="raise", bad_step=30))

    config = dict(exp_name="bad_env", env_steps=200, env=dict(id="WorldModelsCompareBadEnv-v0"),
                  collector=dict(warmup_steps=50), policy=dict(type="sac", hidden_sizes=[16]),
                  learner=dict(batch_size=16), evaluator=dict(eval_freq=100, n_episodes=1))
    presets = dict(debug=dict())
""")


def test_compare_writes_every_output_and_resumes(tmp_path, capsys):
    out = tmp_path / "cmp"
    code = main(["compare", "pendulum_sac", "inverted_pendulum_sac", "--seeds", "2", "--preset", "debug",
                 "--env-steps", "300", "--out", str(out), "--workers", "2"])
    assert code == 0
    assert {p.name for p in out.iterdir()} >= {"summary.md", "results.csv", "curves.png", "wallclock.png"}
    summary = (out / "summary.md").read_text()
    assert "| pendulum_sac | 2 |" in summary and "| inverted_pendulum_sac | 2 |" in summary
    assert "no score range for Pendulum-v1, InvertedPendulum-v5: no aggregate across tasks" in summary
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {(r["config"], r["seed"]) for r in rows} == {(c, s) for c in ("pendulum_sac", "inverted_pendulum_sac")
                                                        for s in ("0", "1")}
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    mtime = (out / "runs/pendulum_sac/seed0/checkpoint.pt").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["compare", "pendulum_sac", "inverted_pendulum_sac", "--seeds", "2", "--preset", "debug",
                 "--env-steps", "300", "--out", str(out)]) == 0
    assert capsys.readouterr().out.count("finished earlier, skipped") == 4
    assert (out / "runs/pendulum_sac/seed0/checkpoint.pt").stat().st_mtime_ns == mtime
    assert "4 of 4 runs had finished before and were read back" in (out / "summary.md").read_text()
    assert (out / "summary.md").read_text().split("\n")[2] == summary.split("\n")[2]  # same figures


@pytest.mark.parametrize("workers", [1, 2])
def test_evaluations_are_reported_while_the_pairs_run(workers, tmp_path):
    events = []
    kwargs = dict(preset="debug", env_steps=400, sets=["evaluator.eval_freq=100"], workers=workers,
                  out=tmp_path / "cmp", progress=lambda result: events.append(("result", result["seed"], None)),
                  evaluation=lambda row: events.append(("eval", row["seed"], row["env_step"])),
                  evaluation_interval=0.01)
    compare(["pendulum_sac"], 2, **kwargs)
    for seed in (0, 1):
        mine = [(kind, step) for kind, s, step in events if s == seed]
        steps = [step for kind, step in mine if kind == "eval"]
        assert mine[-1] == ("result", None)  # no evaluation of a pair after its result
        assert steps and steps == sorted(set(steps))  # each reported once, in order
        written = [row["env_step"] for row in read_progress(tmp_path / f"cmp/runs/pendulum_sac/seed{seed}")]
        assert set(steps) <= set(written) and len(written) == 4  # 0, then 200 to 400 (100 is in the warm-up)
    events.clear()
    compare(["pendulum_sac"], 2, **kwargs)  # finished pairs: their evaluations are not reported again
    assert [kind for kind, _, _ in events] == ["result", "result"]


def test_the_command_line_prints_evaluations_as_they_come(tmp_path, capsys, monkeypatch):
    import wm_app.compare as compare_module

    real = compare_module.compare
    monkeypatch.setattr(compare_module, "compare", lambda *a, **k: real(*a, **{**k, "evaluation_interval": 0.01}))
    assert main(["compare", "pendulum_sac", "--seeds", "1", "--preset", "debug", "--env-steps", "300",
                 "--set", "evaluator.eval_freq=100", "--out", str(tmp_path / "cmp"), "--workers", "1"]) == 0
    out = capsys.readouterr().out
    lines = re.findall(r"^    pendulum_sac seed 0: eval return -?[\d.]+ at ([\d,]+) env steps, \d+ s$", out, re.M)
    assert lines and out.index("    pendulum_sac seed 0: eval") < out.index("[1/1] pendulum_sac seed 0:")


def test_interrupted_pair_resumes_from_its_checkpoint(tmp_path):
    out = tmp_path / "cmp"
    run_dir = out / "runs/pendulum_sac/seed0"
    cfg = compose_config("pendulum_sac", "debug", ["num_threads=1"], 0, 150)
    SerialPipeline(cfg, show_progress=False, run_dir=run_dir).run()  # stopped at 150 of 300
    results = []
    compare(["pendulum_sac"], 1, preset="debug", env_steps=300, out=out, workers=1, progress=results.append)
    assert not results[0].get("skipped") and results[0]["env_steps"] == 300
    reference = []
    compare(["pendulum_sac"], 1, preset="debug", env_steps=300, out=tmp_path / "ref", workers=1,
            progress=reference.append)
    strip = [{k: v for k, v in row.items() if k != "wall_time"} for row in results[0]["rows"]]
    assert strip == [{k: v for k, v in row.items() if k != "wall_time"} for row in reference[0]["rows"]]


def test_pair_killed_after_its_last_checkpoint_is_not_rerun(tmp_path):
    out = tmp_path / "cmp"
    compare(["pendulum_sac"], 1, preset="debug", env_steps=300, out=out, workers=1)
    (out / "runs/pendulum_sac/seed0/result.json").unlink()  # killed between the checkpoint and the result
    results = []
    compare(["pendulum_sac"], 1, preset="debug", env_steps=300, out=out, workers=1, progress=results.append)
    assert "error" not in results[0] and results[0]["env_steps"] == 300 and len(results[0]["rows"]) == 2


def test_failing_config_is_reported_and_the_others_finish(tmp_path, capsys):
    bad = tmp_path / "bad_env_sac.py"
    bad.write_text(BAD_CONFIG)
    out = tmp_path / "cmp"
    code = main(["compare", str(bad), "pendulum_sac", "--seeds", "1", "--preset", "debug", "--env-steps", "200",
                 "--out", str(out), "--workers", "2"])
    assert code == 1
    printed = capsys.readouterr().out
    assert "bad_env_sac seed 0: FAILED: env 'WorldModelsCompareBadEnv-v0' raised in step" in printed
    assert "simulator exploded" in printed
    summary = (out / "summary.md").read_text()
    assert "| bad_env_sac | 0 of 1 | failed |" in summary and "Failed runs:" in summary
    assert "| pendulum_sac | 1 |" in summary


def test_bad_config_fails_before_anything_runs(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key"):
        compare(["pendulum_sac", "pendulum_sac"], 1, sets=["policy.nope=1"], out=tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_steps_to_threshold():
    rows = [{"env_step": 0, "eval_return_mean": -900}, {"env_step": 1000, "eval_return_mean": -190},
            {"env_step": 2000, "eval_return_mean": -250}]
    assert steps_to_threshold(rows, -200) == 1000
    assert steps_to_threshold(rows, 0) is None and steps_to_threshold(rows, None) is None


def test_mountaincar_counts_the_flag_reached_as_its_threshold():
    """Plan2Explore's comparison counts the seeds that reach the goal: gymnasium's own threshold."""
    import gymnasium as gym

    from wm_app.compare_report import THRESHOLDS
    from wm_envs.make import env_base_name

    env_id = "MountainCarContinuous-v0"
    assert THRESHOLDS[env_base_name(env_id)] == gym.spec(env_id).reward_threshold == 90.0
    standing_still = [{"env_step": 0, "eval_return_mean": -11.7}, {"env_step": 2500, "eval_return_mean": -0.1}]
    assert steps_to_threshold(standing_still, THRESHOLDS["MountainCarContinuous"]) is None


def test_threshold_text_counts_seeds_that_never_reach_it():
    assert threshold_text([3000.0, 4000.0, 1000.0], -200, 4000, 0) == "3,000 (1,000 to 4,000) (≥ -200)"
    assert threshold_text([3000.0, None, 4000.0], -200, 4000, 0) == \
        "4,000 (3,000 to > 4,000) (≥ -200; 1 of 3 not within the budget)"
    assert threshold_text([3000.0, None, None], -200, 4000, 0).startswith("not reached (3,000 to > 4,000)")
    assert threshold_text([1000.0], -200, 4000, 0) == "1,000 (≥ -200)"
    assert threshold_text([1000.0], None, 4000, 0) == "n/a (no threshold)"


def test_few_seeds_wording():
    assert few_seeds_note([5, 7]) == ""
    three = few_seeds_note([3, 5])
    assert "Fewer than 5 seeds (3 in the smallest row): the intervals are wide" in three
    assert "cannot show how seeds that were not run would do" in three and "equals the mean" in three
    assert "equals the mean" not in few_seeds_note([4])
    assert "1 seed in a row: no interval" in few_seeds_note([1])


LENGTH = "world_model.rollout_length_scheduler.rollout_length"


def test_two_variants_three_seeds_run_in_stable_folders_and_resume(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = ["--seeds", "3", "--preset", "debug", "--env-steps", "300", "--out", str(out), "--workers", "1"]
    assert main(["compare", f"pendulum_mbpo:{LENGTH}=1", f"pendulum_mbpo:{LENGTH}=5", *argv]) == 0
    summary = (out / "summary.md").read_text()
    assert "| rollout_length=1 | 3 |" in summary and "| rollout_length=5 | 3 |" in summary
    assert "| rollout_length=1 | rollout_length=5 |" in summary  # P(A > B)
    folders = sorted(p.name for p in (out / "runs").iterdir())
    assert len(folders) == 2 and all(len(list((out / "runs" / f).glob("seed*/result.json"))) == 3 for f in folders)
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["variant"] for r in rows} == {f"pendulum_mbpo:{LENGTH}=1", f"pendulum_mbpo:{LENGTH}=5"}
    capsys.readouterr()
    # the same variants in another order, plus the config as it is: only the new row runs
    assert main(["compare", f"pendulum_mbpo:{LENGTH}=5", "pendulum_mbpo", f"pendulum_mbpo:{LENGTH}=1", *argv]) == 0
    printed = capsys.readouterr().out
    assert printed.count("finished earlier, skipped") == 6 and "rollout_length=3 seed 2: final eval return" in printed
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted([*folders, "pendulum_mbpo"])
    again = (out / "summary.md").read_text()
    def five(text):
        return next(x for x in text.splitlines() if x.startswith("| rollout_length=5 |")).split("|")[:8]
    assert five(summary) == five(again)  # same figures, read back


def stop_a_run_halfway(monkeypatch, which):
    """The ``which``-th run started (1-based) gets SIGTERM at env step 150; returns the list of the
    started runs' directories, filled as they start."""
    import signal

    real_run = SerialPipeline.run
    started = []

    def run_then_signal(self):
        started.append(self.run_dir)
        if len(started) == which:
            real_iteration = self.iteration

            def iteration():
                real_iteration()
                if self.collector.envstep == 150:
                    self.stop_signal = signal.SIGTERM
            self.iteration = iteration
        return real_run(self)

    monkeypatch.setattr(SerialPipeline, "run", run_then_signal)
    return started


def test_an_interrupted_sweep_resumes(tmp_path, monkeypatch):
    stop_a_run_halfway(monkeypatch, 2)  # the second run of the sweep
    out = tmp_path / "cmp"
    grid = ["policy.gamma=0.9,0.95,0.99"]
    results = []
    compare(["pendulum_sac"], 1, grid=grid, preset="debug", env_steps=300, out=out, workers=1,
            progress=results.append)
    assert [r.get("error") for r in results] == [None, "stopped by SIGTERM"]
    assert f"`gamma=0.99` seed 0: {compare_module().NOT_RUN}" in (out / "summary.md").read_text()
    monkeypatch.undo()  # runs are not stopped any more
    results = []
    compare(["pendulum_sac"], 1, grid=grid, preset="debug", env_steps=300, out=out, workers=1,
            progress=results.append)
    assert [bool(r.get("skipped")) for r in results] == [True, False, False]
    assert all("error" not in r and r["env_steps"] == 300 for r in results)
    reference = []
    compare(["pendulum_sac:policy.gamma=0.95"], 1, preset="debug", env_steps=300, out=tmp_path / "ref", workers=1,
            progress=reference.append)
    strip = [{k: v for k, v in row.items() if k != "wall_time"} for row in results[1]["rows"]]
    assert strip == [{k: v for k, v in row.items() if k != "wall_time"} for row in reference[0]["rows"]]


def compare_module():
    from wm_app import compare as module

    return module


README = Path(__file__).resolve().parents[2] / "README.md"
PENDULUM = Path(__file__).resolve().parents[2] / "docs" / "comparisons" / "pendulum"


def test_the_readme_table_is_the_one_rendered_from_the_committed_results(tmp_path):
    first = (report(PENDULUM / "results.csv", out=tmp_path / "a") / "summary.md").read_text()
    assert first == (report(PENDULUM / "results.csv", out=tmp_path / "b") / "summary.md").read_text()  # seeded
    table = [line for line in first.splitlines() if line.startswith("| pendulum_")]
    with open(PENDULUM / "results.csv", newline="") as handle:
        rows = len({record["config"] for record in csv.DictReader(handle)})
    assert rows >= 2
    assert len(table) == rows + rows * (rows - 1) // 2  # one line per row and one per pair of rows
    readme = README.read_text()
    for line in table:
        assert line in readme, f"README's compare table is not the one rendered from results.csv: {line}"
    assert first == (PENDULUM / "summary.md").read_text()


def synthetic(config, env_id, seed, final, method=None):
    rows = [{"env_step": 0.0, "wall_time": 1.0, "eval_return_mean": final / 2, "eval_return_std": 0.0},
            {"env_step": 1000.0, "wall_time": 2.0, "eval_return_mean": final, "eval_return_std": 0.0}]
    return {"config": config, "method": method or config, "env_id": env_id, "seed": seed, "rows": rows,
            "wall_time": 2.0, "env_steps": 1000}


def test_several_tasks_are_aggregated_on_normalised_scores_with_a_profile(tmp_path):
    results = [synthetic(f"{m} {task}", f"dm_control/{task}-v0", seed, score, m)
               for m, base in (("a", 800), ("b", 400)) for task in ("cartpole-swingup", "walker-walk")
               for seed, score in enumerate([base, base + 50, base + 100])]
    names = list(dict.fromkeys(r["config"] for r in results))
    scales = {r["env_id"]: (0.0, 1000.0) for r in results}
    write_report(tmp_path, names, results, "footer", scales)
    summary = (tmp_path / "summary.md").read_text()
    for method, value in (("a", 0.85), ("b", 0.45)):  # IQM of 6 runs: 4 of 0.05 apart around the mean
        low, high = map(float, re.search(rf"\| {method} \| 2 \| 6 \| {value:.3f} \(([\d.]+) to ([\d.]+)\)",
                                         summary).groups())
        assert value - 0.05 < low < value < high < value + 0.05  # narrower than the range: 2 strata of 3
    assert "| a | b | 2 | 1.00 (1.00 to 1.00) |" in summary
    assert (tmp_path / "profile.png").read_bytes()[:4] == b"\x89PNG"
    names, read_back = compare_report_module().read_results_csv(tmp_path / "results.csv")
    assert [r["method"] for r in read_back][:3] == ["a"] * 3 and len(read_back) == 12


def compare_report_module():
    from wm_app import compare_report

    return compare_report


def import_ray():
    """Ray, or a skip that says how to install it; with WORLDMODELS_REQUIRE_RAY=1 (as .ci/run sets,
    after installing the ray extra) a missing Ray fails instead of skipping silently."""
    if os.environ.get("WORLDMODELS_REQUIRE_RAY") == "1":
        try:
            import ray
        except ImportError as err:
            pytest.fail(f"WORLDMODELS_REQUIRE_RAY=1 but ray cannot be imported ({err}); "
                        "install it with pip install -c constraints.txt -e '.[test,ray]'")
        return ray
    return pytest.importorskip("ray", reason="SKIPPED the Ray backend test: ray is not installed (install the "
                                             "'ray' extra: pip install -c constraints.txt -e '.[test,ray]'; "
                                             "WORLDMODELS_REQUIRE_RAY=1 makes this a failure)")


def test_ray_backend_on_a_local_instance(tmp_path):
    ray = import_ray()
    out = tmp_path / "cmp"
    try:
        compare(["pendulum_sac", "inverted_pendulum_sac"], 1, preset="debug", env_steps=200, out=out,
                backend="ray", workers=2)
    finally:
        ray.shutdown()
    assert "| pendulum_sac | 1 |" in (out / "summary.md").read_text()
    assert (out / "runs/inverted_pendulum_sac/seed0/result.json").is_file()


def test_a_missing_ray_skips_loudly_or_fails_where_required(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    monkeypatch.delenv("WORLDMODELS_REQUIRE_RAY", raising=False)
    with pytest.raises(pytest.skip.Exception, match="SKIPPED the Ray backend test: ray is not installed"):
        import_ray()
    monkeypatch.setenv("WORLDMODELS_REQUIRE_RAY", "1")
    with pytest.raises(pytest.fail.Exception, match="WORLDMODELS_REQUIRE_RAY=1 but ray cannot be imported"):
        import_ray()


@pytest.mark.parametrize("extra,expected", [([], 1), (["--threads", "2"], 2),
                                            (["--set", "num_threads=3"], 3),
                                            (["--threads", "2", "--set", "num_threads=3"], 3)])
def test_thread_count_default_flag_and_user_set(extra, expected, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "pendulum_sac", "--preset", "debug", "--seeds", "1", "--workers", "1",
                 "--env-steps", "150", "--out", str(out), *extra]) == 0
    config = json.loads((out / "runs" / "pendulum_sac" / "seed0" / "config.json").read_text())
    assert config["num_threads"] == expected


def test_runs_go_seed_by_seed_and_the_report_row_by_row(tmp_path, monkeypatch):
    started = []
    real_run = SerialPipeline.run

    def record(self):
        started.append(self.run_dir)
        return real_run(self)

    monkeypatch.setattr(SerialPipeline, "run", record)
    out = tmp_path / "cmp"
    compare(["pendulum_sac"], 2, grid=["policy.gamma=0.9,0.99"], preset="debug", env_steps=200, out=out, workers=1)
    assert [(run.parent.name.split("-")[0], run.name) for run in started] == [
        ("pendulum_sac+gamma=0.9", "seed0"), ("pendulum_sac+gamma=0.99", "seed0"),
        ("pendulum_sac+gamma=0.9", "seed1"), ("pendulum_sac+gamma=0.99", "seed1")]
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    pairs = list(dict.fromkeys((r["config"], r["seed"]) for r in rows))  # a line per evaluation
    assert pairs == [("gamma=0.9", "0"), ("gamma=0.9", "1"), ("gamma=0.99", "0"), ("gamma=0.99", "1")]


def test_a_signal_that_stops_one_run_stops_the_compare_and_the_next_call_resumes(tmp_path, monkeypatch):
    from wm_app import compare as compare_module

    started = stop_a_run_halfway(monkeypatch, 1)  # by SIGTERM, as by `kill` or Ctrl-C
    out = tmp_path / "cmp"
    results = []
    compare(["pendulum_sac"], 2, preset="debug", env_steps=300, out=out, workers=1, progress=results.append)
    assert [run.name for run in started] == ["seed0"]  # seed 1 never started
    assert results[0]["error"] == "stopped by SIGTERM"
    assert f"`pendulum_sac` seed 1: {compare_module.NOT_RUN}" in (out / "summary.md").read_text()
    monkeypatch.undo()  # runs are not stopped any more
    results = []
    compare(["pendulum_sac"], 2, preset="debug", env_steps=300, out=out, workers=1, progress=results.append)
    assert [r.get("error") for r in results] == [None, None] and all(r["env_steps"] == 300 for r in results)


def test_the_readme_dmc_aggregate_is_the_one_rendered_from_the_committed_results(tmp_path):
    summary = (report(PENDULUM.parent / "dmc_sac", out=tmp_path) / "summary.md").read_text()
    (aggregate,) = [line for line in summary.splitlines() if line.startswith("| sac | 3 | 9 |")]
    assert aggregate in README.read_text()
    assert (tmp_path / "profile.png").is_file() and summary == (PENDULUM.parent / "dmc_sac" / "summary.md").read_text()


def test_the_readme_variants_table_is_the_committed_run_and_its_results_csv(tmp_path):
    folder = PENDULUM.parent / "pendulum_mbpo_rollout_length"
    committed = (folder / "summary.md").read_text()
    rendered = (report(folder / "results.csv", out=tmp_path) / "summary.md").read_text()
    table = [line for line in committed.splitlines() if line.startswith("| rollout_length=")]
    assert len(table) == 3 + 3  # three rows and three pairs
    assert table == [line for line in rendered.splitlines() if line.startswith("| rollout_length=")]
    readme = README.read_text()
    assert all(line in readme for line in table)


def test_the_command_line_plans_the_rows_once_and_announces_them(tmp_path, capsys, monkeypatch):
    from wm_app import compare as compare_module
    from wm_app import variants

    calls = []
    real = variants.plan_rows
    for module in (variants, compare_module):  # wherever the command line or compare() takes it from
        monkeypatch.setattr(module, "plan_rows", lambda *a, **k: calls.append(a) or real(*a, **k))
    code = main(["compare", "pendulum_sac", "--grid", "policy.actor_lr=1e-3,3e-4", "--seeds", "1", "--preset",
                 "debug", "--env-steps", "200", "--workers", "1", "--out", str(tmp_path / "cmp")])
    assert code == 0 and len(calls) == 1
    out = capsys.readouterr().out
    assert out.count("comparing ") == 1 and "over 1 seed(s): 2 runs" in out and "[2/2]" in out


def living_processes_in_group(pgid):
    """The processes of a process group that have not exited (zombies, awaiting their reaper, have)."""
    living = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (name)": state, ppid, pgrp
        except OSError:  # it has just exited
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            living.append(stat.parent.name)
    return living


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process groups from /proc (Linux)")
@pytest.mark.parametrize("to", ["parent", "group"])
def test_sigterm_to_a_two_worker_compare_saves_the_running_pairs_and_starts_no_other(to, tmp_path):
    """`kill PID` reaches only the compare's process, `kill -- -PGID` (or the end of a session)
    every process: either way the two running pairs save a checkpoint, the third never starts
    and no process is left behind."""
    import signal
    import subprocess
    import time

    out = tmp_path / "cmp"
    runs = out / "runs" / "pendulum_sac"
    command = [sys.executable, "-m", "wm_app.cli", "compare", "pendulum_sac", "--seeds", "3", "--workers", "2",
               "--preset", "debug", "--env-steps", "1000000", "--out", str(out)]
    proc = subprocess.Popen(command, cwd=Path(__file__).parents[2], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while not all((runs / f"seed{k}" / "progress.csv").is_file() for k in (0, 1)):  # both have started
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.2)
        if to == "parent":
            proc.send_signal(signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGTERM)
        output = proc.communicate(timeout=120)[0]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "the others are not started" in output
    assert all((runs / f"seed{k}" / "checkpoint.pt").is_file() for k in (0, 1)), output
    assert not (runs / "seed2").exists(), output
    time.sleep(1.0)
    assert living_processes_in_group(proc.pid) == []  # no worker outlives the compare
    assert "seed 2: " + compare_module().NOT_RUN in (out / "summary.md").read_text()


def test_only_seed_runs_those_seeds_in_their_usual_folders_and_a_bad_one_is_named(tmp_path, capsys, monkeypatch):
    started = []
    real_run = SerialPipeline.run

    def record(self):
        started.append(self.run_dir.name)
        return real_run(self)

    monkeypatch.setattr(SerialPipeline, "run", record)
    out = tmp_path / "cmp"
    assert main(["compare", "pendulum_sac", "--seeds", "3", "--only-seed", "2", "--only-seed", "0", "--preset",
                 "debug", "--env-steps", "200", "--out", str(out), "--workers", "1"]) == 0
    assert started == ["seed0", "seed2"]
    assert "over seed(s) 0, 2 of 3: 2 runs" in capsys.readouterr().out
    assert sorted(p.name for p in (out / "runs" / "pendulum_sac").iterdir()) == ["seed0", "seed2"]
    with open(out / "results.csv") as handle:
        assert {r["seed"] for r in csv.DictReader(handle)} == {"0", "2"}
    assert main(["compare", "pendulum_sac", "--seeds", "3", "--only-seed", "3", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--only-seed must name seeds in 0..2 (--seeds 3), got 3" in err and "Traceback" not in err
    assert started == ["seed0", "seed2"]
