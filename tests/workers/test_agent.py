import numpy as np
import pytest
import torch

from workers.agent import load_agent
from workers.checkpoint import CheckpointError
from workers.pipeline import SerialPipeline
from worldmodels.cli import main
from worldmodels.envs import make_env
from worldmodels.experiment import compose_config


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
