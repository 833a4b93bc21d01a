"""Termination functions against the real gymnasium envs on sampled states."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from registry import TERMINATION_REGISTRY
from wm_envs import termination
from wm_envs.termination import termination_fn

# env id -> noise added to the initial qpos / qvel so that both healthy and
# unhealthy next states are common.
MUJOCO_CASES = {
    "InvertedPendulum-v5": 0.25,
    "InvertedDoublePendulum-v5": 0.4,
    "Hopper-v5": 0.4,
    "Walker2d-v5": 0.8,
    "HalfCheetah-v5": 0.5,
    "Ant-v5": 0.5,
}
NEVER_TERMINATES = {"HalfCheetah-v5", "Pendulum-v1"}


def sampled_transitions(env_id: str, noise: float, count: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """``count`` transitions from states near the initial one (perturbed by ``noise``) and
    from the random-action trajectories that follow them; with the env's own ``terminated``.
    """
    env = gym.make(env_id)
    rng = np.random.default_rng(seed)
    env.action_space.seed(seed)
    env.reset(seed=seed)
    sim = env.unwrapped
    obs_rows, action_rows, next_rows, flags = [], [], [], []
    for i in range(count):
        if i % 4 == 0:
            qpos = sim.init_qpos + rng.uniform(-noise, noise, sim.init_qpos.shape)
            qvel = sim.init_qvel + rng.uniform(-noise, noise, sim.init_qvel.shape)
            sim.set_state(qpos, qvel)
        obs = sim._get_obs()
        action = env.action_space.sample()
        next_obs, _, terminated, truncated, _ = env.step(action)
        obs_rows.append(obs)
        action_rows.append(action)
        next_rows.append(next_obs)
        flags.append(terminated)
        if terminated or truncated:
            env.reset()
    env.close()
    def as_tensor(rows):
        return torch.as_tensor(np.asarray(rows, dtype=np.float32))
    return as_tensor(obs_rows), as_tensor(action_rows), as_tensor(next_rows), torch.as_tensor(flags)


@pytest.mark.parametrize("env_id", sorted(MUJOCO_CASES))
def test_matches_mujoco_env(env_id: str) -> None:
    obs, action, next_obs, terminated = sampled_transitions(env_id, MUJOCO_CASES[env_id], count=400)
    fn = termination_fn(env_id)
    assert fn is not None
    done = fn(obs, action, next_obs)
    assert done.dtype == torch.bool and done.shape == terminated.shape
    assert torch.equal(done, terminated)
    if env_id not in NEVER_TERMINATES:  # the sample must exercise both outcomes
        assert 20 <= int(terminated.sum()) <= len(terminated) - 20


def test_pendulum_never_terminates() -> None:
    env = gym.make("Pendulum-v1", max_episode_steps=50)
    env.action_space.seed(0)
    obs, _ = env.reset(seed=0)
    rows = []
    for _ in range(120):
        action = env.action_space.sample()
        next_obs, _, terminated, truncated, _ = env.step(action)
        rows.append((obs, action, next_obs, terminated))
        obs = env.reset()[0] if terminated or truncated else next_obs
    obs_t, action_t, next_t = (torch.as_tensor(np.asarray([r[k] for r in rows])) for k in range(3))
    done = termination_fn("Pendulum-v1")(obs_t, action_t, next_t)
    assert not any(r[3] for r in rows)
    assert done.shape == (120,) and not bool(done.any())


def test_lookup_strips_version_and_namespace() -> None:
    assert termination_fn("Hopper-v5") is termination.hopper
    assert termination_fn("Hopper-v4") is termination.hopper
    assert termination_fn("gymnasium/Walker2d-v5") is termination.walker2d
    assert termination_fn("CartPole-v1") is termination.cart_pole
    assert termination_fn("Acrobot-v1") is None
    assert termination_fn(None) is None


def test_registered_in_the_termination_registry() -> None:
    names = TERMINATION_REGISTRY.names()
    for env in ("Pendulum", "InvertedPendulum", "InvertedDoublePendulum", "Hopper", "Walker2d", "HalfCheetah",
                "Ant"):
        assert env in names


def test_rejects_wrong_rank() -> None:
    with pytest.raises(ValueError, match="obs"):
        termination.hopper(torch.zeros(11), torch.zeros(3), torch.zeros(11))


def test_cart_pole_matches_the_env_over_random_episodes() -> None:
    env = gym.make("CartPole-v1")
    env.action_space.seed(0)
    obs, _ = env.reset(seed=0)
    rows, flags = [], []
    while len(rows) < 300:
        action = env.action_space.sample()
        next_obs, _, terminated, truncated, _ = env.step(action)
        rows.append((obs, np.eye(2)[action], next_obs))
        flags.append(terminated)
        obs = env.reset()[0] if terminated or truncated else next_obs
    columns = zip(*rows, strict=True)
    obs, action, next_obs = (torch.as_tensor(np.asarray(column, dtype=np.float32)) for column in columns)
    done = termination.cart_pole(obs, action, next_obs)
    assert 10 < sum(flags) < 290
    assert done.tolist() == flags
