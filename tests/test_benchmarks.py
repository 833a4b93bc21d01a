"""The benchmark scripts run end to end on debug presets and print what they measured."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import mutation  # noqa: E402
import throughput  # noqa: E402


@pytest.mark.parametrize("config", ["pendulum_sac", "cartpole_dreamerv3"])
def test_throughput_script_reports_figures(config, capsys):
    assert throughput.main([config, "--preset", "debug", "--env-steps", "300"]) == 0
    out = capsys.readouterr().out
    assert "env steps/s (after warm-up)" in out and "where the time went" in out
    if config == "cartpole_dreamerv3":
        assert "world_model_steps_per_s" in out and "imagined_steps_per_s" in out


def test_mutation_list_matches_the_code():
    """Every mutation's original snippet is in its file exactly once (the list follows the code),
    and the list spans the core modules; running the mutations is for the script, not the suite."""
    mutation.check_all()
    assert len(mutation.MUTATIONS) >= 30
    core = {"worldmodels/base.py", "worldmodels/schedules.py", "worldmodels/mbpo.py", "worldmodels/rssm.py",
            "worldmodels/dreamerv3.py", "worldmodels/steve.py", "worldmodels/config.py", "policies/dreamer.py",
            "policies/sac.py", "workers/buffer.py", "registry/registry.py", "policies/planners.py",
            "worldmodels/latent.py", "worldmodels/dmc.py", "workers/checkpoint.py"}
    assert core <= {m.path for m in mutation.MUTATIONS}
    moved = mutation.Mutation("moved", "worldmodels/steve.py", "no such line", "x", "a snippet that moved",
                              ("tests/worldmodels/test_steve.py",))
    with pytest.raises(ValueError, match="'moved': the original snippet is not in worldmodels/steve.py"):
        mutation.check_all((moved,))


def test_planning_script_reports_the_cost_of_a_call(capsys):
    import planning

    assert planning.main(["pendulum_pets", "--preset", "debug", "--calls", "3"]) == 0
    out = capsys.readouterr().out
    assert "ms per planning call: median" in out and "matmul share of the profiled time" in out
