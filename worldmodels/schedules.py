"""Rollout-length schedules: env step -> rollout length."""
from __future__ import annotations

from collections.abc import Mapping

from registry import SCHEDULE_REGISTRY
from wm_core.config import ConfigError, Configurable

SECTION = "world_model.rollout_length_scheduler"  # where a schedule's config sits; errors name its keys so


class Schedule(Configurable):
    """Maps an env-step count to an integer (a rollout length)."""

    config = dict(type=None, import_names=[])

    def __init__(self, cfg: Mapping | None = None) -> None:
        self.cfg = self.merge_config(cfg, prefix=SECTION)

    def __call__(self, envstep: int) -> int:
        raise NotImplementedError


@SCHEDULE_REGISTRY.register("constant")
class ConstantSchedule(Schedule):
    """The same rollout length at every env step (0: no imagined rollouts, e.g. a model used
    only by a planner)."""

    config = dict(type="constant", rollout_length=1)

    def __init__(self, cfg: Mapping | None = None) -> None:
        super().__init__(cfg)
        if self.cfg.rollout_length < 0:
            raise ConfigError(f"{SECTION}.rollout_length must be >= 0, got {self.cfg.rollout_length}")

    def __call__(self, envstep: int) -> int:
        return int(self.cfg.rollout_length)


@SCHEDULE_REGISTRY.register("linear")
class LinearSchedule(Schedule):
    """Rollout length rising linearly from min to max between two env steps (MBPO)."""

    config = dict(
        type="linear",
        rollout_start_step=20_000,  # env step where the length starts to grow
        rollout_end_step=100_000,  # env step where it reaches the maximum
        rollout_length_min=1,
        rollout_length_max=15,
    )

    def __init__(self, cfg: Mapping | None = None) -> None:
        super().__init__(cfg)
        c = self.cfg
        if c.rollout_end_step <= c.rollout_start_step:
            raise ConfigError(f"{SECTION}: rollout_end_step must be greater than "
                              f"rollout_start_step, got {c.rollout_end_step} <= {c.rollout_start_step}")
        if not 1 <= c.rollout_length_min <= c.rollout_length_max:
            raise ConfigError(f"{SECTION}: need 1 <= rollout_length_min <= rollout_length_max, "
                              f"got {c.rollout_length_min} and {c.rollout_length_max}")

    def __call__(self, envstep: int) -> int:
        c = self.cfg
        fraction = (envstep - c.rollout_start_step) / (c.rollout_end_step - c.rollout_start_step)
        fraction = min(max(fraction, 0.0), 1.0)
        length = c.rollout_length_min + fraction * (c.rollout_length_max - c.rollout_length_min)
        return int(length)
