"""Bad configs that used to run, or to fail late: each is refused at start in one line."""
import pytest

from wm_app.cli import main
from wm_app.experiment import compose_config
from wm_core.config import ConfigError


def one_line_error(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    return err


def test_an_infinite_learning_rate_is_refused(capsys):
    err = one_line_error(["train", "pendulum_sac", "--preset", "debug", "--set", "policy.actor_lr=1e400"], capsys)
    assert "'policy.actor_lr' must be a finite number, got inf" in err


def test_a_batch_larger_than_the_buffer_is_refused(capsys):
    err = one_line_error(["train", "pendulum_sac", "--preset", "debug", "--set", "buffer.capacity=100",
                          "--set", "learner.batch_size=101"], capsys)
    assert "'learner.batch_size' (101) is larger than 'buffer.capacity' (100)" in err


def test_a_config_file_that_exits_is_an_error(tmp_path, capsys):
    path = tmp_path / "exits.py"
    path.write_text("raise SystemExit(0)\n")
    err = one_line_error(["train", str(path)], capsys)
    assert "failed to load: SystemExit: 0" in err


@pytest.mark.parametrize("override", ["world_model.type=dreamerv3", "world_model={'type': 'dreamerv3'}"])
def test_set_can_switch_a_components_type(override):
    cfg = compose_config("pendulum_mbpo", sets=[override])
    assert cfg.world_model.type == "dreamerv3" and "ensemble_size" not in cfg.world_model
    assert cfg.world_model.rollout_length_scheduler.rollout_length == 15  # the new type's defaults


def test_set_of_the_same_type_still_merges():
    cfg = compose_config("pendulum_mbpo", sets=["world_model.type=mbpo", "world_model.train_freq=500"])
    assert cfg.world_model.train_freq == 500 and cfg.world_model.rollout_batch_size == 10_000
    with pytest.raises(ConfigError, match="unknown config key 'world_model.ensemble_sise'"):
        compose_config("pendulum_mbpo", sets=["world_model.ensemble_sise=3"])


def test_a_switched_schedule_type_is_checked_before_the_run_starts():
    cfg = compose_config("pendulum_mbpo", sets=["world_model.rollout_length_scheduler.type=linear",
                                                "world_model.rollout_length_scheduler.rollout_length_max=5"])
    assert cfg.world_model.rollout_length_scheduler == {"type": "linear", "rollout_length_max": 5}
    with pytest.raises(ConfigError, match="unknown config key 'world_model.rollout_length_scheduler.rollout_length';"
                                          " did you mean 'rollout_length_min'"):
        compose_config("pendulum_mbpo", sets=["world_model.rollout_length_scheduler.type=linear",
                                              "world_model.rollout_length_scheduler.rollout_length=5"])


def test_plugin_files_resolve_from_the_config_file_and_are_stored_absolute(tmp_path, monkeypatch, capsys):
    project = tmp_path / "project"
    project.mkdir()
    (project / "my_policy.py").write_text(
        "from policies.sac import SACPolicy\nfrom registry import POLICY_REGISTRY\n"
        "POLICY_REGISTRY.register('sac_from_file', force=True)(type('SacFromFile', (SACPolicy,), {}))\n")
    (project / "my_config.py").write_text(
        "config = dict(exp_name='mine', env_steps=200, env=dict(id='Pendulum-v1'),\n"
        "    collector=dict(warmup_steps=100), policy=dict(type='sac_from_file', hidden_sizes=[16, 16],\n"
        "    import_names=['my_policy.py']), learner=dict(batch_size=16),\n"
        "    evaluator=dict(eval_freq=100, n_episodes=1))\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["train", str(project / "my_config.py"), "--no-progress", "--out", str(tmp_path / "runs")]) == 0
    run_dir = next((tmp_path / "runs" / "mine").iterdir())
    assert str(project / "my_policy.py") in (run_dir / "config.json").read_text()
    monkeypatch.chdir(tmp_path)
    assert main(["eval", str(run_dir), "--episodes", "1", "--trust-plugins"]) == 0
    capsys.readouterr()
    err = one_line_error(["config", "pendulum_sac", "--set", "policy.import_names=['missing.py']"], capsys)
    assert f"looked for '{tmp_path / 'missing.py'}'" in err


def test_max_episode_steps_shortens_an_env_but_never_lengthens_it():
    from wm_envs.make import make_env

    for limit, expected in ((100, 50), (20, 20)):
        env = make_env({"id": "Reacher-v5", "max_episode_steps": limit})
        env.reset(seed=0)
        steps, done = 0, False
        while not done:
            _, _, terminated, truncated, _ = env.step(env.action_space.sample())
            steps, done = steps + 1, terminated or truncated
        assert steps == expected


def test_a_policy_names_its_own_type_when_the_action_space_does_not_fit(capsys):
    err = one_line_error(["train", "pendulum_steve", "--preset", "debug", "--set", "env.id=Acrobot-v1"], capsys)
    assert "policy 'mbsac' needs a 1-D continuous (Box) action space" in err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == "worldmodels 0.1.0"
