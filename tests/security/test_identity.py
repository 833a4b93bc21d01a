"""A checkpoint must belong to its run: another run's checkpoint, a hand-edited config.json
or an altered stored config is refused in one line, and nothing in the run is overwritten."""
import json
import shutil

import pytest

from wm_app.cli import main
from workers.checkpoint import (
    CheckpointError,
    check_identity,
    config_fingerprint,
    first_difference,
    load_checkpoint,
    save_checkpoint,
)


def debug_run(config, out, capsys):
    assert main(["train", config, "--preset", "debug", "--no-progress", "--out", str(out), "--env-steps", "200"]) == 0
    capsys.readouterr()
    return next((out / config).iterdir())


def refused_in_one_line(run_dir, capsys, *expected):
    before = {name: (run_dir / name).read_bytes() for name in ("config.json", "progress.csv")}
    assert main(["train", "--resume", str(run_dir), "--env-steps", "300", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    for text in expected:
        assert text in err
    assert {name: (run_dir / name).read_bytes() for name in before} == before


def test_another_runs_checkpoint_is_refused(tmp_path, capsys):
    mine = debug_run("pendulum_sac", tmp_path / "a", capsys)
    other = debug_run("cartpole_dreamerv3", tmp_path / "b", capsys)
    shutil.copy(other / "checkpoint.pt", mine / "checkpoint.pt")
    refused_in_one_line(mine, capsys, "belongs to another config than its run's config.json", "collector.warmup_steps")


def test_a_hand_edited_config_json_is_refused(tmp_path, capsys):
    run_dir = debug_run("pendulum_sac", tmp_path, capsys)
    config = json.loads((run_dir / "config.json").read_text())
    config["policy"]["gamma"] = 0.5
    (run_dir / "config.json").write_text(json.dumps(config))
    refused_in_one_line(run_dir, capsys, "policy.gamma (0.99 vs 0.5)")


def test_an_altered_stored_config_is_refused(tmp_path, capsys):
    run_dir = debug_run("pendulum_sac", tmp_path, capsys)
    state = load_checkpoint(run_dir / "checkpoint.pt")
    config = json.loads(state["config"])
    config["policy"]["gamma"] = 0.5
    state["config"] = json.dumps(config)
    save_checkpoint(state, run_dir / "checkpoint.pt")
    (run_dir / "config.json").write_text(json.dumps(config))  # even with config.json edited to match
    refused_in_one_line(run_dir, capsys, "does not match its own stored config (it was altered)")


def test_extending_the_budget_is_not_a_difference(tmp_path, capsys):
    run_dir = debug_run("pendulum_sac", tmp_path, capsys)
    assert main(["train", "--resume", str(run_dir), "--env-steps", "300", "--no-progress"]) == 0
    state = load_checkpoint(run_dir / "checkpoint.pt")
    check_identity(state, run_dir / "checkpoint.pt", json.loads((run_dir / "config.json").read_text()))
    assert json.loads((run_dir / "config.json").read_text())["env_steps"] == 300


def test_first_difference_names_the_dotted_key():
    assert first_difference({"a": {"b": 1, "c": [1]}}, {"a": {"b": 1, "c": [2]}}) == "a.c ([1] vs [2])"
    assert first_difference({"a": 1}, {"a": 1, "z": 2}) == "z (missing vs 2)"
    assert first_difference({"env_steps": 1, "a": 1}, {"env_steps": 2, "a": 1}) is None
    # only the run's own budget may change: a section's env_steps is a setting like any other
    assert first_difference({"b": {"env_steps": 1}}, {"b": {"env_steps": 2}}) == "b.env_steps (1 vs 2)"
    with pytest.raises(CheckpointError, match="altered"):
        check_identity({"config": json.dumps({"a": 1}), "fingerprint": "0" * 64}, "x", {"a": 1})


def test_the_fingerprint_covers_every_key_but_the_budget():
    config = {"exp_name": "run", "seed": 0, "num_threads": 1, "env_steps": 300, "env": {"id": "Pendulum-v1"},
              "policy": {"type": "sac", "gamma": 0.99}}
    fingerprint = config_fingerprint(json.dumps(config))
    assert config_fingerprint(json.dumps({**config, "env_steps": 600})) == fingerprint
    for key, value in [("exp_name", "other"), ("seed", 1), ("num_threads", 2), ("env", {"id": "Hopper-v5"}),
                       ("policy", {"type": "sac", "gamma": 0.5})]:
        assert config_fingerprint(json.dumps({**config, key: value})) != fingerprint, key
