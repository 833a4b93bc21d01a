import pytest

from registry import SCHEDULE_REGISTRY
from wm_core.config import ConfigError


def test_linear_schedule_endpoints_and_middle():
    schedule = SCHEDULE_REGISTRY.build(dict(type="linear", rollout_start_step=20_000, rollout_end_step=100_000,
                                            rollout_length_min=1, rollout_length_max=15))
    assert schedule(0) == 1 and schedule(20_000) == 1
    assert schedule(60_000) == 8
    # between whole lengths the length is floored: 1 + 14 * 5/80 = 1.875, 1 + 14 * 30/80 = 6.25, 14.9998
    assert schedule(25_000) == 1 and schedule(50_000) == 6 and schedule(99_999) == 14
    assert schedule(100_000) == 15 and schedule(1_000_000) == 15
    lengths = [schedule(s) for s in range(0, 120_000, 1000)]
    assert lengths == sorted(lengths)


def test_constant_schedule():
    schedule = SCHEDULE_REGISTRY.build(dict(type="constant", rollout_length=5))
    assert schedule(0) == 5 and schedule(10**6) == 5


@pytest.mark.parametrize("cfg, message", [
    (dict(type="linear", rollout_start_step=10, rollout_end_step=10),
     "rollout_end_step must be greater than rollout_start_step, got 10 <= 10"),
    (dict(type="linear", rollout_length_min=5, rollout_length_max=2),
     "need 1 <= rollout_length_min <= rollout_length_max, got 5 and 2"),
    (dict(type="linear", rollout_length_min=0), "need 1 <= rollout_length_min"),
    (dict(type="constant", rollout_length=-1), "rollout_length_scheduler.rollout_length must be >= 0, got -1"),
    (dict(type="constant", length=3), "unknown config key 'world_model.rollout_length_scheduler.length'"),
])
def test_bad_schedule_configs(cfg, message):
    with pytest.raises(ConfigError, match=message):
        SCHEDULE_REGISTRY.build(cfg)
