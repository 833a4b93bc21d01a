"""The DeepMind Control Suite as gymnasium envs, named ``dm_control/<domain>-<task>-v0``.

A thin wrapper of ``dm_control.suite`` (not a registry entry: ``make_env`` routes
the ``dm_control/`` prefix here, so nothing is added to gymnasium's global registry
and an installed third-party adapter that registers the same ids is left alone).

Conventions, as in the DreamerV3 and TD-MPC2 papers:
- observations: the task's observation dict flattened to one float32 vector, keys
  in the task's own (fixed) order, scalars as one entry each;
- actions: a float32 box with the task's bounds; values outside are clipped;
- the suite's time limit (1,000 control steps for every benchmark task) ends an
  episode as truncation, never termination: the suite has no terminal states;
- ``action_repeat`` applies one action for that many control steps and sums their
  rewards; an "env step" is one control step, so one agent step is
  ``action_repeat`` env steps;
- ``reset(seed=)`` seeds the physics' initial state through the task's random
  state, drawn from the env's ``np_random``; with no seed the next draw continues
  from it, so an episode is replayed exactly from ``np_random``'s state and its
  actions (exact resume);
- ``pixels=True`` observes ``size x size`` uint8 RGB frames from MuJoCo's
  offscreen renderer instead of the state vector.
"""
from __future__ import annotations

import ctypes.util
import logging
import os
import re
from typing import Any

import gymnasium as gym
import numpy as np

from wm_core.config import ConfigError

PREFIX = "dm_control/"
_ID_PATTERN = re.compile(r"^dm_control/(?P<domain>\w+)-(?P<task>\w+)-v0$")
# The camera the Dreamer papers observe each domain through: 0 everywhere but quadruped.
_DEFAULT_CAMERA = {"quadruped": 2}
RENDER_SIZE = (240, 320)  # height, width of render() frames (eval --video)
MUJOCO_LOGGER = logging.getLogger("worldmodels.mujoco")


def is_dmc_id(env_id: Any) -> bool:
    """Whether ``env_id`` names the DeepMind Control family (``dm_control/...``)."""
    return isinstance(env_id, str) and env_id.startswith(PREFIX)


def choose_gl_backend() -> str:
    """Pick MuJoCo's OpenGL backend before dm_control is imported, quietly.

    A user's ``MUJOCO_GL`` wins. With a display, dm_control's own choice (GLFW)
    stands. Headless, EGL (Mesa's software EGL works on a machine with no GPU),
    then OSMesa, then no renderer: dm_control would otherwise try GLFW first and
    print a missing-DISPLAY warning at every start.
    """
    if "MUJOCO_GL" in os.environ:
        return os.environ["MUJOCO_GL"]
    if os.environ.get("DISPLAY"):
        return "glfw"
    for library, backend in (("EGL", "egl"), ("OSMesa", "osmesa")):
        if ctypes.util.find_library(library):
            os.environ["MUJOCO_GL"] = backend
            return backend
    os.environ["MUJOCO_GL"] = "disable"
    return "disable"


def _mujoco_warning(message: str) -> None:
    MUJOCO_LOGGER.info("MuJoCo: %s", message.strip())


def route_mujoco_warnings() -> None:
    """Send MuJoCo's warnings (e.g. deprecated attributes of a task's XML) to the
    ``worldmodels.mujoco`` logger at INFO, instead of a MUJOCO_LOG.TXT file that MuJoCo would
    write into the current folder (or dm_control's absl warnings)."""
    try:
        import mujoco
    except ImportError:  # pragma: no cover - MuJoCo comes with gymnasium[mujoco]
        return
    mujoco.set_mju_user_warning(_mujoco_warning)


def _suite() -> Any:
    choose_gl_backend()
    try:
        from dm_control import suite
    except ImportError as err:
        raise ConfigError(f"DeepMind Control envs need the dm-control package ({err}); install "
                          "worldmodels with its constraints file: pip install -c constraints.txt -e .") from None
    route_mujoco_warnings()  # importing dm_control installed its own handler
    return suite


def task_ids() -> list[str]:
    """Every DeepMind Control Suite task as an env id, in the suite's order."""
    return [f"{PREFIX}{domain}-{task}-v0" for domain, task in _suite().ALL_TASKS]


def parse_dmc_id(env_id: str) -> tuple[str, str]:
    """``'dm_control/cartpole-swingup-v0'`` -> ``('cartpole', 'swingup')``.

    Raises:
        ConfigError: not of that form, or no such domain/task in the suite
            (naming the closest task id).
    """
    from registry import closest_match

    match = _ID_PATTERN.match(env_id)
    known = task_ids()
    if match is None or env_id not in known:
        hint = closest_match(env_id, known)
        hint_text = f"; did you mean '{hint}'?" if hint else ""
        raise ConfigError(f"unknown DeepMind Control env {env_id!r}{hint_text} (the form is "
                          f"'dm_control/<domain>-<task>-v0'; 'worldmodels list' names the domains)")
    return match["domain"], match["task"]


