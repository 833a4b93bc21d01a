"""Loadable but wrong checkpoints: validated before use, an older good one is used with a
one-line warning, and when none is good the error is one line."""
import json

import torch

from wm_app.cli import main
from workers.checkpoint import config_fingerprint, load_checkpoint, save_checkpoint


def run_with_history(tmp_path, capsys):
    """A debug run with checkpoints at 100, 200 and 300 env steps."""
    assert main(["train", "pendulum_sac", "--preset", "debug", "--no-progress", "--out", str(tmp_path),
                 "--env-steps", "300", "--set", "checkpoint_every=100", "--set", "keep_checkpoints=5"]) == 0
    capsys.readouterr()
    return next((tmp_path / "pendulum_sac").iterdir())


def test_a_checkpoint_missing_its_parts_falls_back_to_the_previous_one(tmp_path, capsys):
    run_dir = run_with_history(tmp_path, capsys)
    torch.save({"format": 1}, run_dir / "checkpoint.pt")
    assert main(["train", "--resume", str(run_dir), "--env-steps", "400", "--no-progress"]) == 0
    out = capsys.readouterr().out
    warnings = [line for line in out.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "is not a complete pipeline checkpoint (no 'config')" in warnings[0]
    assert "finished at env step 400: 200 env steps in this session" in out


def test_weights_that_do_not_fit_their_config_fall_back_too(tmp_path, capsys):
    run_dir = run_with_history(tmp_path, capsys)
    state = load_checkpoint(run_dir / "checkpoint.pt")
    config = json.loads(state["config"])
    config["policy"]["hidden_sizes"] = [32, 32]  # the weights are [64, 64]
    state["config"] = json.dumps(config)
    state["fingerprint"] = config_fingerprint(state["config"])
    save_checkpoint(state, run_dir / "checkpoint.pt")
    (run_dir / "config.json").write_text(json.dumps(config))
    assert main(["eval", str(run_dir), "--episodes", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not fit its config (RuntimeError: " in err


def test_no_good_checkpoint_is_one_line(tmp_path, capsys):
    run_dir = run_with_history(tmp_path, capsys)
    for path in [run_dir / "checkpoint.pt", *(run_dir / "checkpoints").glob("*.pt")]:
        path.write_bytes(b"not a checkpoint")
    assert main(["train", "--resume", str(run_dir), "--env-steps", "400", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot resume" in err and "weights_only" not in err


def test_resume_of_a_missing_folder_says_it_does_not_exist(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "run directory" in err and "nowhere' does not exist" in err
