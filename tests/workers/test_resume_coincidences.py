"""Resume where a checkpoint step is also an evaluation step: no row is written twice,
and the resumed run matches an uninterrupted one (every shipped config's debug preset)."""
import shutil

import pytest

from wm_app.experiment import compose_config, load_config_file, shipped_config_names
from workers.pipeline import SerialPipeline

from .test_resume import progress_without_wall_time


def debug_schedule(config):
    """The debug preset's env steps and evaluation period."""
    raw, presets = load_config_file(config)
    total = presets["debug"].get("env_steps", raw.get("env_steps"))
    return total, presets["debug"].get("evaluator", {}).get("eval_freq") or raw["evaluator"]["eval_freq"]


def coinciding_run(config, out, env_steps):
    """A debug run that checkpoints at every evaluation step."""
    _, eval_freq = debug_schedule(config)
    sets = [f"checkpoint_every={eval_freq}", "keep_checkpoints=20"]
    cfg = compose_config(config, preset="debug", sets=sets, env_steps=env_steps)
    return SerialPipeline(cfg, out_dir=out, show_progress=False).run(), eval_freq


@pytest.mark.parametrize("config", shipped_config_names())
def test_kill_after_a_checkpoint_at_an_evaluation_step(config, tmp_path):
    """The run is cut right after an evaluation that followed the checkpoint at the same step."""
    _, eval_freq = debug_schedule(config)
    summary, _ = coinciding_run(config, tmp_path / "full", 2 * eval_freq)
    reference = progress_without_wall_time(summary["run_dir"])
    steps = [row["env_step"] for row in reference]
    assert len(steps) == len(set(steps)), "the uninterrupted run wrote a step twice"
    run_dir = tmp_path / "full" / "cut"
    shutil.copytree(summary["run_dir"], run_dir)
    (run_dir / "checkpoint.pt").replace(run_dir / "checkpoint_final.pt")  # the newest now: step eval_freq
    for kept in (run_dir / "checkpoints").glob("checkpoint_*.pt"):
        if int(kept.stem.split("_")[-1]) > eval_freq:
            kept.unlink()
    (run_dir / "checkpoints" / f"checkpoint_{eval_freq}.pt").replace(run_dir / "checkpoint.pt")
    (run_dir / "checkpoint_final.pt").unlink()
    resumed = SerialPipeline.resume(run_dir, show_progress=False).run()
    assert progress_without_wall_time(resumed["run_dir"]) == reference


@pytest.mark.parametrize("config", ["pendulum_sac", "pendulum_pets", "dmc_cartpole_swingup_dreamerv3"])
def test_extending_a_finished_run_whose_last_checkpoint_was_periodic(config, tmp_path):
    total, eval_freq = debug_schedule(config)
    summary, _ = coinciding_run(config, tmp_path / "full", total + eval_freq)
    reference = progress_without_wall_time(summary["run_dir"])
    first, _ = coinciding_run(config, tmp_path / "short", total)
    resumed = SerialPipeline.resume(first["run_dir"], env_steps=total + eval_freq, show_progress=False).run()
    assert progress_without_wall_time(resumed["run_dir"]) == reference