def domains() -> dict[str, list[str]]:
    """Each suite domain and its tasks."""
    table: dict[str, list[str]] = {}
    for domain, task in _suite().ALL_TASKS:
        table.setdefault(domain, []).append(task)
    return table


class DMCEnv(gym.Env):
    """One DeepMind Control Suite task as a gymnasium env (see the module docstring).

    Args:
        domain, task: a suite task, e.g. ``'walker', 'walk'``.
        action_repeat: control steps per agent step (rewards summed).
        pixels: observe frames instead of the state vector.
        size: side of the square pixel observation.
        camera: camera id for observations and ``render()``; default 0 (2 for quadruped).
        render_mode: ``'rgb_array'`` or None.

    Shapes:
        observation [O] float32 (pixels: [size, size, 3] uint8); action [A] float32
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, domain: str, task: str, *, action_repeat: int = 1, pixels: bool = False, size: int = 64,
                 camera: int | None = None, render_mode: str | None = None) -> None:
        if int(action_repeat) < 1:
            raise ConfigError(f"env.action_repeat must be >= 1, got {action_repeat}")
        if render_mode not in (None, "rgb_array"):
            raise ConfigError(f"DeepMind Control envs render as 'rgb_array', got render_mode={render_mode!r}")
        if pixels and int(size) < 1:
            raise ConfigError(f"DeepMind Control pixels: size must be >= 1, got {size}")
        self._env = _suite().load(domain, task, task_kwargs={"random": 0})
        self.domain, self.task = domain, task
        self.action_repeat = int(action_repeat)
        self.pixels = bool(pixels)
        self.size = int(size)
        self.camera = _DEFAULT_CAMERA.get(domain, 0) if camera is None else int(camera)
        self.render_mode = render_mode
        self.observation_keys = list(self._env.observation_spec().keys())
        self.metadata = {"render_modes": ["rgb_array"],
                         "render_fps": round(1.0 / (self._env.control_timestep() * self.action_repeat))}
        spec = self._env.action_spec()
        self.action_space = gym.spaces.Box(spec.minimum.astype(np.float32), spec.maximum.astype(np.float32),
                                           dtype=np.float32)
        if self.pixels:
            self.observation_space = gym.spaces.Box(0, 255, (self.size, self.size, 3), np.uint8)
        else:
            dims = sum(int(np.prod(s.shape)) for s in self._env.observation_spec().values())
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (dims,), np.float32)

    def _observation(self, time_step: Any) -> np.ndarray:
        if self.pixels:  # MuJoCo's frame is a flipped view (negative strides): torch needs a copy
            return np.ascontiguousarray(self._env.physics.render(self.size, self.size, camera_id=self.camera))
        parts = [np.asarray(time_step.observation[key], dtype=np.float64).ravel() for key in self.observation_keys]
        return np.concatenate(parts).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        # The task draws the initial state from its own RandomState (a private attribute
        # of dm_control's Task); seeding it from np_random makes np_random's state the
        # whole of an episode's randomness.
        self._env.task._random = np.random.RandomState(int(self.np_random.integers(2**31 - 1)))
        return self._observation(self._env.reset()), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        action = np.asarray(action, dtype=np.float64).reshape(self.action_space.shape)
        action = np.clip(action, self.action_space.low, self.action_space.high)
        reward = 0.0
        for _ in range(self.action_repeat):
            time_step = self._env.step(action)
            reward += float(time_step.reward or 0.0)
            if time_step.last():
                break
        terminated = bool(time_step.last() and time_step.discount == 0.0)
        truncated = bool(time_step.last() and not terminated)
        return self._observation(time_step), reward, terminated, truncated, {}

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            return None
        height, width = RENDER_SIZE
        return np.ascontiguousarray(self._env.physics.render(height, width, camera_id=self.camera))

    def close(self) -> None:
        self._env.close()


def make_dmc(env_id: str, **kwargs: Any) -> gym.Env:
    """The env ``env_id`` names, with gymnasium's standard checks (``gym.make`` on an unregistered spec).

    ``kwargs``: those of ``DMCEnv`` and ``max_episode_steps`` (an extra limit in agent steps).
    """
    domain, task = parse_dmc_id(env_id)
    max_episode_steps = kwargs.pop("max_episode_steps", None)
    spec = gym.envs.registration.EnvSpec(id=env_id, entry_point=DMCEnv, kwargs=dict(domain=domain, task=task),
                                         max_episode_steps=max_episode_steps, disable_env_checker=True)
    try:
        return gym.make(spec, **kwargs)
    except TypeError as err:
        raise ConfigError(f"env.kwargs {kwargs} not accepted by '{env_id}': {err}") from None
