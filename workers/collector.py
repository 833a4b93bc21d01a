"""SerialCollector: steps a vector env with the policy and pushes transitions to a buffer."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from wm_core.guards import check_action
from wm_core.utils import as_tensor
from wm_envs.make import EnvError, action_repeat, check_finite, make_vector_env


class SerialCollector:
    """Collects transitions from ``env_num`` copies of the env, one vector step at a time.

    The first ``warmup_steps`` env steps take uniformly random actions. A
    truncated episode's true final observation is stored as ``next_obs``. With
    ``env.action_repeat`` k, one vector step is ``env_num * k`` env steps (the
    papers' convention: env steps count control steps).
    """

    def __init__(self, cfg: Mapping, env_cfg: Mapping, policy: Any, buffer: Any, *, seed: int) -> None:
        self.cfg = cfg
        self.policy = policy
        self.buffer = buffer
        self.env_num = int(cfg["env_num"])
        self.warmup_steps = int(cfg["warmup_steps"])
        self.env_id = env_cfg["id"]
        self.steps_per_vector_step = self.env_num * action_repeat(env_cfg)
        self.envs = make_vector_env(env_cfg, self.env_num, cfg["vector"])
        self.envs.action_space.seed(seed)
        self.obs, _ = self.envs.reset(seed=[seed + i for i in range(self.env_num)])
        check_finite(self.env_id, "at the first reset", observation=self.obs)
        self.envstep = 0
        self.episode_return = np.zeros(self.env_num)
        self.episode_length = np.zeros(self.env_num, dtype=np.int64)
        self.finished_returns: list[float] = []

    def _actions(self) -> np.ndarray:
        if self.envstep < self.warmup_steps:
            return self.envs.action_space.sample()
        obs = as_tensor(self.obs, self.policy.device)
        action = self.policy.collect(obs).detach().cpu().numpy()
        check_action(self.policy, action, f"at env step {self.envstep}")
        return action

    def step(self) -> int:
        """One vector step (``env_num * action_repeat`` env steps); returns the number of env steps taken."""
        actions = self._actions()
        try:
            next_obs, reward, terminated, truncated, info = self.envs.step(actions)
        except Exception as err:
            raise EnvError(f"env '{self.env_id}' raised in step at env step {self.envstep}: "
                           f"{type(err).__name__}: {err}") from err
        check_finite(self.env_id, f"at env step {self.envstep}", observation=next_obs, reward=reward,
                     final_observation=info.get("final_obs"))
        done = terminated | truncated
        stored_next = next_obs
        if done.any() and "final_obs" in info:
            stored_next = next_obs.copy()
            for i in np.flatnonzero(info["_final_obs"]):
                stored_next[i] = info["final_obs"][i]
        self.buffer.push(self.obs, actions, reward, stored_next, terminated, truncated)
        self.episode_return += reward
        self.episode_length += 1
        if done.any():
            self.finished_returns.extend(self.episode_return[done].tolist())
            self.episode_return[done] = 0.0
            self.episode_length[done] = 0
            self.policy.reset(torch.as_tensor(done))
        self.obs = next_obs
        self.envstep += self.steps_per_vector_step
        return self.steps_per_vector_step

    def pop_episode_stats(self) -> dict[str, float]:
        """Mean return of the training episodes finished since the last call."""
        if not self.finished_returns:
            return {}
        stats = {"episode_return": float(np.mean(self.finished_returns)),
                 "episodes": float(len(self.finished_returns))}
        self.finished_returns = []
        return stats

    def state_dict(self) -> dict:
        """Counters, the current observations, the warm-up RNG and a replay of each slot's episode."""
        episodes = self.envs.call("episode_state")
        return {
            "envstep": self.envstep,
            "obs": torch.from_numpy(np.array(self.obs)),
            "episode_return": torch.from_numpy(self.episode_return.copy()),
            "episode_length": torch.from_numpy(self.episode_length.copy()),
            "finished_returns": list(self.finished_returns),
            "action_rng": self.envs.action_space.np_random.bit_generator.state,
            "episodes": [{"seed": e["seed"], "rng_state": e["rng_state"], "options": e["options"],
                          "actions": torch.from_numpy(np.asarray(e["actions"]))} for e in episodes],
        }

    def load_state_dict(self, state: Mapping) -> None:
        """Bring every env slot back to the saved mid-episode state by replaying its episode.

        Raises:
            RuntimeError: the replayed observations differ from the saved ones
                (the env is not deterministic given its seed and actions).
        """
        self.envstep = int(state["envstep"])
        self.episode_return = state["episode_return"].numpy().copy()
        self.episode_length = state["episode_length"].numpy().copy()
        self.finished_returns = list(state["finished_returns"])
        self.envs.action_space.np_random.bit_generator.state = state["action_rng"]
        episodes = [dict(e, actions=e["actions"].numpy()) for e in state["episodes"]]
        self.envs.set_attr("pending_episode", episodes)
        replayed = np.stack(self.envs.call("restore_pending"))
        saved = state["obs"].numpy()
        if not np.array_equal(replayed.astype(saved.dtype), saved):
            raise RuntimeError("resume: replaying the saved episodes did not reproduce the saved observations; "
                               "the env is not deterministic given its seed and actions")
        self.obs = saved.copy()

    def close(self) -> None:
        self.envs.close()
