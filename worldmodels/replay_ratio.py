"""Training on replayed sequences at a replay ratio: what ``dreamerv3`` and ``latent`` share."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from wm_core.utils import check_fraction, owed_updates


class ReplayRatioTraining:
    """Mixin for a world model that trains ``replay_ratio`` gradient steps per env step on
    sampled sequences, after ``learning_starts`` env steps and ``pretrain_steps`` steps at its
    first training (config keys of the model), with owed fractions carried over.

    The model defines ``sequence_length`` (steps per sampled sequence) and calls
    ``init_replay_ratio()`` in its constructor; the mixin adds the schedule and the pending
    metric sums to the model's ``state_dict`` (it comes first in the bases), so a resumed run
    owes the same steps.
    """

    config: ClassVar[dict] = {
        "replay_ratio": 1.0,  # gradient steps per env step
        "learning_starts": 1000,  # env steps collected before the first training
        "pretrain_steps": 100,  # gradient steps at the first training
        "log_every": 100,  # gradient steps between two returned metric means
        "train_freq": 1,  # ``train`` is asked every env step and does the owed gradient steps
        "eval_freq": 10**9,
    }
    cfg: Any
    sequence_length: int

    def init_replay_ratio(self) -> None:
        self.trained_envstep: int | None = None  # env step of the latest train() call
        self.update_debt = 0.0
        self.gradient_steps = 0
        self._metric_sums: dict[str, float] = {}
        self._metric_count = 0

    def should_train(self, envstep: int) -> bool:
        """True at every env step from ``learning_starts`` on; ``train`` does the owed steps."""
        if envstep < self.cfg.learning_starts:
            return False
        self.last_train_envstep = envstep
        return True

    def owed_steps(self, envstep: int) -> int:
        """Gradient steps owed at ``envstep``: ``pretrain_steps`` the first time, then
        ``replay_ratio`` per env step since the previous call (fractions carry over)."""
        if self.trained_envstep is None:
            count = int(self.cfg.pretrain_steps)
        else:
            count, self.update_debt = owed_updates(self.update_debt, envstep - self.trained_envstep,
                                                   float(self.cfg.replay_ratio))
        self.trained_envstep = envstep
        return count

    def ready(self, env_buffer: Any) -> bool:
        """Whether ``env_buffer`` holds a full sequence per env slot."""
        width = getattr(env_buffer, "row_width", 1) or 1
        return width > 0 and len(env_buffer) >= self.sequence_length * width

    def sample_batch(self, env_buffer: Any) -> dict:
        """One training batch from ``env_buffer`` (the model's own sampling)."""
        raise NotImplementedError

    def train_step(self, batch: Mapping) -> dict[str, float]:
        """One gradient step on ``batch``; returns its metrics."""
        raise NotImplementedError

    def train(self, env_buffer: Any, envstep: int, train_iter: int) -> dict[str, float]:
        """The owed gradient steps on batches from ``env_buffer``; metric means every
        ``log_every`` gradient steps (else an empty dict)."""
        if not self.ready(env_buffer):
            return {}
        for _ in range(self.owed_steps(envstep)):
            self._accumulate(self.train_step(self.sample_batch(env_buffer)))
        if self._metric_count >= self.cfg.log_every:
            return self._pop_metrics()
        return {}

    def _accumulate(self, metrics: Mapping[str, float]) -> None:
        for key, value in metrics.items():
            self._metric_sums[key] = self._metric_sums.get(key, 0.0) + value
        self._metric_count += 1

    def _pop_metrics(self) -> dict[str, float]:
        means = {key: value / self._metric_count for key, value in self._metric_sums.items()}
        means["gradient_steps"] = float(self.gradient_steps)
        self._metric_sums, self._metric_count = {}, 0
        return means

    def state_dict(self) -> dict:
        """The model's state plus the schedule and the pending metric sums (plain values)."""
        return {**super().state_dict(), "trained_envstep": -1 if self.trained_envstep is None else self.trained_envstep,
                "update_debt": self.update_debt, "gradient_steps": self.gradient_steps,
                "metric_sums": dict(self._metric_sums), "metric_count": self._metric_count}

    def load_state_dict(self, state: Mapping) -> None:
        super().load_state_dict(state)
        trained = int(state["trained_envstep"])
        self.trained_envstep = None if trained < 0 else trained
        self.update_debt = check_fraction("world model update_debt", state["update_debt"])
        self.gradient_steps = int(state["gradient_steps"])
        self._metric_sums = dict(state.get("metric_sums", {}))
        self._metric_count = int(state.get("metric_count", 0))
