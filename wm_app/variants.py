"""Variants of configs for ``worldmodels compare``: inline overrides, grids, row names, run folders.

A variant is ``CONFIG`` or ``CONFIG:key=value[:key=value...]``: a config name or path, then
overrides separated by ``:`` (a ``:`` inside a value is kept where what follows it is not
``key=``). ``:``, ``.`` and ``=`` are not special to bash or zsh, so a variant needs no
quoting unless a value does (brackets, spaces, quotes), exactly as with ``--set``.
``--grid key=v1,v2`` multiplies every variant by each value (commas inside brackets,
braces, parentheses or quotes belong to the value).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry import RegistryError
from wm_app.experiment import compose_config, parse_value
from wm_core.config import ConfigError, to_plain

SYNTAX = "CONFIG or CONFIG:key=value[:key=value...]"
_KEY = r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*"
_KEY_VALUE = re.compile(rf"^\s*({_KEY})\s*=(.*)$", re.S)
_NEXT_OVERRIDE = re.compile(rf":(?=\s*{_KEY}\s*=)")
_MISSING = object()
TASK_KEY = "env.id"


@dataclass(frozen=True)
class Variant:
    """One config and the overrides that make it a variant (``key=value`` strings, in order)."""

    config: str
    sets: tuple[str, ...] = ()

    @property
    def stem(self) -> str:
        return Path(self.config).stem

    @property
    def spec(self) -> str:
        """The variant as it is written on the command line."""
        return ":".join((self.config, *self.sets))

    def run_folder(self) -> str:
        """The folder name of this variant's runs: the config's stem alone for the config as it is
        (as before variants existed), else the stem, the overrides and a hash of them, so the
        same variant always resumes in the same folder and different ones never share one."""
        if not self.sets:
            return self.stem
        overrides = sorted(self.overrides(), key=lambda item: item[0])  # the order given does not matter
        digest = hashlib.sha1(json.dumps([(k, repr(v)) for k, v in overrides]).encode()).hexdigest()[:8]
        slug = "+".join(f"{key.rsplit('.', 1)[-1]}={_value_text(value)}" for key, value in overrides)
        slug = re.sub(r"[^A-Za-z0-9_.=,+-]+", "_", slug)[:60]
        return f"{self.stem}+{slug}-{digest}"

    def overrides(self) -> list[tuple[str, Any]]:
        """``(dotted key, parsed value)`` of each override."""
        return [(key, parse_value(text)) for key, text in (item.split("=", 1) for item in self.sets)]


def _override(text: str, where: str) -> str:
    match = _KEY_VALUE.match(text)
    if match is None:
        raise ConfigError(f"{where}: {text!r} is not key=value (a variant is {SYNTAX}, "
                          "e.g. pendulum_mbpo:world_model.rollout_length_scheduler.rollout_length=5)")
    key, value = match.group(1), match.group(2).strip()
    if not value:
        raise ConfigError(f"{where}: '{key}' has no value after '='")
    return f"{key}={value}"


def parse_variant(text: str) -> Variant:
    """``CONFIG[:key=value...]`` -> Variant.

    Raises:
        ConfigError: an empty config, an override that is not ``key=value``, a key given twice.
    """
    config, colon, rest = text.partition(":")
    if not config.strip():
        raise ConfigError(f"variant {text!r} names no config (a variant is {SYNTAX})")
    sets = tuple(_override(item, f"variant {text!r}") for item in _NEXT_OVERRIDE.split(":" + rest)[1:]) \
        if colon else ()
    if colon and not sets:
        _override(rest, f"variant {text!r}")  # raises: what follows the ':' is not key=value
    _check_unique_keys(sets, f"variant {text!r}")
    return Variant(config.strip(), sets)


def _check_unique_keys(sets: Iterable[str], where: str) -> None:
    seen: set[str] = set()
    for item in sets:
        key = item.split("=", 1)[0]
        if key in seen:
            raise ConfigError(f"{where} sets '{key}' twice")
        seen.add(key)


def split_values(text: str) -> list[str]:
    """``"1,[2,3],'a,b'"`` -> ``["1", "[2,3]", "'a,b'"]``: commas at the top level only."""
    values, depth, quote, current = [], 0, "", []
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        elif char == "," and depth == 0:
            values.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    values.append("".join(current).strip())
    return values


def parse_grid(text: str) -> tuple[str, list[str]]:
    """``"key=v1,v2"`` -> ``("key", ["v1", "v2"])``.

    Raises:
        ConfigError: not ``key=values``, or an empty value.
    """
    match = _KEY_VALUE.match(text)
    if match is None:
        raise ConfigError(f"--grid expects key=value1,value2,... (e.g. --grid "
                          f"world_model.rollout_length_scheduler.rollout_length=1,3,5), got {text!r}")
    key, values = match.group(1), split_values(match.group(2))
    if any(not value for value in values):
        raise ConfigError(f"--grid {text!r} has an empty value (values are separated by ',')")
    return key, values


def expand(variants: Sequence[str], grids: Sequence[str] = ()) -> list[Variant]:
    """Every variant times every combination of the grids' values, in the order given.

    Raises:
        ConfigError: a bad variant or grid, a key in two grids, or in a variant and a grid.
    """
    parsed = [parse_variant(text) for text in variants]
    axes = [parse_grid(text) for text in grids]
    _check_unique_keys((f"{key}=" for key, _ in axes), "--grid")
    expanded = []
    for variant in parsed:
        own = {item.split("=", 1)[0] for item in variant.sets}
        for key, _ in axes:
            if key in own:
                raise ConfigError(f"'{key}' is set both by variant {variant.spec!r} and by --grid; "
                                  "drop one of them")
        for combination in itertools.product(*[[f"{key}={value}" for value in values] for key, values in axes]):
            expanded.append(Variant(variant.config, variant.sets + combination))
    return expanded


@dataclass(frozen=True)
class Row:
    """A variant as one row of a comparison: its name, its task and its method (the name without
    the task, so that rows of one method on several tasks can be aggregated)."""

    variant: Variant
    label: str
    task: str
    method: str


def lookup(cfg: Mapping, key: str) -> Any:
    """The value at a dotted key of a resolved config, or a sentinel when it has none."""
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return _MISSING
        node = node[part]
    return to_plain(node)


def _value_text(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Each key's shortest dotted suffix that no other key ends with."""
    short = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            if not any(other != key and (other == suffix or other.endswith("." + suffix)) for other in keys):
                break
        short[key] = suffix
    return short


