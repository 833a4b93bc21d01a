"""The benchmark scripts run end to end on debug presets and print what they measured."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import throughput  # noqa: E402


@pytest.mark.parametrize("config", ["pendulum_sac", "cartpole_dreamerv3"])
def test_throughput_script_reports_figures(config, capsys):
    assert throughput.main([config, "--preset", "debug", "--env-steps", "300"]) == 0
    out = capsys.readouterr().out
    assert "env steps/s (after warm-up)" in out and "where the time went" in out
    if config == "cartpole_dreamerv3":
        assert "world_model_steps_per_s" in out and "imagined_steps_per_s" in out
