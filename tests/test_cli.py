import subprocess
import sys

import pytest

from wm_app.cli import main
from wm_app.experiment import shipped_config_names

BAD_INPUTS = [
    (["train", "no_such_config"], "unknown config 'no_such_config'"),
    (["train", "pendulum_sak"], "did you mean 'pendulum_sac'"),
    (["train", "missing/file.py"], "does not exist"),
    (["train", "pendulum_sac", "--set", "policy.actor_lrr=1"], "unknown config key 'policy.actor_lrr'"),
    (["train", "pendulum_sac", "--set", "nope=1"], "unknown config key 'nope'"),
    (["train", "pendulum_sac", "--set", "policy.type=sacc"], "unknown policy type 'sacc'; did you mean 'sac'"),
    (["train", "pendulum_sac", "--set", "world_model={'type': 'mbpoo'}"], "unknown world_model type 'mbpoo'"),
    (["train", "pendulum_sac", "--set", "policy.gamma=high"], "'policy.gamma' expects a number"),
    (["train", "pendulum_sac", "--set", "learner.batch_size=0"], "'learner.batch_size' must be within [1, inf]"),
    (["train", "pendulum_sac", "--set", "policy.gamma=1.5"], "'policy.gamma' must be within [0.0, 1.0]"),
    (["train", "pendulum_sac", "--set", "policy.hidden_sizes=[64, 0]"], "list of positive ints"),
    (["train", "pendulum_sac", "--set", "seed=-1"], "'seed' must be within"),
    (["train", "pendulum_sac", "--set", "env.id=Pendulum-v9"], "unknown env.id 'Pendulum-v9'"),
    (["train", "pendulum_sac", "--set", "device=tpu"], "'device' must be one of"),
    (["train", "pendulum_sac", "--set", "novalue"], "--set expects key=value"),
    (["train", "pendulum_sac", "--env-steps", "0"], "expected a positive integer"),
    (["train", "pendulum_sac", "--env-steps", "-5"], "expected a positive integer"),
    (["train", "pendulum_sac", "--seed", "x"], "expected an integer"),
    (["train", "pendulum_sac", "--preset", "fast"], "unknown preset 'fast'"),
    (["train"], "train needs a CONFIG or --resume RUN_DIR"),
    (["train", "pendulum_sac", "--resume", "runs/x"], "--resume continues a run with its saved config"),
    (["train", "--resume", "no/such/run"], "run directory 'no/such/run' does not exist"),
    (["frobnicate"], "invalid choice"),
    (["config", "pendulum_sac", "--set", "collector.vector=threads"], "'collector.vector' must be one of"),
]


@pytest.mark.parametrize("argv,expected", BAD_INPUTS)
def test_bad_input_is_one_clear_line(argv, expected, capsys, tmp_path):
    out_args = ["--out", str(tmp_path)] if argv[0] == "train" and len(argv) > 1 else []
    assert main(argv + out_args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert list(tmp_path.iterdir()) == []  # no half-written run directory


def test_command_line_exit_status_and_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "worldmodels", "train", "pendulum_sac", "--set", "policy.lr=1",
                           "--out", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert "unknown config key 'policy.lr'" in proc.stderr


def test_list_shows_configs_and_registries(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "pendulum_sac" in out and "policy: " in out and "sac" in out and "linear" in out


def test_config_prints_resolved_json(capsys):
    assert main(["config", "pendulum_sac", "--set", "policy.tau=0.01", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert '"tau": 0.01' in out and '"seed": 3' in out and '"alpha_lr"' in out


@pytest.mark.parametrize("name", shipped_config_names())
def test_every_shipped_config_runs_its_debug_preset(name, tmp_path, capsys):
    assert main(["train", name, "--preset", "debug", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "final eval return" in out and "run directory" in out


def test_resumed_summary_reports_this_sessions_steps_and_the_runs_total(tmp_path, capsys):
    assert main(["train", "pendulum_sac", "--preset", "debug", "--no-progress", "--out", str(tmp_path),
                 "--env-steps", "200"]) == 0
    first = capsys.readouterr().out
    assert "finished 200 env steps in" in first and "over 2 episodes" in first
    run_dir = next((tmp_path / "pendulum_sac").iterdir())
    assert main(["train", "--resume", str(run_dir), "--env-steps", "350", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "finished at env step 350: 150 env steps in this session in" in out
    assert main(["eval", str(run_dir), "--episodes", "1"]) == 0
    assert "over 1 episode (" in capsys.readouterr().out


def test_python_m_worldmodels_ignores_same_named_folders_in_the_current_folder(tmp_path):
    for name in ("configs", "workers", "registry", "policies"):
        (tmp_path / name).mkdir()
    done = subprocess.run([sys.executable, "-m", "worldmodels", "list"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "pendulum_sac" in done.stdout.splitlines()[0]
