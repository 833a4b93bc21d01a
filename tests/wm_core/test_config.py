import pytest

from wm_core.config import ConfigError, Configurable, check_choice, check_range, merge_config
from worldmodels import DreamWorldModel, DynaWorldModel, HybridWorldModel, WorldModel


class Base(Configurable):
    config = dict(a=1, shared="base", nested=dict(x=1, y=2))


class Left(Base):
    config = dict(left=True, shared="left", nested=dict(y=20))


class Right(Base):
    config = dict(right=0.5, shared="right", nested=dict(z=3))


class Child(Left, Right):
    config = dict(a=100)


def test_subclass_wins_and_every_base_is_visited():
    cfg = Child.default_config()
    assert cfg.a == 100  # the subclass wins over the base
    assert cfg.left is True and cfg.right == 0.5  # both parents visited
    assert cfg.shared == "left"  # first parent in the MRO wins over the second
    assert cfg.nested == {"x": 1, "y": 20, "z": 3}  # nested dicts merge along the MRO


class Constant(Configurable):
    config = dict(schedule=dict(type="constant", rollout_length=1), buffer=dict(type="replay", capacity=10))


class Linear(Constant):
    config = dict(schedule=dict(type="linear", rollout_length_max=5), buffer=dict(capacity=20))


def test_a_subclass_section_of_another_type_replaces_the_base_s():
    cfg = Linear.default_config()
    assert cfg.schedule == {"type": "linear", "rollout_length_max": 5}  # no stray rollout_length
    assert cfg.buffer == {"type": "replay", "capacity": 20}  # same type (or none given): merged


def test_default_config_never_mutates_class_attributes():
    cfg = Child.default_config()
    cfg.nested.x = 999
    cfg.a = -1
    assert Base.config["nested"]["x"] == 1 and Child.config == {"a": 100}
    assert Child.default_config().nested.x == 1


def test_user_config_merged_over_defaults():
    cfg = Child.merge_config({"nested": {"x": 5}, "right": 2})
    assert cfg.nested == {"x": 5, "y": 20, "z": 3}
    assert cfg.right == 2.0 and isinstance(cfg.right, float)


def test_unknown_key_is_named_with_valid_keys():
    with pytest.raises(ConfigError) as info:
        Child.merge_config({"nested": {"xx": 1}})
    message = str(info.value)
    assert "'nested.xx'" in message and "did you mean 'x'?" in message and "valid keys: x, y, z" in message


@pytest.mark.parametrize("key,value", [("a", "one"), ("a", 1.5), ("a", True), ("left", 1), ("right", "x"),
                                       ("shared", 3), ("nested", 4)])
def test_wrong_value_type_is_an_error(key, value):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        Child.merge_config({key: value})


def test_integral_float_accepted_for_int():
    assert merge_config({"n": 1}, {"n": 1e6}).n == 1_000_000


def test_range_checks_with_open_and_closed_bounds():
    cfg = {"tau": 0.0, "gamma": 1.0, "steps": 0, "opt": None, "deep": {"lr": -1e-3}}
    with pytest.raises(ConfigError, match=r"'policy.tau' must be within \(0.0, 1.0\], got 0.0"):
        check_range(cfg, "tau", 0.0, 1.0, low_open=True, prefix="policy")
    check_range(cfg, "tau", 0.0, 1.0)  # a closed bound admits itself
    check_range(cfg, "gamma", 0.0, 1.0)
    with pytest.raises(ConfigError, match=r"'gamma' must be within \[0.0, 1.0\), got 1.0"):
        check_range(cfg, "gamma", 0.0, 1.0, high_open=True)
    check_range(cfg, "tau", 0.0, 1.0, high_open=True)  # an open high end still admits the low one
    with pytest.raises(ConfigError, match=r"'gamma' must be within \[0.0, 0.99\], got 1.0"):
        check_range(cfg, "gamma", 0.0, 0.99)
    with pytest.raises(ConfigError, match=r"'steps' must be within \[1, inf\], got 0"):
        check_range(cfg, "steps", 1)
    with pytest.raises(ConfigError, match=r"'deep.lr' must be within \(0, inf\]"):
        check_range(cfg, "deep.lr", 0, low_open=True)
    check_range(cfg, "opt", 0, allow_none=True)
    with pytest.raises(ConfigError, match="'opt' must be a finite number, got None"):
        check_range(cfg, "opt", 0)
    with pytest.raises(ConfigError, match="must be a finite number, got nan"):
        check_range({"x": float("nan")}, "x", 0)


def test_choice_checks_name_the_key_the_valid_values_and_the_closest():
    cfg = {"storage": "memory", "collector": {"vector": "sync"}}
    check_choice(cfg, "storage", ("memory", "disk"), prefix="buffer")
    check_choice(cfg, "collector.vector", ("sync", "async"))
    with pytest.raises(ConfigError, match=r"^config key 'buffer.storage' must be one of memory, disk, got 'disc' "
                                          r"\(did you mean 'disk'\?\)$"):
        check_choice({"storage": "disc"}, "storage", ("memory", "disk"), prefix="buffer")
    with pytest.raises(ConfigError, match=r"^config key 'collector.vector' must be one of sync, async, got 'xyz'$"):
        check_choice({"collector": {"vector": "xyz"}}, "collector.vector", ("sync", "async"))
    with pytest.raises(ConfigError, match="got None"):  # not a string: never a KeyError or TypeError
        check_choice({"size": None}, "size", {"XS": 1, "S": 2})
    with pytest.raises(ConfigError, match=r"got \['a'\]"):
        check_choice({"size": ["a"]}, "size", {"XS": 1, "S": 2})


def test_empty_default_dict_is_free_form():
    assert merge_config({"kwargs": {}}, {"kwargs": {"anything": 1}}).kwargs == {"anything": 1}


def test_changing_a_typed_subsection_replaces_it():
    defaults = {"sched": {"type": "constant", "rollout_length": 1}}
    merged = merge_config(defaults, {"sched": {"type": "linear", "rollout_length_max": 5}})
    assert merged.sched == {"type": "linear", "rollout_length_max": 5}


def test_world_model_hierarchy_defaults():
    hybrid = HybridWorldModel.default_config()
    for key in ("train_freq", "eval_freq", "rollout_length_scheduler", "device", "real_ratio",
                "rollout_retain", "rollout_batch_size", "img_buffer"):
        assert key in hybrid
    assert DynaWorldModel.default_config().real_ratio == 0.05
    assert DreamWorldModel.default_config().rollout_length_scheduler.rollout_length == 15
    assert WorldModel.default_config().rollout_length_scheduler.type == "constant"
    assert HybridWorldModel.__mro__.index(DynaWorldModel) < HybridWorldModel.__mro__.index(DreamWorldModel)
