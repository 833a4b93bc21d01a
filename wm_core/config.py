"""Config merging with key and type checking, shared by every configurable component."""
from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from typing import Any

from easydict import EasyDict

from registry import closest_match


class ConfigError(ValueError):
    """A config key or value that is not valid; the message names it and the valid choices."""


_TYPE_NAMES = {bool: "a bool", int: "an int", float: "a number", str: "a string",
               list: "a list", dict: "a dict"}


def _type_name(value: Any) -> str:
    return type(value).__name__


def _is_free_form(default: Mapping) -> bool:
    """An empty default dict holds free-form keys (e.g. env kwargs)."""
    return len(default) == 0


class IntOrAuto(str):
    """The default of a key that takes "auto" or an int (``num_threads``); equal to "auto"."""


def check_value(default: Any, value: Any, key: str) -> Any:
    """Check ``value`` against the type of ``default``; return it (converted where lossless).

    Raises:
        ConfigError: naming ``key``, the expected type and the value given.
    """
    if default is None:
        return value
    if value is None:
        raise ConfigError(f"config key '{key}' needs a value like {default!r}, got None")
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}' expects {_TYPE_NAMES[bool]} (True/False), "
                              f"got {value!r} ({_type_name(value)})")
        return value
    if isinstance(default, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}' expects an int, got {value!r} ({_type_name(value)})")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}' expects a number, got {value!r} ({_type_name(value)})")
        return float(value)
    if isinstance(default, IntOrAuto):
        if value != "auto" and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(f"config key '{key}' expects 'auto' or an int, got {value!r} ({_type_name(value)})")
        return value
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}' expects a string, got {value!r} ({_type_name(value)})")
        return value
    if isinstance(default, (list, tuple)):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' expects a list, got {value!r} ({_type_name(value)})")
        return list(value)
    if isinstance(default, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{key}' expects a dict, got {value!r} ({_type_name(value)})")
        return value
    return value


def merge_config(defaults: Mapping, user: Mapping | None, prefix: str = "") -> EasyDict:
    """Deep-merge ``user`` over ``defaults``: user values win, unknown keys are errors.

    A nested dict with a ``type`` key whose type the user changes is replaced
    whole (its valid keys depend on the type and are checked where it is built).
    An empty default dict accepts any keys.

    Raises:
        ConfigError: an unknown key (with the valid keys and the closest one) or
            a value of the wrong type.
    """
    merged = copy.deepcopy(dict(defaults))
    if user is None:
        return EasyDict(merged)
    if not isinstance(user, Mapping):
        where = f"'{prefix}'" if prefix else "the config"
        raise ConfigError(f"{where} must be a dict, got {user!r}")
    for key, value in user.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in merged:
            if _is_free_form(defaults):
                merged[key] = copy.deepcopy(value)
                continue
            valid = sorted(str(k) for k in defaults)
            hint = closest_match(str(key), valid)
            hint_text = f"; did you mean '{hint}'?" if hint else ""
            raise ConfigError(f"unknown config key {path!r}{hint_text} (valid keys: {', '.join(valid)})")
        default = merged[key]
        if isinstance(default, Mapping) and isinstance(value, Mapping) and default:
            if "type" in default and "type" in value and value["type"] != default["type"]:
                merged[key] = copy.deepcopy(dict(value))
            else:
                merged[key] = merge_config(default, value, path)
        else:
            merged[key] = copy.deepcopy(check_value(default, value, path))
    return EasyDict(merged)


def deep_update(base: dict, update: Mapping) -> dict:
    """Recursively update ``base`` in place with ``update`` (no checking); returns ``base``."""
    for key, value in update.items():
        current = base.get(key)
        if isinstance(current, dict) and isinstance(value, Mapping) and not (
            "type" in current and "type" in value and current["type"] != value["type"]
        ):
            deep_update(current, value)
        else:
            base[key] = copy.deepcopy(value)
    return base


def to_plain(value: Any) -> Any:
    """A copy of a config made of plain dicts and lists (for JSON and checkpoints)."""
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    return value


def _lookup(cfg: Mapping, key: str) -> Any:
    """``cfg[key]`` for a dotted ``key`` ("collector.vector")."""
    node: Any = cfg
    for part in key.split("."):
        node = node[part]
    return node


def check_choice(cfg: Mapping, key: str, choices: Iterable[str], *, prefix: str = "") -> None:
    """Raise ConfigError unless ``cfg[key]`` (a dotted path) is one of ``choices``; the message
    names the key, the valid values and the closest of them."""
    value, choices = _lookup(cfg, key), list(choices)
    if isinstance(value, str) and value in choices:
        return
    name = f"{prefix}.{key}" if prefix else key
    hint = closest_match(str(value), choices)
    hint_text = f" (did you mean '{hint}'?)" if hint else ""
    raise ConfigError(f"config key '{name}' must be one of {', '.join(choices)}, got {value!r}{hint_text}")


def check_range(cfg: Mapping, key: str, low: float | None = None, high: float | None = None, *,
                prefix: str = "", low_open: bool = False, high_open: bool = False,
                allow_none: bool = False) -> None:
    """Raise ConfigError unless ``cfg[key]`` (a dotted path) lies in [low, high] (open at the low
    end when ``low_open``, at the high end when ``high_open``); None passes when ``allow_none``.
    """
    node = _lookup(cfg, key)
    name = f"{prefix}.{key}" if prefix else key
    if node is None and allow_none:
        return
    if isinstance(node, bool) or not isinstance(node, (int, float)) or not math.isfinite(node):
        raise ConfigError(f"config key '{name}' must be a finite number, got {node!r}")
    too_low = low is not None and (node <= low if low_open else node < low)
    too_high = high is not None and (node >= high if high_open else node > high)
    if too_low or too_high:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        bounds = f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"
        raise ConfigError(f"config key '{name}' must be within {bounds}, got {node!r}")


def check_sizes(cfg: Mapping, key: str, *, prefix: str = "") -> None:
    """Raise ConfigError unless ``cfg[key]`` is a list of positive ints (layer widths)."""
    value = cfg[key]
    name = f"{prefix}.{key}" if prefix else key
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
        raise ConfigError(f"config key '{name}' must be a list of positive ints (layer widths), got {value!r}")


class Configurable:
    """Mixin: a class attribute ``config`` of defaults, merged along the whole MRO."""

    config: dict = {}

    @classmethod
    def default_config(cls) -> EasyDict:
        """Defaults merged over every class in the MRO; a subclass value wins over a base's."""
        merged: dict = {}
        for klass in reversed(cls.__mro__):
            own = klass.__dict__.get("config")
            if isinstance(own, Mapping):
                deep_update(merged, own)
        return EasyDict(copy.deepcopy(merged))

    @classmethod
    def merge_config(cls, cfg: Mapping | None, prefix: str = "") -> EasyDict:
        """The user's (possibly partial) ``cfg`` merged over ``default_config()``."""
        return merge_config(cls.default_config(), cfg, prefix)
