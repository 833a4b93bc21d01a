"""The benchmark scripts run end to end on debug presets and print what they measured."""
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import mutation  # noqa: E402
import throughput  # noqa: E402


@pytest.mark.parametrize("config", ["pendulum_sac", "cartpole_dreamerv3"])
def test_throughput_script_reports_figures(config, capsys):
    assert throughput.main([config, "--preset", "debug", "--env-steps", "300"]) == 0
    out = capsys.readouterr().out
    assert "env steps/s (after warm-up)" in out and "where the time went" in out
    if config == "cartpole_dreamerv3":
        assert "world_model_steps_per_s" in out and "imagined_steps_per_s" in out


def test_mutation_list_matches_the_code():
    """Every mutation's original snippet is in its file exactly once (the list follows the code),
    and the list spans the core modules; running the mutations is for the script, not the suite."""
    mutation.check_all()
    assert len(mutation.MUTATIONS) >= 30
    core = {"worldmodels/base.py", "worldmodels/schedules.py", "worldmodels/mbpo.py", "worldmodels/rssm.py",
            "worldmodels/dreamerv3.py", "worldmodels/steve.py", "wm_core/config.py", "policies/dreamer.py",
            "policies/sac.py", "workers/buffer.py", "registry/registry.py", "policies/planners.py",
            "worldmodels/latent.py", "wm_envs/dmc.py", "workers/checkpoint.py"}
    assert core <= {m.path for m in mutation.MUTATIONS}
    moved = mutation.Mutation("moved", "worldmodels/steve.py", "no such line", "x", "a snippet that moved",
                              ("tests/worldmodels/test_steve.py",))
    with pytest.raises(ValueError, match="'moved': the original snippet is not in worldmodels/steve.py"):
        mutation.check_all((moved,))


def test_mbpo_throughput_times_ensemble_steps_in_the_models_precision(monkeypatch):
    from contextlib import nullcontext

    import mbpo_throughput

    from wm_app.experiment import compose_config

    entered, before_fit = [], []
    real_build = mbpo_throughput.build_components

    def build(cfg, env):
        model, policy = real_build(cfg, env)
        model.trainer.autocast = lambda: entered.append(model.precision) or nullcontext()
        real_train = model.train
        model.train = lambda *args, **kwargs: before_fit.append(len(entered)) or real_train(*args, **kwargs)
        return model, policy

    monkeypatch.setattr(mbpo_throughput, "build_components", build)
    cfg = compose_config("pendulum_mbpo", "debug", ["world_model.precision=fp32"], 0, None)
    figures = mbpo_throughput.mbpo_throughput(cfg, buffer_steps=300, train_steps=3, fills=1)
    assert figures["ensemble_step_ms"] > 0
    assert before_fit == [3 + 5] and set(entered) == {"fp32"}  # every warm-up and timed step, before the fit


def test_planning_script_reports_the_cost_of_a_call(capsys):
    import planning

    assert planning.main(["pendulum_pets", "--preset", "debug", "--calls", "3"]) == 0
    out = capsys.readouterr().out
    assert "ms per planning call: median" in out and "matmul share of the profiled time" in out
    assert planning.main(["pendulum_pets", "--preset", "debug", "--calls", "1", "--updates", "1"]) == 2
    assert "world model 'mbpo' has no latent train_step to time" in capsys.readouterr().out
    assert planning.main(["pendulum_tdmpc", "--preset", "debug", "--calls", "1", "--updates", "2"]) == 0
    assert re.search(r"ms per model update \(fp32 precision, batch 16 x \d+ steps\): median [\d.]+, min [\d.]+ over "
                     r"2 updates", capsys.readouterr().out)


def test_perf_suite_measures_every_figure_at_tiny_sizes(tmp_path, monkeypatch, capsys):
    """The suite's parts run at debug sizes; figures are positive, FLOPs do not depend on the
    precision, and the printed report holds all three tables (never a timing threshold)."""
    import perf

    matmul = perf.matmul_peaks([1], sizes=(64,), repeats=2, min_run_s=0.001)
    assert {(r["precision"], r["size"]) for r in matmul} == {("fp32", 64), ("bf16", 64)}
    assert all(r["best_gflops"] >= r["median_gflops"] > 0 for r in matmul)
    peaks = perf.peak_by_precision(matmul, threads=1)
    assert set(peaks) == {"fp32", "bf16"} and min(peaks.values()) > 0

    steps = perf.training_steps(steps=2, warmup=1, preset="debug", buffer_steps=64)
    perf.add_peak_percent(steps, peaks)
    names = {"SAC update", "MBPO ensemble step", "DreamerV3 world-model step", "dreamer actor-critic update"}
    assert {(r["step"], r["precision"]) for r in steps} == {(n, p) for n in names for p in ("fp32", "bf16")}
    for row in steps:
        assert row["flops"] > 0 and row["median_s"] > 0 and row["gflops"] > 0 and row["percent_of_peak"] > 0
    flops = {(r["step"], r["precision"]): r["flops"] for r in steps}
    assert all(flops[name, "bf16"] == flops[name, "fp32"] for name in names)

    run = perf.config_run("pendulum_sac", env_steps=50, threads=1, preset="debug")
    assert run["env_steps"] == 50 and run["wall_s"] > 0 and run["env_steps_per_s"] > 0 and run["note"] == ""
    assert perf.config_run("no_such_config", 50, 1)["note"].startswith("failed: ConfigError")

    monkeypatch.setattr(perf, "available_cores", lambda: 1)  # the test stays on one thread
    out = tmp_path / "perf.md"
    assert perf.main(["--preset", "debug", "--configs", "pendulum_sac", "--env-steps", "50", "--steps", "1",
                      "--warmup", "1", "--matmul-sizes", "64", "--matmul-seconds", "0.001",
                      "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed == out.read_text()
    for heading in ("load average", "## torch.mm GFLOP/s", "## Training steps", "## Configs through"):
        assert heading in printed
    assert "| pendulum_sac | 50 |" in printed


def test_offline_benchmark_runs_each_row_and_dataset_and_reads_finished_runs_back(tmp_path, capsys):
    import gymnasium as gym
    import numpy as np
    import offline

    from workers.buffer import random_buffer
    from workers.dataset import KEYS

    source = tmp_path / "source.npz"
    np.savez(source, **random_buffer(gym.make("Pendulum-v1"), 300, seed=1).transitions(keys=KEYS))
    args = ["--source", str(source), "--out", str(tmp_path / "out"), "--seeds", "1", "--random-steps", "300",
            "--sac-updates", "12", "--rows", "offline_sac", "--report", str(tmp_path / "report")]
    assert offline.main(args) == 0
    first = capsys.readouterr().out
    assert "offline_sac on replay seed 0: final" in first and "offline_sac on random seed 0: final" in first
    assert "| offline_sac | random | 1 |" in (tmp_path / "report" / "summary.md").read_text()
    assert offline.main(args) == 0  # read back, not run again
    assert capsys.readouterr().out.splitlines()[:2] == first.splitlines()[:2]
