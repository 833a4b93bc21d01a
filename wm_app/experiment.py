"""Experiment configs as a user names them: find a config file (shipped or a path), apply a preset,
``--set`` overrides, a seed and a budget, then resolve them with ``workers.run_config``."""
from __future__ import annotations

import ast
import copy
import importlib.util
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from easydict import EasyDict

from registry import closest_match
from registry.registry import absolute_plugin_files
from wm_core.config import ConfigError, deep_update
from workers.run_config import resolve_config


def shipped_config_names() -> list[str]:
    """Names of the configs shipped in the ``configs`` package."""
    files = resources.files("configs")
    return sorted(p.name[:-3] for p in files.iterdir() if p.name.endswith(".py") and not p.name.startswith("_"))


def find_config(name_or_path: str) -> Path:
    """A shipped config by bare name, or a path to a ``.py`` file."""
    path = Path(name_or_path).expanduser()
    if name_or_path.endswith(".py") or "/" in name_or_path:
        if not path.is_file():
            raise ConfigError(f"config file {name_or_path!r} does not exist")
        return path
    names = shipped_config_names()
    if name_or_path not in names:
        hint = closest_match(name_or_path, names)
        hint_text = f"; did you mean '{hint}'?" if hint else ""
        raise ConfigError(f"unknown config {name_or_path!r}{hint_text} "
                          f"(shipped configs: {', '.join(names)}; or give a path to a .py file)")
    return Path(str(resources.files("configs") / f"{name_or_path}.py"))


def load_config_file(name_or_path: str) -> tuple[dict, dict]:
    """``(config, presets)`` defined by a config file."""
    path = find_config(name_or_path)
    spec = importlib.util.spec_from_file_location(f"worldmodels_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as err:  # a config that exits is an error, not a finished run
        raise ConfigError(f"config file '{path}' failed to load: {type(err).__name__}: {err}") from None
    config = getattr(module, "config", None)
    if not isinstance(config, Mapping):
        raise ConfigError(f"config file '{path}' must define a dict named 'config'")
    presets = getattr(module, "presets", {}) or {}
    base = path.resolve().parent  # a relative plugin path counts from the config file that names it
    return absolute_plugin_files(copy.deepcopy(dict(config)), base), absolute_plugin_files(
        copy.deepcopy(dict(presets)), base)


def parse_value(text: str) -> Any:
    """A Python literal where ``text`` parses as one, else the plain string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_overrides(items: Iterable[str]) -> dict:
    """``["a.b=1", "c=x"]`` -> ``{"a": {"b": 1}, "c": "x"}``."""
    overrides: dict = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value (e.g. policy.actor_lr=1e-3), got {item!r}")
        parts = key.strip().split(".")
        node = overrides
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set '{item}' conflicts with another --set of '{part}'")
        node[parts[-1]] = parse_value(text)
    return overrides


def compose_config(name_or_path: str, preset: str | None = None, sets: Iterable[str] = (),
                   seed: int | None = None, env_steps: int | None = None) -> EasyDict:
    """Load a config file, apply a preset, ``--set`` overrides, seed and step budget; resolve it."""
    config, presets = load_config_file(name_or_path)
    if preset is not None:
        if preset not in presets:
            valid = ", ".join(sorted(presets)) or "none"
            raise ConfigError(f"unknown preset {preset!r} for config {name_or_path!r} (presets: {valid})")
        config = deep_update(config, presets[preset])
    config = deep_update(config, absolute_plugin_files(parse_overrides(sets), Path.cwd()))
    if seed is not None:
        config["seed"] = seed
    if env_steps is not None:
        config["env_steps"] = env_steps
    return resolve_config(config)


__all__ = ["compose_config", "find_config", "load_config_file", "parse_overrides", "parse_value",
           "shipped_config_names"]
