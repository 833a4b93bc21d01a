import subprocess
import sys
import textwrap
from importlib import metadata

import pytest

from registry import POLICY_REGISTRY, SCHEDULE_REGISTRY, WORLD_MODEL_REGISTRY, Registry, RegistryError
from registry import registry as registry_module


def make_registry():
    reg = Registry("widget")

    @reg.register("square")
    class Square:
        def __init__(self, cfg, scale=1):
            self.side = cfg["side"] * scale

    return reg, Square


def test_register_get_build_names():
    reg, square = make_registry()
    assert reg.get("square") is square
    assert reg.names() == ["square"]
    built = reg.build({"type": "square", "side": 2}, scale=3)
    assert isinstance(built, square) and built.side == 6


def test_duplicate_name_is_an_error_unless_forced():
    reg, _ = make_registry()
    with pytest.raises(RegistryError, match="already registered"):
        reg.register("square", object())
    replacement = object()
    reg.register("square", replacement, force=True)
    assert reg.get("square") is replacement


def test_unknown_name_names_kind_valid_names_and_closest_match():
    reg, _ = make_registry()
    with pytest.raises(RegistryError) as info:
        reg.get("sqare")
    message = str(info.value)
    assert "widget" in message and "'sqare'" in message
    assert "did you mean 'square'?" in message and "registered: square" in message


def test_build_without_type_lists_choices():
    reg, _ = make_registry()
    with pytest.raises(RegistryError, match="needs a 'type'.*square"):
        reg.build({"side": 1})


def test_import_names_loads_a_plugin_file(tmp_path):
    plugin = tmp_path / "my_plugin.py"
    plugin.write_text(textwrap.dedent("""
        from registry import POLICY_REGISTRY

        @POLICY_REGISTRY.register("test_plugin_policy_file")
        class PluginPolicy:
            def __init__(self, cfg, *args, **kwargs):
                self.cfg = cfg
    """))
    built = POLICY_REGISTRY.build({"type": "test_plugin_policy_file", "import_names": [str(plugin)]})
    assert type(built).__name__ == "PluginPolicy"
    assert "test_plugin_policy_file" in POLICY_REGISTRY.names()


def test_import_names_loads_a_module(tmp_path, monkeypatch):
    (tmp_path / "plugin_pkg_mod.py").write_text(textwrap.dedent("""
        from registry import SCHEDULE_REGISTRY
        SCHEDULE_REGISTRY.register("test_module_schedule", lambda cfg: 7)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert SCHEDULE_REGISTRY.build({"type": "test_module_schedule", "import_names": ["plugin_pkg_mod"]}) == 7


def test_import_names_may_be_one_string(tmp_path, monkeypatch):
    (tmp_path / "plugin_single_mod.py").write_text(textwrap.dedent("""
        from registry import SCHEDULE_REGISTRY
        SCHEDULE_REGISTRY.register("test_single_string_schedule", lambda cfg: 11)
    """))
    plugin_file = tmp_path / "single_file_plugin.py"
    plugin_file.write_text(textwrap.dedent("""
        from registry import SCHEDULE_REGISTRY
        SCHEDULE_REGISTRY.register("test_single_string_file_schedule", lambda cfg: 13)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert SCHEDULE_REGISTRY.build({"type": "test_single_string_schedule", "import_names": "plugin_single_mod"}) == 11
    assert SCHEDULE_REGISTRY.build({"type": "test_single_string_file_schedule",
                                    "import_names": str(plugin_file)}) == 13
    assert registry_module.import_names_list("a.b") == ["a.b"]  # one name, not its characters
    assert registry_module.import_names_list(None) == []
    with pytest.raises(RegistryError, match="import_names must be a module name, a .py path or a list"):
        registry_module.import_names_list(["ok", 3])


def test_missing_import_name_is_a_registry_error():
    with pytest.raises(RegistryError, match="no_such_plugin_module"):
        POLICY_REGISTRY.build({"type": "sac", "import_names": ["no_such_plugin_module"]})
    with pytest.raises(RegistryError, match="does not exist"):
        POLICY_REGISTRY.build({"type": "sac", "import_names": ["/no/such/file.py"]})


class FakeEntryPoint:
    def __init__(self, name, value, loader):
        self.name, self.value, self._loader = name, value, loader

    def load(self):
        return self._loader()


def test_entry_point_plugins_load_on_first_miss(monkeypatch):
    loads = []

    def loader():
        loads.append(1)
        WORLD_MODEL_REGISTRY.register("test_entry_point_model", object, force=True)

    fake = FakeEntryPoint("fake", "fake_plugin:register", loader)

    def entry_points(group=None):
        return [fake] if group == registry_module.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(metadata, "entry_points", entry_points)
    assert WORLD_MODEL_REGISTRY.get("test_entry_point_model") is object
    WORLD_MODEL_REGISTRY.names()
    assert loads == [1]  # loaded once only


def test_builtins_listed_without_importing_them_first():
    code = ("from registry import POLICY_REGISTRY, SCHEDULE_REGISTRY, BUFFER_REGISTRY;"
            "print(POLICY_REGISTRY.names(), SCHEDULE_REGISTRY.names(), BUFFER_REGISTRY.names())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "'sac'" in out and "'linear'" in out and "'constant'" in out and "'replay'" in out


def test_schedules_registered():
    assert {"linear", "constant"} <= set(SCHEDULE_REGISTRY.names())


def test_a_broken_plugin_is_skipped_with_one_warning_and_named_when_a_type_is_missing(monkeypatch, capsys):
    def broken():
        raise ImportError("no module named 'torch_extra'")

    def healthy():
        WORLD_MODEL_REGISTRY.register("test_healthy_plugin_model", object, force=True)

    plugins = [FakeEntryPoint("broken_pkg", "broken_pkg.models", broken),
               FakeEntryPoint("healthy_pkg", "healthy_pkg.models", healthy)]
    monkeypatch.setattr(metadata, "entry_points",
                        lambda group=None: plugins if group == registry_module.ENTRY_POINT_GROUP else [])
    monkeypatch.setattr(registry_module, "_failed_entry_points", {})
    assert WORLD_MODEL_REGISTRY.get("test_healthy_plugin_model") is object
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["warning: plugin 'broken_pkg' (broken_pkg.models) failed to load: ImportError: "
                   "no module named 'torch_extra'; skipped"]
    with pytest.raises(RegistryError, match=r"import_names, or by an installed plugin; plugin 'broken_pkg'"):
        WORLD_MODEL_REGISTRY.get("my_linear")
