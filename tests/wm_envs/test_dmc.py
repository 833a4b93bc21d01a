"""The DeepMind Control Suite envs: flattening, truncation, seeding, bounds, action repeat, pixels, CLI."""
import numpy as np
import pytest

from wm_app.cli import main
from wm_core.config import ConfigError
from wm_envs.dmc import DMCEnv, choose_gl_backend, parse_dmc_id
from wm_envs.make import make_env
from wm_envs.termination import never_done, termination_fn
from workers.buffer import ReplayBuffer
from workers.collector import SerialCollector

CARTPOLE = "dm_control/cartpole-swingup-v0"


def physics(env):
    return env.unwrapped._env.physics


def test_observation_is_the_task_observation_flattened_in_key_order():
    env = make_env({"id": "dm_control/walker-walk-v0"})
    obs, _ = env.reset(seed=3)
    obs, *_ = env.step(np.full(6, 0.3))
    assert env.unwrapped.observation_keys == ["orientations", "height", "velocity"]
    assert obs.dtype == np.float32 and obs.shape == env.observation_space.shape == (24,)
    p = physics(env)
    np.testing.assert_allclose(obs[:14], p.orientations(), rtol=1e-6)
    np.testing.assert_allclose(obs[14], p.torso_height(), rtol=1e-6)
    np.testing.assert_allclose(obs[15:], p.velocity(), rtol=1e-6, atol=1e-6)


def test_cartpole_observation_order_position_then_velocity():
    env = make_env({"id": CARTPOLE})
    obs, _ = env.reset(seed=0)
    p = physics(env)
    np.testing.assert_allclose(obs, np.concatenate([p.bounded_position(), p.velocity()]), rtol=1e-6)


@pytest.mark.parametrize("repeat,agent_steps", [(1, 1000), (2, 500), (4, 250), (3, 334)])
def test_time_limit_is_truncation_after_1000_control_steps(repeat, agent_steps):
    env = make_env({"id": CARTPOLE, "action_repeat": repeat})
    env.reset(seed=0)
    for step in range(1, agent_steps + 1):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert not terminated
        assert truncated == (step == agent_steps), f"agent step {step}"


def test_seed_sets_the_initial_state_and_reset_without_seed_continues_the_stream():
    first, second = make_env({"id": CARTPOLE}), make_env({"id": CARTPOLE})
    a0, _ = first.reset(seed=7)
    b0, _ = second.reset(seed=7)
    np.testing.assert_array_equal(a0, b0)
    np.testing.assert_array_equal(first.reset()[0], second.reset()[0])
    c0, _ = first.reset(seed=8)
    assert not np.array_equal(a0, c0)


def test_action_space_has_the_task_bounds_and_outside_values_are_clipped():
    env = make_env({"id": "dm_control/cheetah-run-v0"})
    spec = env.unwrapped._env.action_spec()
    np.testing.assert_array_equal(env.action_space.low, spec.minimum.astype(np.float32))
    np.testing.assert_array_equal(env.action_space.high, spec.maximum.astype(np.float32))
    assert env.action_space.dtype == np.float32
    clipped, inside = make_env({"id": "dm_control/cheetah-run-v0"}), make_env({"id": "dm_control/cheetah-run-v0"})
    clipped.reset(seed=1)
    inside.reset(seed=1)
    np.testing.assert_array_equal(clipped.step(np.full(6, 5.0))[0], inside.step(np.full(6, 1.0))[0])


def test_action_repeat_equals_repeated_steps_with_summed_reward():
    repeated, single = make_env({"id": CARTPOLE, "action_repeat": 3}), make_env({"id": CARTPOLE})
    repeated.reset(seed=2)
    single.reset(seed=2)
    action = np.array([0.7], dtype=np.float32)
    obs, reward, *_ = repeated.step(action)
    steps = [single.step(action) for _ in range(3)]
    np.testing.assert_array_equal(obs, steps[-1][0])
    assert reward == pytest.approx(sum(step[1] for step in steps))
    assert reward != pytest.approx(steps[-1][1])


def test_action_repeat_wraps_gymnasium_envs_too():
    repeated, single = make_env({"id": "Pendulum-v1", "action_repeat": 2}), make_env({"id": "Pendulum-v1"})
    repeated.reset(seed=0)
    single.reset(seed=0)
    obs, reward, *_ = repeated.step(np.array([0.5], dtype=np.float32))
    single.step(np.array([0.5], dtype=np.float32))
    obs_single, reward_single, *_ = single.step(np.array([0.5], dtype=np.float32))
    np.testing.assert_array_equal(obs, obs_single)
    assert reward < reward_single  # two negative Pendulum rewards summed


