import numpy as np
import pytest
import torch

from wm_app.agent import load_agent
from wm_app.cli import main
from wm_app.experiment import compose_config
from wm_envs.make import make_env
from workers.checkpoint import CheckpointError
from workers.pipeline import SerialPipeline


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    pipeline = SerialPipeline(compose_config("pendulum_sac", "debug"), out_dir=out, show_progress=False)
    return pipeline, pipeline.run()["run_dir"]


def test_loaded_agent_acts_like_the_trained_policy(trained):
    pipeline, run_dir = trained
    agent = load_agent(run_dir)
    obs = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    expected = pipeline.policy.act(torch.as_tensor(obs)).numpy()
    assert np.array_equal(agent.act(obs), expected)
    single = pipeline.policy.act(torch.as_tensor(obs[:1])).numpy()[0]
    assert agent.act(obs[0]).shape == (1,) and np.array_equal(agent.act(obs[0]), single)


def test_agent_steps_an_env_outside_the_pipeline(trained):
    agent = load_agent(trained[1])
    env = make_env(agent.config.env)
    obs, _ = env.reset(seed=0)
    agent.reset()
    for _ in range(10):
        obs, reward, terminated, truncated, _ = env.step(agent.act(obs))
        assert env.action_space.contains(agent.act(obs)) and np.isfinite(reward)


def test_eval_command_prints_returns_and_writes_a_gif(trained, tmp_path, capsys):
    assert main(["eval", trained[1], "--episodes", "2", "--video", str(tmp_path / "episode.gif")]) == 0
    out = capsys.readouterr().out
    assert "eval return" in out and "over 2 episodes" in out and "200 frames" in out
    assert (tmp_path / "episode.gif").read_bytes()[:6] == b"GIF89a"


def test_load_agent_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not a run directory"):
        load_agent(tmp_path)


@pytest.fixture(scope="module")
def dream_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("dream_runs")
    runs = {}
    for name in ("pendulum_pixels_dreamerv3", "pendulum_dreamerv3"):
        cfg = compose_config(name, "debug", env_steps=120)
        runs[name] = SerialPipeline(cfg, out_dir=out, show_progress=False).run()["run_dir"]
    return runs


def test_eval_dream_writes_real_beside_imagined_frames(dream_runs, tmp_path, capsys):
    from PIL import Image

    path = tmp_path / "dream.gif"
    assert main(["eval", dream_runs["pendulum_pixels_dreamerv3"], "--episodes", "1", "--dream", str(path)]) == 0
    assert "dream:" in capsys.readouterr().out
    gif = Image.open(path)
    assert gif.n_frames == 50 and gif.size == (2 * 4 * 64 + 4, 4 * 64 + 6)
    gif.seek(0)
    first = np.asarray(gif.convert("RGB"))
    gif.seek(10)
    later = np.asarray(gif.convert("RGB"))
    assert tuple(first[1, -1]) == (40, 170, 60) and tuple(later[1, -1]) == (200, 40, 40)  # seeing, then imagining


def test_eval_dream_plots_vector_observations(dream_runs, tmp_path, capsys):
    path = tmp_path / "dream.png"
    assert main(["eval", dream_runs["pendulum_dreamerv3"], "--episodes", "1", "--dream", str(path)]) == 0
    assert "imagined steps off by" in capsys.readouterr().out
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_dream_errors_name_the_problem(trained, dream_runs, tmp_path, capsys):
    assert main(["eval", trained[1], "--dream", str(tmp_path / "d.gif")]) == 2
    assert "--dream needs a run with a Dream world model" in capsys.readouterr().err
    assert main(["eval", dream_runs["pendulum_pixels_dreamerv3"], "--dream", str(tmp_path / "d.png")]) == 2
    assert "give a path ending in .gif" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_dream_of_an_episode_shorter_than_the_context_says_so(dream_runs, tmp_path):
    from wm_app.cli import write_dream

    model = load_agent(dream_runs["pendulum_dreamerv3"]).world_model
    obs = np.random.default_rng(0).normal(size=(3, 3)).astype(np.float32)
    message = write_dream(model, {"obs": list(obs), "action": [np.zeros(1, np.float32)] * 2}, str(tmp_path / "d.png"))
    assert "no imagined steps" in message and (tmp_path / "d.png").is_file()