def name_rows(variants: Sequence[Variant], configs: Sequence[Mapping], exclude: Iterable[str] = ()) -> list[str]:
    """Each row's name: what differs between the rows. The config's stem where stems differ,
    and ``key=value`` (the shortest unambiguous key) for each overridden key whose resolved
    value is not the same in every row (a row that does not override it shows its config's
    value). A row that differs in nothing shown is named by its stem.

    Shapes:
        variants, configs: [rows], configs[i] the resolved config of variants[i].
    """
    excluded = set(exclude)
    keys = list(dict.fromkeys(key for v in variants for key, _ in v.overrides() if key not in excluded))
    values = {key: [lookup(cfg, key) for cfg in configs] for key in keys}
    differing = [key for key in keys if len({json.dumps(v, default=repr, sort_keys=True) if v is not _MISSING
                                             else "<missing>" for v in values[key]}) > 1]
    short = _short_keys(differing)
    show_stem = len({v.stem for v in variants}) > 1
    names = []
    for i, variant in enumerate(variants):
        parts = [variant.stem] if show_stem else []
        parts += [f"{short[key]}={_value_text(values[key][i])}" for key in differing
                  if values[key][i] is not _MISSING]
        names.append(" ".join(parts) or variant.stem)
    return names


def plan_rows(variants: Sequence[str], grids: Sequence[str] = (), *, preset: str | None = None,
              sets: Sequence[str] = (), env_steps: int | None = None) -> list[Row]:
    """Expand, resolve and name every row before anything runs.

    Raises:
        ConfigError / RegistryError: the first variant that does not resolve, named with the
            error; two variants that resolve to the same config.
    """
    expanded = expand(variants, grids)
    configs = []
    for variant in expanded:
        try:
            configs.append(compose_config(variant.config, preset, [*sets, *variant.sets], 0, env_steps))
        except (ConfigError, RegistryError) as err:
            if not variant.sets:
                raise
            raise type(err)(f"variant '{variant.spec}': {err}") from None
    labels = name_rows(expanded, configs)
    methods = name_rows(expanded, configs, exclude=[TASK_KEY])
    tasks = [cfg.env.id for cfg in configs]
    first: dict[str, Variant] = {}
    for variant, label in zip(expanded, labels, strict=True):
        if label in first:
            raise ConfigError(f"variants '{first[label].spec}' and '{variant.spec}' resolve to the same "
                              "config: give each row something that differs")
        first[label] = variant
    return [Row(*fields) for fields in zip(expanded, labels, tasks, methods, strict=True)]
