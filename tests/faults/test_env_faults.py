"""An env that fails mid-run: the message says truthfully whether a checkpoint exists and
where, and a bad observation from reset is reported as reset."""
import gymnasium as gym
import numpy as np
import pytest

from wm_app.cli import main
from workers.checkpoint import load_latest_checkpoint


class FaultyPendulum(gym.Wrapper):
    """Pendulum that returns a NaN reward at its ``fail_at``-th step (counted over all episodes),
    or an inf observation from the reset of its ``bad_reset``-th episode."""

    def __init__(self, fail_at=10**9, bad_reset=10**9):
        super().__init__(gym.make("Pendulum-v1", max_episode_steps=50))
        self.fail_at, self.bad_reset, self.steps, self.resets = fail_at, bad_reset, 0, 0

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.resets += 1
        return (np.full_like(obs, np.inf) if self.resets == self.bad_reset else obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        return obs, (float("nan") if self.steps == self.fail_at else reward), terminated, truncated, info


for name, kwargs in {"FaultyReward-v0": {"fail_at": 150}, "FaultyReset-v0": {"bad_reset": 2}}.items():
    if name not in gym.registry:
        gym.register(name, entry_point=FaultyPendulum, kwargs=kwargs)


def train(tmp_path, env_id, *sets):
    argv = ["train", "pendulum_sac", "--preset", "debug", "--no-progress", "--out", str(tmp_path),
            "--set", f"env.id={env_id}", "--set", "evaluator.eval_freq=10000"]
    for item in sets:
        argv += ["--set", item]
    return main(argv)


def test_a_failure_before_any_checkpoint_says_there_is_none(tmp_path, capsys):
    assert train(tmp_path, "FaultyReward-v0") == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "non-finite reward at env step 149" in err
    assert "no checkpoint was written before the failure" in err


def test_a_failure_after_a_checkpoint_names_its_step_and_it_resumes(tmp_path, capsys):
    assert train(tmp_path, "FaultyReward-v0", "checkpoint_every=100") == 1
    err = capsys.readouterr().err
    assert "its checkpoint at env step 100 can be resumed with --resume" in err
    run_dir = next((tmp_path / "pendulum_sac").iterdir())
    state, _ = load_latest_checkpoint(run_dir)
    assert state["env_step"] == 100


def test_an_inf_observation_from_an_evaluation_reset_is_reported_as_reset(tmp_path, capsys):
    assert train(tmp_path, "FaultyReset-v0", "evaluator.n_episodes=2") == 1
    err = capsys.readouterr().err
    assert "non-finite observation at the reset of an evaluation episode" in err


@pytest.mark.parametrize("env_id", ["FaultyReward-v0"])
def test_the_message_is_true_about_resume(env_id, tmp_path, capsys):
    assert train(tmp_path, env_id) == 1
    capsys.readouterr()
    run_dir = next((tmp_path / "pendulum_sac").iterdir())
    assert main(["train", "--resume", str(run_dir), "--no-progress"]) == 2
    assert "no checkpoint found" in capsys.readouterr().err
