"""Checkpoint writes cut by a kill or by a full disk: nothing complete is lost, nothing
partial stays behind, and the message is one line."""
import torch

from wm_app.cli import main
from workers.checkpoint import checkpoint_paths, load_checkpoint


def finished_run(tmp_path, capsys, env_steps=300):
    assert main(["train", "pendulum_sac", "--preset", "debug", "--no-progress", "--out", str(tmp_path),
                 "--env-steps", str(env_steps), "--set", "checkpoint_every=100", "--set", "keep_checkpoints=5"]) == 0
    capsys.readouterr()
    return next((tmp_path / "pendulum_sac").iterdir())


def test_a_kill_between_the_two_renames_resumes_from_the_complete_new_checkpoint(tmp_path, capsys):
    run_dir = finished_run(tmp_path, capsys)
    latest = run_dir / "checkpoint.pt"
    assert load_checkpoint(latest)["env_step"] == 300
    # As a kill leaves it: the new checkpoint (300) written, the old (200) moved aside, no checkpoint.pt.
    latest.replace(run_dir / ".checkpoint.pt.new")
    assert checkpoint_paths(run_dir)[0].name == ".checkpoint.pt.new"
    assert main(["train", "--resume", str(run_dir), "--env-steps", "400", "--no-progress"]) == 0
    assert "finished at env step 400: 100 env steps in this session" in capsys.readouterr().out
    assert not (run_dir / ".checkpoint.pt.new").exists()
    steps = sorted(load_checkpoint(p)["env_step"] for p in (run_dir / "checkpoints").glob("*.pt"))
    assert steps == [100, 200, 300]  # and no extra checkpoint one step after the resume
    assert load_checkpoint(run_dir / "checkpoint.pt")["env_step"] == 400


def test_a_full_disk_keeps_the_previous_checkpoint_and_leaves_no_partial_file(tmp_path, capsys, monkeypatch):
    run_dir = finished_run(tmp_path, capsys, env_steps=200)
    real_save = torch.save

    def full_disk(obj, handle, *args, **kwargs):
        handle.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    assert main(["train", "--resume", str(run_dir), "--env-steps", "300", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device; the previous checkpoint is kept" in err
    assert not list(run_dir.glob(".*.tmp")) and not (run_dir / ".checkpoint.pt.new").exists()
    monkeypatch.setattr(torch, "save", real_save)
    assert load_checkpoint(run_dir / "checkpoint.pt")["env_step"] == 200
