"""Variant and grid parsing, row names and run folders (wm_app.variants); the CLI's one-line errors."""
import subprocess

import pytest

from wm_app.cli import main
from wm_app.variants import Variant, expand, parse_grid, parse_variant, plan_rows, split_values
from wm_core.config import ConfigError

LENGTH = "world_model.rollout_length_scheduler.rollout_length"


def test_a_variant_is_a_config_and_colon_separated_overrides():
    assert parse_variant("pendulum_mbpo") == Variant("pendulum_mbpo")
    variant = parse_variant(f"pendulum_mbpo:{LENGTH}=5:policy.hidden_sizes=[64, 64]")
    assert variant.sets == (f"{LENGTH}=5", "policy.hidden_sizes=[64, 64]")
    assert variant.overrides() == [(LENGTH, 5), ("policy.hidden_sizes", [64, 64])]
    # a ':' that is not followed by key= belongs to the value
    assert parse_variant("my/cfg.py:env.kwargs={'a': 1, 'b': 'x:y'}").sets == ("env.kwargs={'a': 1, 'b': 'x:y'}",)
    assert parse_variant(f"pendulum_mbpo: {LENGTH} = 5 ").sets == (f"{LENGTH}=5",)


@pytest.mark.parametrize("text,message", [
    ("pendulum_mbpo:5", "'5' is not key=value"),
    (":a=1", "names no config"),
    ("pendulum_mbpo:a=", "'a' has no value"),
    (f"pendulum_mbpo:{LENGTH}=1:{LENGTH}=2", f"sets '{LENGTH}' twice"),
])
def test_bad_variants_are_named(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_variant(text)


def test_variants_survive_a_posix_shell_unquoted():
    word = f"pendulum_mbpo:{LENGTH}=5:world_model.rollout_length_scheduler.type=constant"
    printed = subprocess.run(["bash", "-c", f"printf '%s\\n' {word}"], capture_output=True, text=True, check=True)
    assert printed.stdout.splitlines() == [word]
    quoted = "'pendulum_sac:policy.hidden_sizes=[64, 64]'"  # brackets and spaces: quoted, as with --set
    printed = subprocess.run(["bash", "-c", f"printf '%s\\n' {quoted}"], capture_output=True, text=True, check=True)
    assert parse_variant(printed.stdout.strip()).overrides() == [("policy.hidden_sizes", [64, 64])]


def test_grid_values_split_at_top_level_commas():
    assert split_values("1,[2, 3],'a,b',{'x': 1, 'y': 2}, 4") == ["1", "[2, 3]", "'a,b'", "{'x': 1, 'y': 2}", "4"]
    assert parse_grid(f"{LENGTH}=1,3,5") == (LENGTH, ["1", "3", "5"])
    with pytest.raises(ConfigError, match="empty value"):
        parse_grid("policy.gamma=0.9,,0.99")
    with pytest.raises(ConfigError, match="--grid expects key=value1,value2"):
        parse_grid("policy.gamma")


def test_grids_expand_as_a_cartesian_product_in_order():
    variants = expand(["a", "b:x.y=1"], ["p=1,2", "q=[1,2],[3]"])
    assert [v.spec for v in variants][:4] == ["a:p=1:q=[1,2]", "a:p=1:q=[3]", "a:p=2:q=[1,2]", "a:p=2:q=[3]"]
    assert len(variants) == 8 and variants[4].spec == "b:x.y=1:p=1:q=[1,2]"
    with pytest.raises(ConfigError, match="'x.y' is set both by variant 'b:x.y=1' and by --grid"):
        expand(["b:x.y=1"], ["x.y=2,3"])
    with pytest.raises(ConfigError, match="--grid sets 'p' twice"):
        expand(["a"], ["p=1,2", "p=3"])


def test_run_folders_are_stable_per_variant_and_distinct_between_variants():
    assert Variant("pendulum_mbpo").run_folder() == "pendulum_mbpo"  # as before variants existed
    five = parse_variant(f"pendulum_mbpo:{LENGTH}=5:policy.gamma=0.9")
    assert five.run_folder() == parse_variant(f"pendulum_mbpo:policy.gamma=0.9: {LENGTH}= 5").run_folder()
    assert five.run_folder().startswith("pendulum_mbpo+gamma=0.9+rollout_length=5-")
    others = [f"pendulum_mbpo:{LENGTH}=3:policy.gamma=0.9", f"pendulum_mbpo:{LENGTH}='5':policy.gamma=0.9",
              f"configs/pendulum_mbpo.py:{LENGTH}=5", "pendulum_sac:env.id='a/b c'"]
    folders = {parse_variant(text).run_folder() for text in others} | {five.run_folder()}
    assert len(folders) == 5 and all("/" not in f and " " not in f for f in folders)


def test_rows_are_named_by_what_differs():
    rows = plan_rows(["pendulum_mbpo", f"pendulum_mbpo:{LENGTH}=5"], ["policy.gamma=0.9,0.99"], preset="debug")
    # keys in the order they first appear; the plain config shows its own value of rollout_length
    assert [r.label for r in rows] == ["gamma=0.9 rollout_length=3", "gamma=0.99 rollout_length=3",
                                       "gamma=0.9 rollout_length=5", "gamma=0.99 rollout_length=5"]
    rows = plan_rows(["pendulum_sac", f"pendulum_mbpo:{LENGTH}=5", "pendulum_mbpo:policy.gamma=0.99"])
    # gamma is 0.99 in every row, so it names nothing; rollout_length differs where a row has one
    assert [r.label for r in rows] == ["pendulum_sac", "pendulum_mbpo rollout_length=5",
                                       "pendulum_mbpo rollout_length=3"]


def test_a_type_switch_in_a_variant_replaces_the_section():
    rows = plan_rows([f"pendulum_mbpo:{LENGTH}=1", "pendulum_mbpo:world_model.rollout_length_scheduler.type=linear"
                      ":world_model.rollout_length_scheduler.rollout_length_max=4"], preset="debug")
    assert [r.label for r in rows] == ["rollout_length=1 type=constant", "type=linear rollout_length_max=4"]


def test_rows_of_one_method_on_several_tasks_share_a_method():
    rows = plan_rows(["pendulum_sac"], ["env.id=Pendulum-v1,InvertedPendulum-v5"])
    assert [(r.label, r.method, r.task) for r in rows] == [
        ("id=Pendulum-v1", "pendulum_sac", "Pendulum-v1"), ("id=InvertedPendulum-v5", "pendulum_sac",
                                                           "InvertedPendulum-v5")]


def test_two_variants_that_resolve_to_the_same_config_are_refused():
    with pytest.raises(ConfigError, match="resolve to the same config"):
        plan_rows(["pendulum_mbpo", f"pendulum_mbpo:{LENGTH}=3"])


@pytest.mark.parametrize("argv,message", [
    ([f"pendulum_mbpo:{LENGTH[:-2]}ht=5"],
     "variant 'pendulum_mbpo:world_model.rollout_length_scheduler.rollout_lenght=5': unknown config key "
     "'world_model.rollout_length_scheduler.rollout_lenght'; did you mean 'rollout_length'?"),
    (["pendulum_mbpo", "--grid", "world_model.trian_freq=100,200"],
     "unknown config key 'world_model.trian_freq'; did you mean 'train_freq'?"),
    (["pendulum_mbpo:world_model.type=nope"], "variant 'pendulum_mbpo:world_model.type=nope':"),
    (["pendulum_mbpo:5"], "'5' is not key=value"),
    (["pendulum_sac", "--normalize", "Pendulum-v1=0"], "--normalize expects TASK=LOW,HIGH"),
    ([], "compare needs at least one ROW"),
    (["--report", "nowhere.csv"], "--report needs a results.csv"),
    (["pendulum_sac", "--report", "x.csv"], "--report re-renders a results.csv without running; drop ROW"),
])
def test_bad_rows_are_one_line_errors_before_anything_runs(argv, message, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and message in err
    assert not out.exists()
