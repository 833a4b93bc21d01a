"""Env wrappers registered in ENV_REGISTRY (used through ``env.wrappers`` in a config)."""
from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
from PIL import Image

from registry import ENV_REGISTRY
from wm_core.config import ConfigError


@ENV_REGISTRY.register("pixels")
class PixelObservation(gym.ObservationWrapper):
    """Replaces the observation with the env's rendered frame, resized to ``size x size`` uint8 RGB.

    The env must be made with ``render_mode='rgb_array'`` (``env.kwargs.render_mode``).
    Classic-control envs draw with pygame, which runs headless here (SDL's dummy video driver).

    Args:
        env: the env to observe through its frames.
        size: side of the square frame (64 for DreamerV3's CNN).
        grayscale: one luminance channel instead of three.

    Shapes:
        observation [size, size, 3] (or [size, size, 1]) uint8
    """

    def __init__(self, env: gym.Env, size: int = 64, grayscale: bool = False) -> None:
        if env.render_mode != "rgb_array":
            raise ConfigError(f"env wrapper 'pixels' needs env.kwargs.render_mode='rgb_array', "
                              f"got render_mode={env.render_mode!r}")
        if int(size) < 1:
            raise ConfigError(f"env wrapper 'pixels': size must be >= 1, got {size}")
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # no display needed to render
        super().__init__(env)
        self.size = int(size)
        self.grayscale = bool(grayscale)
        channels = 1 if grayscale else 3
        self.observation_space = gym.spaces.Box(0, 255, (self.size, self.size, channels), np.uint8)

    def observation(self, observation: Any) -> np.ndarray:
        frame = self.env.render()
        image = Image.fromarray(np.asarray(frame, dtype=np.uint8))
        if self.grayscale:
            image = image.convert("L")
        image = image.resize((self.size, self.size), Image.Resampling.BILINEAR, reducing_gap=2.0)
        pixels = np.array(image, dtype=np.uint8)  # a writable copy (PIL arrays are read-only)
        return pixels[..., None] if self.grayscale else pixels


class ActionRepeat(gym.Wrapper):
    """Applies each action for ``repeat`` env steps and returns the summed reward
    (``env.action_repeat`` in a config). The episode's end stops the repeat early.

    Args:
        env: the env to step.
        repeat: env steps per agent step (>= 1).
    """

    def __init__(self, env: gym.Env, repeat: int) -> None:
        if int(repeat) < 1:
            raise ConfigError(f"env.action_repeat must be >= 1, got {repeat}")
        super().__init__(env)
        self.repeat = int(repeat)

    def step(self, action: Any) -> tuple:
        total = 0.0
        for _ in range(self.repeat):
            observation, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        return observation, total, terminated, truncated, info
