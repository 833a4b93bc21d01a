"""Small gymnasium envs that misbehave on purpose, shared by the fault tests (a compare test's
config file imports them in its worker processes too)."""
import gymnasium as gym
import numpy as np


class BadEnv(gym.Env):
    """A 1-D env that misbehaves at step ``bad_step``: NaN observation, huge reward or an exception."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, mode="nan", bad_step=50):
        self.mode, self.bad_step, self.t = mode, bad_step, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        obs, reward = np.full(2, 0.1 * self.t, np.float32), 0.0
        if self.t >= self.bad_step:
            if self.mode == "nan":
                obs[0] = np.nan
            elif self.mode == "raise":
                raise RuntimeError("simulator exploded")
            elif self.mode == "huge_reward":
                reward = 3e38
        return obs, reward, False, self.t >= 100, {}
