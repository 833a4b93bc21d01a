"""Learner: runs policy updates at the ratio the config sets."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from wm_core.utils import check_fraction, owed_updates


class Learner:
    """Policy updates: ``updates_per_step`` per env step (fractions carry over), once
    the collector's warm-up is over. The data of each update comes from the world
    model (``policy_input``) or, without one, from the env buffer.
    """

    def __init__(self, cfg: Mapping, policy: Any, world_model: Any, env_buffer: Any, logger: Any, *,
                 start_step: int) -> None:
        self.cfg = cfg
        self.policy = policy
        self.world_model = world_model
        self.env_buffer = env_buffer
        self.logger = logger
        self.start_step = int(start_step)
        self.update_debt = 0.0
        self.train_iter = 0
        self._metrics: list[dict[str, float]] = []

    def batch(self) -> Any:
        size = int(self.cfg["batch_size"])
        if self.world_model is None:
            return self.env_buffer.sample(size, device=self.policy.device)
        return self.world_model.policy_input(self.env_buffer, self.world_model.img_buffer, size, self.train_iter)

    def train(self, envstep: int, new_steps: int) -> int:
        """Run the updates owed for ``new_steps`` new env steps; returns how many updated the policy
        (an update that returns no metrics made no change and is not counted in ``train_iter``)."""
        if envstep < self.start_step or len(self.env_buffer) < self.cfg["batch_size"]:
            return 0
        count, self.update_debt = owed_updates(self.update_debt, new_steps, float(self.cfg["updates_per_step"]))
        done = 0
        for _ in range(count):
            metrics = self.policy.learn(self.batch())
            if not metrics:  # the policy had nothing to learn from yet (no update was made)
                continue
            self._metrics.append(metrics)
            self.train_iter += 1
            done += 1
            if self.train_iter % int(self.cfg["log_every"]) == 0:
                self.flush(envstep)
        return done

    def flush(self, envstep: int) -> None:
        """Log the mean of the metrics gathered since the last flush."""
        if not self._metrics or self.logger is None:
            return
        keys = dict.fromkeys(k for m in self._metrics for k in m)  # every key of the window, first-seen order
        means = {k: float(np.mean([m[k] for m in self._metrics if k in m])) for k in keys}
        self.logger.log_scalars("policy", means, envstep)
        self._metrics = []

    def state_dict(self) -> dict:
        return {"update_debt": self.update_debt, "train_iter": self.train_iter}

    def load_state_dict(self, state: Mapping) -> None:
        """Raises ValueError for a state no run could have written (the owed fraction of an update
        is in [0, 1): a damaged value would run that many updates at once)."""
        self.update_debt = check_fraction("learner update_debt", state["update_debt"])
        self.train_iter = int(state["train_iter"])
        if self.train_iter < 0:
            raise ValueError(f"learner train_iter {self.train_iter} is negative")
