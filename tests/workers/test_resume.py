"""Exact resume: a run stopped and continued matches an uninterrupted one, value for value."""
import csv
import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from wm_app.experiment import compose_config, load_config_file, shipped_config_names
from workers.checkpoint import load_checkpoint, load_latest_checkpoint
from workers.pipeline import SerialPipeline


def progress_without_wall_time(run_dir):
    """progress.csv without its timings (wall_time and metrics named *_seconds)."""
    with open(Path(run_dir) / "progress.csv") as handle:
        return [{k: v for k, v in row.items() if k != "wall_time" and not k.endswith("_seconds")}
                for row in csv.DictReader(handle)]


def run(config, out, env_steps=None, sets=()):
    cfg = compose_config(config, preset="debug", sets=sets, env_steps=env_steps)
    return SerialPipeline(cfg, out_dir=out, show_progress=False).run()


def debug_steps(config):
    raw, presets = load_config_file(config)
    return presets["debug"].get("env_steps", raw.get("env_steps"))


@pytest.mark.parametrize("config", shipped_config_names())
def test_resume_matches_uninterrupted_run(config, tmp_path):
    check_resume(config, tmp_path, (), stops=2)


def bf16_sets(config):
    """--set values that run every update of ``config`` in bf16."""
    raw, presets = load_config_file(config)
    return ["policy.precision='bf16'"] + (["world_model.precision='bf16'"] if raw.get("world_model") else [])


@pytest.mark.parametrize("config", shipped_config_names())
def test_resume_matches_uninterrupted_run_in_bf16(config, tmp_path):
    check_resume(config, tmp_path, bf16_sets(config), stops=1)


def test_resume_matches_uninterrupted_run_with_a_compiled_planner(tmp_path):
    # compiled planning loops (bf16 matmuls) must be as repeatable as eager ones for resume to hold
    check_resume("pendulum_tdmpc", tmp_path, ["policy.compile=True", "policy.precision='bf16'"], stops=1)


