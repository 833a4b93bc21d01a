"""A trained agent loaded from a run directory, stepped outside the pipeline on raw observations."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from registry import require_trust
from wm_core.utils import as_tensor
from wm_envs.make import make_env
from workers.checkpoint import check_identity, misfit_error, read_run_config, upgrade_config
from workers.run_config import build_components, resolve_config


class Agent:
    """A policy (and its world model) restored from a run, acting deterministically.

    ``act`` takes one observation ``[*obs_shape]`` (or a batch ``[B, *obs_shape]``)
    as numpy and returns the env-ready action; a recurrent policy carries its
    state between calls until ``reset``.

    Example::

        agent = load_agent("runs/pendulum_sac/20261127-120000_s0")
        obs, _ = env.reset(seed=0)
        agent.reset()
        while True:
            obs, reward, terminated, truncated, _ = env.step(agent.act(obs))
            if terminated or truncated:
                break
    """

    def __init__(self, policy: Any, world_model: Any, config: dict) -> None:
        self.policy = policy
        self.world_model = world_model
        self.config = config
        self.reset()

    def reset(self) -> None:
        """Forget the recurrent state: call at the start of every episode."""
        self.policy.reset(evaluation=True)

    def act(self, obs: Any) -> np.ndarray:
        obs = np.asarray(obs)
        single = obs.shape == tuple(self.policy.observation_space.shape)
        batch = as_tensor(obs[None] if single else obs, self.policy.device)
        action = self.policy.act(batch).cpu().numpy()
        return action[0] if single else action


def load_agent(run_dir: str | Path, device: str = "cpu", trust_plugins: bool = False) -> Agent:
    """Rebuild the policy and world model of ``run_dir`` from its config and newest checkpoint.

    Args:
        trust_plugins: import the plugin code the run's config names; without it a run
            that names plugins is refused (a run directory from elsewhere runs no code).

    Raises:
        CheckpointError: ``run_dir`` is not a run directory or holds no loadable checkpoint.
        UntrustedPluginError: the run names plugin code and ``trust_plugins`` is False.
    """
    from workers.checkpoint import load_latest_checkpoint

    run_dir = Path(run_dir)
    run_config = read_run_config(run_dir)
    state, path = load_latest_checkpoint(run_dir)
    raw = json.loads(state["config"])
    require_trust(raw, f"the run in '{run_dir}'", trust_plugins)
    check_identity(state, path, run_config)
    upgrade_config(raw)
    for section in ("policy", "world_model"):
        if raw.get(section) is not None:
            raw[section]["device"] = device
    cfg = resolve_config(raw)
    env = make_env(cfg.env)
    try:
        world_model, policy = build_components(cfg, env)
    finally:
        env.close()
    try:
        if world_model is not None:
            world_model.load_state_dict(state["world_model"])
        policy.load_state_dict(state["policy"])
    except (KeyError, RuntimeError, ValueError, TypeError) as err:  # shapes or contents that do not fit
        raise misfit_error(path, err) from None
    return Agent(policy, world_model, cfg)
