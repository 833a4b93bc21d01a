"""A disk-backed replay buffer keeps its files in the run directory, and a resume removes
what a killed run left there."""
from wm_app.cli import main


def test_disk_buffer_files_live_in_the_run_and_a_resume_removes_stale_ones(tmp_path, capsys):
    argv = ["train", "pendulum_sac", "--preset", "debug", "--no-progress", "--out", str(tmp_path),
            "--env-steps", "200", "--set", "buffer.storage=disk"]
    assert main(argv) == 0
    run_dir = next((tmp_path / "pendulum_sac").iterdir())
    replay = run_dir / "replay"
    assert replay.is_dir() and list(replay.iterdir()) == []  # the finished run removed its files
    stale = replay / "replay-killed"
    stale.mkdir()
    (stale / "obs.npy").write_bytes(b"\0" * 1024)
    assert main(["train", "--resume", str(run_dir), "--env-steps", "300", "--no-progress"]) == 0
    assert not stale.exists()
    assert "finished at env step 300" in capsys.readouterr().out