def check_resume(config, tmp_path, sets, stops):
    """A run stopped at ``stops`` points (a third and two thirds of the debug budget, off any
    schedule), each time resumed from its checkpoint (with two, the second checkpoint is a
    resumed run's), ends with the uninterrupted run's progress.csv."""
    total = debug_steps(config)
    reference = progress_without_wall_time(run(config, tmp_path / "full", sets=sets)["run_dir"])
    points = (total // 3 + 7, 2 * total // 3 + 3)[:stops]
    run_dir = run(config, tmp_path / "stopped", env_steps=points[0], sets=sets)["run_dir"]
    for budget in (*points[1:], total):
        resumed = SerialPipeline.resume(run_dir, env_steps=budget, show_progress=False).run()
    assert resumed["env_steps"] == total  # an intermediate stop may end past its budget (action repeat)
    assert progress_without_wall_time(run_dir) == reference, f"stopped at {points}"


def test_resume_twice_and_keep_last_checkpoints(tmp_path):
    first = run("pendulum_sac", tmp_path, env_steps=200, sets=["keep_checkpoints=2"])
    SerialPipeline.resume(first["run_dir"], env_steps=400, show_progress=False).run()
    SerialPipeline.resume(first["run_dir"], env_steps=600, show_progress=False).run()
    run_dir = Path(first["run_dir"])
    assert load_checkpoint(run_dir / "checkpoint.pt")["env_step"] == 600
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["checkpoint_400.pt"]


def test_corrupt_latest_checkpoint_falls_back_to_previous(tmp_path, capsys):
    first = run("pendulum_sac", tmp_path, env_steps=300)
    SerialPipeline.resume(first["run_dir"], env_steps=450, show_progress=False).run()
    latest = Path(first["run_dir"]) / "checkpoint.pt"
    latest.write_bytes(latest.read_bytes()[:1000])
    state, path = load_latest_checkpoint(Path(first["run_dir"]))
    assert state["env_step"] == 300 and path.name == "checkpoint_300.pt"
    assert "checkpoint.pt' is truncated or corrupt" in capsys.readouterr().out


def test_periodic_checkpoints(tmp_path):
    result = run("pendulum_sac", tmp_path, sets=["checkpoint_every=100", "keep_checkpoints=3"])
    run_dir = Path(result["run_dir"])
    kept = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert kept == ["checkpoint_400.pt", "checkpoint_500.pt"]
    assert not list(run_dir.glob(".*.new"))  # no temporary file left behind


def test_checkpoints_by_the_clock_are_kept_and_change_nothing(tmp_path):
    reference = run("pendulum_sac", tmp_path / "plain", sets=["checkpoint_minutes=0"])
    cfg = compose_config("pendulum_sac", preset="debug", sets=["checkpoint_minutes=100", "keep_checkpoints=3"])
    pipeline = SerialPipeline(cfg, out_dir=tmp_path / "timed", show_progress=False)
    pipeline.clock = itertools.count(0.0, 60.0).__next__  # each reading is a minute later
    result = pipeline.run()
    # read at the start, once per iteration (one env step each) and by each save: due at env
    # steps 100, 200, ..., 600 (the run's end: checkpoint.pt), the two before the last are kept
    run_dir = Path(result["run_dir"])
    assert result["env_steps"] == 600
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["checkpoint_400.pt", "checkpoint_500.pt"]
    assert progress_without_wall_time(run_dir) == progress_without_wall_time(reference["run_dir"])
    assert not list(Path(reference["run_dir"]).glob("checkpoints/*"))


KILL_DURING_SAVE = textwrap.dedent("""
    import os, signal, sys
    import torch
    from workers.pipeline import SerialPipeline
    real_save = torch.save

    def save_then_die(obj, handle, *args, **kwargs):
        real_save(obj, handle, *args, **kwargs)
        handle.flush()
        handle.truncate(handle.tell() // 2)  # half of the new checkpoint is on disk
        os.kill(os.getpid(), signal.SIGKILL)

    torch.save = save_then_die
    SerialPipeline.resume(sys.argv[1], env_steps=600, show_progress=False).run()
""")


def test_sigkill_while_writing_a_checkpoint_leaves_the_previous_one(tmp_path):
    first = run("pendulum_sac", tmp_path, env_steps=300)
    proc = subprocess.run([sys.executable, "-c", KILL_DURING_SAVE, first["run_dir"]], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    state, path = load_latest_checkpoint(Path(first["run_dir"]))
    assert state["env_step"] == 300 and path.name == "checkpoint.pt"
    resumed = SerialPipeline.resume(first["run_dir"], env_steps=600, show_progress=False).run()
    reference = run("pendulum_sac", tmp_path / "full")
    assert progress_without_wall_time(resumed["run_dir"]) == progress_without_wall_time(reference["run_dir"])


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_with_checkpoint_and_resume_instructions(signum, tmp_path):
    cmd = [sys.executable, "-m", "worldmodels", "train", "pendulum_sac", "--preset", "debug",
           "--env-steps", "100000", "--out", str(tmp_path), "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not list(tmp_path.glob("pendulum_sac/*/progress.csv")) and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    os.kill(proc.pid, signum)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == (130 if signum == signal.SIGINT else 143), err
    assert "Resume with: worldmodels train --resume" in out and "Traceback" not in err
    (run_dir,) = tmp_path.glob("pendulum_sac/*")
    step = load_checkpoint(run_dir / "checkpoint.pt")["env_step"]
    assert 0 < step < 100000
    resumed = SerialPipeline.resume(run_dir, env_steps=step + 300, show_progress=False).run()
    reference = run("pendulum_sac", tmp_path / "ref", env_steps=step + 300)
    assert progress_without_wall_time(resumed["run_dir"]) == progress_without_wall_time(reference["run_dir"])


def signalled_at_step_100(pipeline, *actions):
    """Run ``pipeline`` with ``actions`` (a stop request, or signals to this process) at env step 100."""
    real_iteration = pipeline.iteration

    def iteration():
        real_iteration()
        if pipeline.collector.envstep == 100:
            for action in actions:
                action()
    pipeline.iteration = iteration
    return pipeline.run()


def test_a_stop_request_then_the_same_signal_saves_but_two_signals_stop_at_once(tmp_path):
    """A comparison forwards a signal to its workers, which may have received it too: the request
    and the signal stop the run once, with its checkpoint; two real signals stop it at once."""
    cfg = compose_config("pendulum_sac", preset="debug", sets=(), env_steps=None)
    pipeline = SerialPipeline(cfg, out_dir=tmp_path / "a", show_progress=False)
    summary = signalled_at_step_100(pipeline, lambda: pipeline.request_stop(signal.SIGTERM, " (by the comparison)"),
                                    lambda: os.kill(os.getpid(), signal.SIGTERM))
    assert summary["stopped_by"] == "SIGTERM"
    assert load_checkpoint(Path(summary["run_dir"]) / "checkpoint.pt")["env_step"] == 100
    pipeline = SerialPipeline(cfg, out_dir=tmp_path / "b", show_progress=False)
    with pytest.raises(KeyboardInterrupt):
        signalled_at_step_100(pipeline, lambda: os.kill(os.getpid(), signal.SIGTERM),
                              lambda: os.kill(os.getpid(), signal.SIGTERM))
