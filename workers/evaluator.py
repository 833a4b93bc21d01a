"""Evaluator: deterministic, seeded episodes on an env of its own."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from wm_core.guards import check_action
from wm_core.utils import as_tensor
from wm_envs.make import EnvError, check_finite, make_env


class Evaluator:
    """Runs ``n_episodes`` episodes with ``policy.act``; episode i resets with ``seed + i``.

    The same seeds are used at every evaluation, so returns are comparable
    across a run and reproducible.
    """

    def __init__(self, cfg: Mapping, env_cfg: Mapping, *, seed: int) -> None:
        self.cfg = cfg
        self.env_cfg = env_cfg
        self.n_episodes = int(cfg["n_episodes"])
        self.seed = int(seed)
        self.env = make_env(env_cfg)
        self.env_id = env_cfg["id"]

    def evaluate(self, policy: Any) -> tuple[float, float, list[float]]:
        """Mean and std of the episode returns, and the returns."""
        returns = [self.run_episode(policy, self.env, self.seed + i, env_id=self.env_id)[0]
                   for i in range(self.n_episodes)]
        return float(np.mean(returns)), float(np.std(returns)), returns

    @staticmethod
    def run_episode(policy: Any, env: Any, seed: int, frames: list | None = None, env_id: str = "env",
                    trajectory: dict | None = None) -> tuple[float, int]:
        """One deterministic episode; appends rendered frames to ``frames`` when given, and
        each observation and action (lists under ``"obs"`` and ``"action"``) to ``trajectory``.

        Raises:
            EnvError: the env raised in ``step`` or returned a non-finite value.
        """
        obs, _ = env.reset(seed=seed)
        check_finite(env_id, "at the reset of an evaluation episode", observation=obs)
        policy.reset(evaluation=True)
        total, length, done = 0.0, 0, False
        while not done:
            if frames is not None:
                frames.append(env.render())
            action = policy.act(as_tensor(obs[None], policy.device))[0].cpu().numpy()
            check_action(policy, action, f"at step {length} of an evaluation episode")
            if trajectory is not None:
                trajectory.setdefault("obs", []).append(obs)
                trajectory.setdefault("action", []).append(action)
            where = f"at step {length} of an evaluation episode"
            try:
                obs, reward, terminated, truncated, _ = env.step(action)
            except Exception as err:
                raise EnvError(f"env '{env_id}' raised in step {where}: {type(err).__name__}: {err}") from err
            check_finite(env_id, where, observation=obs, reward=reward)
            total += float(reward)
            length += 1
            done = terminated or truncated
        if trajectory is not None:
            trajectory["obs"].append(obs)  # the final observation: one more than actions
        return total, length

    def close(self) -> None:
        self.env.close()
