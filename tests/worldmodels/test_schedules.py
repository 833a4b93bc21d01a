import pytest

from registry import SCHEDULE_REGISTRY
from worldmodels.config import ConfigError


def test_linear_schedule_endpoints_and_middle():
    schedule = SCHEDULE_REGISTRY.build(dict(type="linear", rollout_start_step=20_000, rollout_end_step=100_000,
                                            rollout_length_min=1, rollout_length_max=15))
    assert schedule(0) == 1 and schedule(20_000) == 1
    assert schedule(60_000) == 8
    assert schedule(100_000) == 15 and schedule(1_000_000) == 15
    lengths = [schedule(s) for s in range(0, 120_000, 1000)]
    assert lengths == sorted(lengths)


def test_constant_schedule():
    schedule = SCHEDULE_REGISTRY.build(dict(type="constant", rollout_length=5))
    assert schedule(0) == 5 and schedule(10**6) == 5


@pytest.mark.parametrize("cfg", [
    dict(type="linear", rollout_start_step=10, rollout_end_step=10),
    dict(type="linear", rollout_length_min=5, rollout_length_max=2),
    dict(type="constant", rollout_length=0),
    dict(type="constant", length=3),
])
def test_bad_schedule_configs(cfg):
    with pytest.raises(ConfigError):
        SCHEDULE_REGISTRY.build(cfg)
