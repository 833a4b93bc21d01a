"""A run directory from elsewhere runs no code: eval, --resume and load_agent refuse plugin
imports a stored config names unless the user trusts them; the user's own plugins still work."""
import json

import pytest

from registry import UntrustedPluginError, plugin_names, require_trust
from wm_app.agent import load_agent
from wm_app.cli import main
from wm_app.compare import compare
from workers.checkpoint import config_fingerprint, load_checkpoint, save_checkpoint


@pytest.fixture()
def planted_run(tmp_path, capsys):
    """A finished debug run whose checkpoint's config now names a plugin file that leaves a marker."""
    assert main(["train", "pendulum_sac", "--preset", "debug", "--no-progress", "--out", str(tmp_path / "runs"),
                 "--env-steps", "300"]) == 0
    run_dir = next((tmp_path / "runs" / "pendulum_sac").iterdir())
    marker = tmp_path / "marker"
    evil = tmp_path / "evil.py"
    evil.write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    state = load_checkpoint(run_dir / "checkpoint.pt")
    config = json.loads(state["config"])
    config["buffer"]["import_names"] = [str(evil)]
    state["config"] = json.dumps(config)
    state["fingerprint"] = config_fingerprint(state["config"])  # a careful attacker keeps it consistent
    save_checkpoint(state, run_dir / "checkpoint.pt")
    (run_dir / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    return run_dir, evil, marker


def test_eval_refuses_plugin_code_named_by_a_run(planted_run, capsys):
    run_dir, evil, marker = planted_run
    assert main(["eval", str(run_dir), "--episodes", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(evil) in err and "--trust-plugins" in err
    assert not marker.exists()


def test_resume_and_load_agent_refuse_it_too(planted_run, capsys):
    run_dir, evil, marker = planted_run
    assert main(["train", "--resume", str(run_dir), "--env-steps", "400", "--no-progress"]) == 2
    assert "--trust-plugins" in capsys.readouterr().err
    with pytest.raises(UntrustedPluginError, match="trust_plugins=True"):
        load_agent(run_dir)
    assert not marker.exists()


def test_trusting_the_run_imports_its_plugins(planted_run, capsys):
    run_dir, _, marker = planted_run
    assert main(["eval", str(run_dir), "--episodes", "1", "--trust-plugins"]) == 0
    assert marker.read_text() == "ran"


def test_plugin_names_are_found_at_any_depth_and_listed_once():
    cfg = {"world_model": {"import_names": "a.py", "sub": [{"import_names": ["b", "a.py"]}]},
           "policy": {"import_names": []}, "buffer": {"import_names": ["c"]}}
    assert plugin_names(cfg) == ["a.py", "b", "c"]
    require_trust(cfg, "x", trusted=["a.py", "b", "c"])
    require_trust(cfg, "x", trusted=True)
    with pytest.raises(UntrustedPluginError, match=r"^x names plugin code .*: b, c; if you trust it"):
        require_trust(cfg, "x", trusted=["a.py"])


def test_compare_resumes_runs_of_the_users_own_plugin_configs(tmp_path, monkeypatch):
    plugin = tmp_path / "my_policy.py"
    plugin.write_text("from policies.sac import SACPolicy\nfrom registry import POLICY_REGISTRY\n"
                      "POLICY_REGISTRY.register('my_sac')(type('MySAC', (SACPolicy,), {}))\n")
    config = tmp_path / "my_config.py"
    config.write_text(
        "config = dict(exp_name='mine', env_steps=300, env=dict(id='Pendulum-v1'),\n"
        "    collector=dict(warmup_steps=100), policy=dict(type='my_sac', hidden_sizes=[16, 16],\n"
        f"    import_names=[{str(plugin)!r}]), learner=dict(batch_size=16),\n"
        "    evaluator=dict(eval_freq=150, n_episodes=1), checkpoint_every=150)\n")
    out = tmp_path / "cmp"
    compare([str(config)], seeds=1, workers=1, out=out, env_steps=150)
    (result,) = out.glob("runs/my_config/seed0/result.json")
    result.unlink()  # as if the run had been stopped after its checkpoint: the pair resumes
    compare([str(config)], seeds=1, workers=1, out=out, env_steps=300)
    rows = json.loads(result.read_text())["rows"]
    assert [row["env_step"] for row in rows] == [0, 150, 300]
