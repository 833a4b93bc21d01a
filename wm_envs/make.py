"""Environment construction from config: gymnasium ids, registered wrappers, vector envs."""
from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from registry import ENV_REGISTRY, RegistryError, closest_match
from wm_core.config import ConfigError
from wm_envs.dmc import is_dmc_id, make_dmc, parse_dmc_id, route_mujoco_warnings
from wm_envs.termination import env_name as env_base_name  # noqa: F401  (also registers the functions)
from wm_envs.wrappers import ActionRepeat

VECTOR_MODES = ("sync", "async")


class EnvError(RuntimeError):
    """An env raised in ``step`` or returned a non-finite observation or reward."""


def check_finite(env_id: str, where: str, **values: Any) -> None:
    """Raise EnvError naming the env, ``where`` and the first non-finite value among ``values``."""
    for name, value in values.items():
        if value is None:
            continue
        array = np.asarray(value)
        if array.dtype == object:  # per-env final observations, None where an env did not finish
            array = np.stack([v for v in array if v is not None]) if any(v is not None for v in array) else None
            if array is None:
                continue
        if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
            raise EnvError(f"env '{env_id}' returned a non-finite {name.replace('_', ' ')} {where}")


def check_env_id(env_id: Any) -> str:
    """Raise a ConfigError naming close ids when ``env_id`` is neither a registered gymnasium id
    nor a DeepMind Control Suite task (``dm_control/<domain>-<task>-v0``)."""
    if not isinstance(env_id, str) or not env_id:
        raise ConfigError(f"env.id must be a gymnasium environment id such as 'Pendulum-v1', got {env_id!r}")
    if is_dmc_id(env_id):
        parse_dmc_id(env_id)
        return env_id
    if env_id not in gym.registry:
        hint = closest_match(env_id, gym.registry.keys())
        hint_text = f"; did you mean '{hint}'?" if hint else ""
        raise ConfigError(f"unknown env.id {env_id!r}{hint_text} (any gymnasium id is valid)")
    return env_id


def _wrapper_specs(wrappers: Any) -> list[tuple[str, dict]]:
    specs = []
    for item in wrappers or []:
        if isinstance(item, str):
            specs.append((item, {}))
        elif isinstance(item, Mapping) and "type" in item:
            specs.append((item["type"], {k: v for k, v in item.items() if k != "type"}))
        else:
            raise ConfigError(f"env.wrappers entries are names or dicts with a 'type', got {item!r}")
    return specs


def action_repeat(env_cfg: Mapping) -> int:
    """Control steps per agent step (``env.action_repeat``, default 1)."""
    return int(env_cfg.get("action_repeat") or 1)


def _capped_limit(env_id: str, limit: int) -> int:
    """``env.max_episode_steps`` shortens an env's own time limit, never lengthens it (a debug
    preset's limit must not stretch a short task)."""
    if is_dmc_id(env_id):
        return limit
    registered = gym.spec(env_id).max_episode_steps
    return min(limit, registered) if registered else limit


def make_env(env_cfg: Mapping, render_mode: str | None = None) -> gym.Env:
    """One gymnasium env from an ``env`` config section (id, kwargs, max_episode_steps,
    action_repeat, wrappers)."""
    env_id = check_env_id(env_cfg["id"])
    kwargs = dict(env_cfg.get("kwargs") or {})
    if env_cfg.get("max_episode_steps"):
        kwargs["max_episode_steps"] = _capped_limit(env_id, int(env_cfg["max_episode_steps"]))
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    repeat = action_repeat(env_cfg)
    route_mujoco_warnings()
    if is_dmc_id(env_id):  # repeats inside the env: a pixel observation is rendered once per agent step
        return _wrap(make_dmc(env_id, action_repeat=repeat, **kwargs), env_cfg)
    try:
        env = gym.make(env_id, **kwargs)
    except TypeError as err:
        raise ConfigError(f"env.kwargs {dict(env_cfg.get('kwargs') or {})} not accepted by '{env_id}': {err}") from None
    return _wrap(ActionRepeat(env, repeat) if repeat > 1 else env, env_cfg)


def _wrap(env: gym.Env, env_cfg: Mapping) -> gym.Env:
    """``env`` inside the config's registered wrappers, first listed innermost."""
    for name, options in _wrapper_specs(env_cfg.get("wrappers")):
        try:
            wrapper = ENV_REGISTRY.get(name)
        except RegistryError as err:
            raise ConfigError(f"env.wrappers: {err}") from None
        env = wrapper(env, **options)
    return env


class EpisodeRecorder(gym.Wrapper):
    """Records what replays the current episode exactly: its reset seed (or the env's
    RNG state before the reset) and the actions taken since.

    ``restore_episode`` brings a fresh copy of the env to the same state, which
    lets a run resume mid-episode without pickling simulator internals.
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._episode: dict[str, Any] = {"seed": None, "rng_state": None, "options": None, "actions": []}
        self.pending_episode: dict | None = None

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        rng_state = None if seed is not None else copy.deepcopy(self.unwrapped.np_random.bit_generator.state)
        self._episode = {"seed": seed, "rng_state": rng_state, "options": options, "actions": []}
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any) -> tuple:
        self._episode["actions"].append(np.array(action, copy=True))
        return self.env.step(action)

    def episode_state(self) -> dict:
        """The current episode's seed or RNG state, and its actions stacked ``[T, ...]``."""
        state = dict(self._episode)
        state["actions"] = np.stack(state["actions"]) if state["actions"] else np.zeros((0,))
        return state

    def restore_pending(self) -> Any:
        """Replay ``pending_episode`` (set through ``set_attr``); returns the current observation."""
        state, self.pending_episode = self.pending_episode, None
        if state["seed"] is not None:
            obs, _ = self.reset(seed=int(state["seed"]), options=state["options"])
        else:
            self.unwrapped.np_random.bit_generator.state = state["rng_state"]
            obs, _ = self.reset(options=state["options"])
        for action in state["actions"]:
            obs, *_ = self.step(action)
        return obs


def make_vector_env(env_cfg: Mapping, num_envs: int, mode: str = "sync") -> gym.vector.VectorEnv:
    """``num_envs`` copies of the env; a finished episode resets in the same step and its
    final observation is in ``info['final_obs']``.
    """
    if mode not in VECTOR_MODES:
        raise ConfigError(f"collector.vector must be one of {', '.join(VECTOR_MODES)}, got {mode!r}")
    if num_envs < 1:
        raise ConfigError(f"collector.env_num must be >= 1, got {num_envs}")
    check_env_id(env_cfg["id"])
    factories = [lambda: EpisodeRecorder(make_env(env_cfg)) for _ in range(num_envs)]
    vector_cls = gym.vector.SyncVectorEnv if mode == "sync" else gym.vector.AsyncVectorEnv
    return vector_cls(factories, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)

