"""A name -> class registry with config-driven building and plugin discovery."""
from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Collection, Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

ENTRY_POINT_GROUP = "worldmodels.plugins"


class RegistryError(KeyError):
    """An unknown or duplicate name in a registry, or a plugin that failed to import."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def closest_match(name: str, choices: Iterable[str]) -> str | None:
    """The choice most similar to ``name``, or None when nothing is close."""
    matches = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.5)
    return matches[0] if matches else None


def import_module_or_file(name: str) -> None:
    """Import a dotted module name or a path to a ``.py`` file (a user's plugin).

    Raises:
        RegistryError: the module or file cannot be found, or importing it failed
            (the message carries the plugin's own error).
    """
    if not isinstance(name, str) or not name.strip():
        raise RegistryError(f"import_names: expected a module name or a .py path, got {name!r}")
    try:
        if is_plugin_file(name):
            _import_file(name)
        else:
            importlib.import_module(name)
    except RegistryError:
        raise
    except ModuleNotFoundError as err:
        raise RegistryError(f"import_names: cannot import module {name!r} ({err})") from None
    except Exception as err:
        raise RegistryError(f"import_names: importing '{name}' failed: {type(err).__name__}: {err}") from err


def _import_file(name: str) -> None:
    path = Path(name).expanduser().resolve()
    if not path.is_file():
        raise RegistryError(f"import_names: plugin file '{name}' does not exist (looked for '{path}'; a relative "
                            "path counts from the config file that names it, or from the current folder for --set)")
    module_name = f"worldmodels_plugin_{path.stem}_{abs(hash(str(path))) % 10**8}"
    if module_name in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[module_name]
        raise


def import_names_list(value: Any) -> list[str]:
    """``import_names`` as a list of module names or file paths.

    Raises:
        RegistryError: the value is not a string or a list of strings.
    """
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) and v for v in value):
        return list(value)
    raise RegistryError(f"import_names must be a module name, a .py path or a list of them, got {value!r}")


class UntrustedPluginError(RegistryError):
    """A run directory (or other stored config) names plugin code the user has not trusted."""


def plugin_names(cfg: Any) -> list[str]:
    """Every module or file named by an ``import_names`` anywhere in a (nested) config, in order."""
    found: list[str] = []
    if isinstance(cfg, Mapping):
        for key, value in cfg.items():
            names = import_names_list(value) if key == "import_names" else plugin_names(value)
            found += [name for name in names if name not in found]
    elif isinstance(cfg, (list, tuple)):
        for item in cfg:
            found += [name for name in plugin_names(item) if name not in found]
    return found


def require_trust(cfg: Mapping, source: str, trusted: bool | Collection[str] = False) -> None:
    """Refuse a stored config that would import plugin code, unless the user trusts it.

    Loading a run directory from elsewhere must not run its code (as ``trust_remote_code``
    in other libraries): ``trusted`` is True (anything), or the names the user's own
    config already imports (those are theirs).

    Raises:
        UntrustedPluginError: naming the modules and how to allow them.
    """
    if trusted is True:
        return
    allowed = set(trusted or ())
    untrusted = [name for name in plugin_names(cfg) if name not in allowed]
    if untrusted:
        raise UntrustedPluginError(
            f"{source} names plugin code that loading it would import and run: {', '.join(untrusted)}; if you "
            "trust it, pass --trust-plugins (trust_plugins=True from Python)")


def is_plugin_file(name: str) -> bool:
    """Whether an ``import_names`` entry is a file path (else a module name)."""
    return name.endswith(".py") or "/" in name or "\\" in name


def absolute_plugin_files(cfg: Any, base: Path) -> Any:
    """``cfg`` with every relative plugin file path in an ``import_names`` made absolute from ``base``.

    Module names and absolute paths are kept as they are.
    """
    if isinstance(cfg, Mapping):
        result = {}
        for key, value in cfg.items():
            if key == "import_names" and value:
                names = import_names_list(value)
                result[key] = [str((base / Path(n).expanduser()).resolve()) if is_plugin_file(n) else n
                               for n in names]
            else:
                result[key] = absolute_plugin_files(value, base)
        return result
    if isinstance(cfg, list):
        return [absolute_plugin_files(item, base) for item in cfg]
    return cfg


def import_all(value: Any) -> None:
    """Import every module or plugin file named by an ``import_names`` value."""
    for name in import_names_list(value):
        import_module_or_file(name)


class Registry:
    """Maps registered names to classes (or factories) of one kind.

    Built-in modules are imported lazily the first time the registry is
    consulted, and installed plugins (entry-point group ``worldmodels.plugins``)
    the first time a lookup misses, so ``names()`` and ``get()`` work without
    the caller importing anything first.
    """

    def __init__(self, kind: str, builtin_modules: Iterable[str] = ()) -> None:
        self.kind = kind
        self._builtin_modules = tuple(builtin_modules)
        self._entries: dict[str, Any] = {}
        self._builtins_loaded = False

    # -- registration ---------------------------------------------------
    def register(self, name: str, obj: Any = None, *, force: bool = False) -> Callable:
        """Register ``obj`` under ``name``; used bare or as a decorator.

        Raises:
            RegistryError: ``name`` is taken and ``force`` is False.
        """
        if not isinstance(name, str) or not name:
            raise RegistryError(f"{self.kind} registry: a name must be a non-empty string, got {name!r}")

        def add(target: Any) -> Any:
            existing = self._entries.get(name)
            if existing is not None and existing is not target and not force:
                raise RegistryError(
                    f"{self.kind} registry: '{name}' is already registered "
                    f"(by {_describe(existing)}); pass force=True to replace it"
                )
            self._entries[name] = target
            return target

        return add if obj is None else add(obj)

    # -- lookup ---------------------------------------------------------
    def _load_builtins(self) -> None:
        if self._builtins_loaded:
            return
        self._builtins_loaded = True
        for module in self._builtin_modules:
            importlib.import_module(module)

    def __contains__(self, name: str) -> bool:
        self._load_builtins()
        return name in self._entries

    def get(self, name: str) -> Any:
        """The object registered under ``name``.

        Raises:
            RegistryError: naming the kind, the bad name, the valid names and
                the closest match.
        """
        self._load_builtins()
        if not isinstance(name, str):
            raise RegistryError(f"a {self.kind} type must be a name (one of: {', '.join(self.names())}), "
                                f"got {name!r}")
        if name not in self._entries:
            load_entry_points()
        if name not in self._entries:
            valid = self.names()
            hint = closest_match(name, valid)
            hint_text = f"; did you mean '{hint}'?" if hint else ""
            failed = "".join(f"; {message}" for message in _failed_entry_points.values())
            raise RegistryError(
                f"unknown {self.kind} type {name!r}{hint_text} "
                f"(registered: {', '.join(valid) or 'none'}; a type of your own is registered by the module "
                f"or file its config names in import_names, or by an installed plugin{failed})"
            )
        return self._entries[name]

    def names(self) -> list[str]:
        """Every registered name, built-ins and installed plugins included."""
        self._load_builtins()
        load_entry_points()
        return sorted(self._entries)

    def build(self, cfg: Mapping, *args: Any, **kwargs: Any) -> Any:
        """Import ``cfg.import_names``, look up ``cfg.type`` and call it with ``cfg``."""
        if cfg is None or "type" not in cfg:
            raise RegistryError(
                f"{self.kind} config needs a 'type' key (one of: {', '.join(self.names())})"
            )
        import_all(cfg.get("import_names"))
        target = self.get(cfg["type"])
        return target(cfg, *args, **kwargs)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self._entries)} entries)"


def _describe(obj: Any) -> str:
    module = getattr(obj, "__module__", "?")
    return f"{module}.{getattr(obj, '__qualname__', repr(obj))}"


_loaded_entry_points: set[str] = set()
_failed_entry_points: dict[str, str] = {}  # plugin name -> why it failed to load


def load_entry_points() -> None:
    """Import every installed plugin of the ``worldmodels.plugins`` group once."""
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        key = f"{entry_point.name}={entry_point.value}"
        if key in _loaded_entry_points:
            continue
        _loaded_entry_points.add(key)
        try:
            entry_point.load()
        except Exception as err:  # a broken plugin must not hide the others: skip it, say so once
            message = f"plugin '{entry_point.name}' ({entry_point.value}) failed to load: {type(err).__name__}: {err}"
            _failed_entry_points[entry_point.name] = message
            print(f"warning: {message}; skipped", file=sys.stderr, flush=True)
