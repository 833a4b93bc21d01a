"""Property: whatever a checkpoint or a run directory holds, eval and --resume either work or
stop with one line (exit 2); no traceback, and the good checkpoint kept beside it is used."""
import json
import os
import shutil

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from wm_app.cli import main
from workers.checkpoint import load_checkpoint, save_checkpoint

PROPERTY = settings(max_examples=int(os.environ.get("WORLDMODELS_PROPERTY_EXAMPLES", 40)) // 5, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
TOP_KEYS = ["format", "config", "fingerprint", "env_step", "pipeline", "logger_latest", "learner", "policy",
            "world_model", "collector", "env_buffer", "img_buffer", "torch_rng"]
JUNK = st.one_of(st.none(), st.integers(-5, 10**6), st.floats(allow_nan=True), st.text(max_size=6),
                 st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                 st.just(torch.zeros(2)))


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "pendulum_sac", "--preset", "debug", "--no-progress", "--out", str(out),
                 "--env-steps", "200", "--set", "checkpoint_every=100", "--set", "keep_checkpoints=3",
                 "--set", "evaluator.n_episodes=1", "--set", "env.max_episode_steps=20"]) == 0
    return next((out / "pendulum_sac").iterdir())


def damaged_copy(good_run, tmp_path, edit):
    run_dir = tmp_path / "run"
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(good_run, run_dir)
    state = load_checkpoint(run_dir / "checkpoint.pt")
    edit(state)
    save_checkpoint(state, run_dir / "checkpoint.pt")
    return run_dir


def one_line_or_success(code, capsys, allowed=(0, 2)):
    captured = capsys.readouterr()
    assert code in allowed, captured.err
    assert "Traceback" not in captured.err + captured.out
    if code != 0:
        errors = [line for line in captured.err.strip().splitlines() if not line.startswith("warning:")]
        assert len(errors) == 1 and errors[0].startswith("worldmodels: error: ")


@PROPERTY
@given(key=st.sampled_from(TOP_KEYS), value=JUNK, drop=st.booleans())
@example(key="env_step", value=None, drop=False)  # the archive of the damaged checkpoint.pt read its step
@example(key="env_step", value=205, drop=False)  # a step past the budget that the collector never reached
@example(key="env_step", value=1e241, drop=False)  # archived as checkpoint_1000...0.pt: a file name too long
def test_a_damaged_entry_falls_back_or_stops_in_one_line(good_run, tmp_path, capsys, key, value, drop):
    def edit(state):
        if drop:
            state.pop(key, None)
        else:
            state[key] = value

    run_dir = damaged_copy(good_run, tmp_path, edit)
    code = main(["train", "--resume", str(run_dir), "--env-steps", "205", "--no-progress"])
    one_line_or_success(code, capsys)
    assert code == 0  # the older checkpoint at 100 is good: resume always succeeds from it or the damaged one


@PROPERTY
@given(section=st.sampled_from(["policy", "learner", "collector", "pipeline"]), inner=st.text(max_size=8),
       value=JUNK)
@example(section="learner", inner="a", value=10**6)  # update_debt: a million updates owed (ran for hours)
@example(section="pipeline", inner="HH$", value={"": 0})  # last_eval without env_step: a KeyError at the end
def test_damaged_inner_state_never_gives_a_traceback(good_run, tmp_path, capsys, section, inner, value):
    def edit(state):
        target = state[section]
        keys = sorted(target)
        # the key picked from the text deterministically (str hashes differ between processes)
        target[keys[sum(map(ord, inner)) % len(keys)] if keys and inner else inner] = value

    run_dir = damaged_copy(good_run, tmp_path, edit)
    # The pipeline's own state is validated entry by entry (a refusal, exit 2); a component's inner
    # state is validated by its load_state_dict, and junk it accepts may still fail later (exit 1),
    # but always as one line.
    allowed = (0, 2) if section == "pipeline" else (0, 1, 2)
    one_line_or_success(main(["eval", str(run_dir), "--episodes", "1"]), capsys, allowed)
    code = main(["train", "--resume", str(run_dir), "--env-steps", "205", "--no-progress"])
    one_line_or_success(code, capsys, allowed)


@PROPERTY
@given(text=st.one_of(st.text(max_size=30), st.just("{}"), st.just("[]"), st.just('{"env_steps": 5}')))
def test_any_config_json_is_refused_in_one_line_or_ignored(good_run, tmp_path, capsys, text):
    run_dir = damaged_copy(good_run, tmp_path, lambda state: None)
    (run_dir / "config.json").write_text(text)
    one_line_or_success(main(["train", "--resume", str(run_dir), "--env-steps", "205", "--no-progress"]), capsys)
    assert json.loads(load_checkpoint(run_dir / "checkpoint.pt")["config"])["exp_name"] == "pendulum_sac"