def test_collector_counts_control_steps():
    env_cfg = {"id": CARTPOLE, "action_repeat": 2}
    buffer = ReplayBuffer(100, (5,), (1,))
    collector = SerialCollector({"env_num": 2, "warmup_steps": 100, "vector": "sync"}, env_cfg, policy=None,
                                buffer=buffer, seed=0)
    assert collector.step() == 4
    assert collector.envstep == 4 and len(buffer) == 2


def test_pixel_observations():
    env = make_env({"id": CARTPOLE, "kwargs": {"pixels": True, "size": 32}})
    obs, _ = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape == (32, 32, 3) and obs.dtype == np.uint8
    assert obs.std() > 0  # a real frame, not a blank one


def test_headless_gl_backend_is_chosen_without_glfw(monkeypatch):
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    assert choose_gl_backend() in ("egl", "osmesa", "disable")
    monkeypatch.setenv("MUJOCO_GL", "osmesa")
    assert choose_gl_backend() == "osmesa"


def test_unknown_domain_or_task_names_the_closest_id():
    with pytest.raises(ConfigError, match=r"did you mean 'dm_control/walker-walk-v0'"):
        parse_dmc_id("dm_control/walker-wlak-v0")
    with pytest.raises(ConfigError, match=r"did you mean 'dm_control/cartpole-swingup-v0'"):
        parse_dmc_id("dm_control/cartpol-swingup-v0")
    assert parse_dmc_id("dm_control/ball_in_cup-catch-v0") == ("ball_in_cup", "catch")
    assert parse_dmc_id("dm_control/humanoid_CMU-run-v0") == ("humanoid_CMU", "run")


def test_bad_options_are_config_errors():
    with pytest.raises(ConfigError, match="action_repeat must be >= 1"):
        DMCEnv("cartpole", "swingup", action_repeat=0)
    with pytest.raises(ConfigError, match=r"env.kwargs .*not accepted"):
        make_env({"id": CARTPOLE, "kwargs": {"colour": "red"}})


def test_dmc_tasks_never_terminate_in_imagination():
    assert termination_fn(CARTPOLE) is never_done


def test_cli_typo_in_task_is_one_line(capsys):
    assert main(["train", "dmc_cartpole_swingup_sac", "--set", "env.id=dm_control/cartpole-swingpu-v0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "did you mean 'dm_control/cartpole-swingup-v0'" in err


def test_shipped_config_takes_any_dmc_task_through_set(tmp_path, capsys):
    code = main(["train", "dmc_cartpole_swingup_sac", "--preset", "debug", "--no-progress", "--out", str(tmp_path),
                 "--set", "env.id=dm_control/reacher-easy-v0", "--env-steps", "300"])
    assert code == 0
    assert "finished 300 env steps" in capsys.readouterr().out


def test_eval_video_frames_of_a_dmc_run(tmp_path, capsys):
    assert main(["train", "dmc_cartpole_swingup_sac", "--preset", "debug", "--no-progress",
                 "--out", str(tmp_path)]) == 0
    run_dir = next((tmp_path / "dmc_cartpole_swingup_sac").iterdir())
    video = tmp_path / "episode.gif"
    assert main(["eval", str(run_dir), "--episodes", "1", "--video", str(video)]) == 0
    out = capsys.readouterr().out
    assert "(100 frames)" in out or "(101 frames)" in out
    from PIL import Image

    with Image.open(video) as gif:
        assert gif.n_frames >= 100 and gif.size == (320, 240)


def test_pixel_observations_train_dreamerv3_in_a_debug_run(tmp_path, capsys):
    code = main(["train", "dmc_cartpole_swingup_dreamerv3", "--preset", "debug", "--no-progress",
                 "--out", str(tmp_path), "--env-steps", "120", "--set", "env.kwargs.pixels=True",
                 "--set", "env.max_episode_steps=20", "--set", "collector.warmup_steps=60",
                 "--set", "world_model.learning_starts=60", "--set", "world_model.cnn_depth=4",
                 "--set", "evaluator.eval_freq=1000"])
    assert code == 0
    assert "finished 120 env steps" in capsys.readouterr().out


@pytest.mark.parametrize("env_id", ["HalfCheetah-v5", "dm_control/cheetah-run-v0"])
def test_mujoco_warnings_go_to_a_logger_not_a_file_in_the_current_folder(env_id, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    with caplog.at_level("INFO", logger="worldmodels.mujoco"):
        env = make_env({"id": env_id})
        env.reset(seed=0)
        env.close()
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()
    assert any("settotalmass" in record.getMessage() for record in caplog.records)
