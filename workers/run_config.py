"""The pipeline's config: its defaults, resolution against every component's defaults with
validation, and the components a resolved config builds (the pipeline, ``load_agent`` and the
benchmarks all build them here).

Reading config files, presets and ``--set`` overrides is the application layer's job
(``wm_app.experiment``); this module takes the merged dict from there.
"""
from __future__ import annotations

import copy
import importlib.util
import os
from collections.abc import Mapping
from typing import Any

from easydict import EasyDict

from registry import BUFFER_REGISTRY, POLICY_REGISTRY, SCHEDULE_REGISTRY, WORLD_MODEL_REGISTRY, closest_match
from registry.registry import import_all
from wm_core.config import ConfigError, IntOrAuto, check_choice, check_range, deep_update, merge_config
from wm_core.utils import DEVICE_CHOICES
from wm_envs.make import VECTOR_MODES, check_env_id

MAX_SEED = 2**31 - 1 - 100_000  # components derive seeds by adding offsets below 100,000

PIPELINE_DEFAULTS: dict = dict(
    exp_name="experiment",  # runs go to <out>/<exp_name>/<stamp>/
    seed=0,
    device="cpu",  # cpu | cuda | auto; components with device None inherit it
    # torch CPU threads: "auto" uses the cores this process may run on (at most AUTO_THREADS_CAP,
    # or WORLDMODELS_MAX_THREADS) for a run alone; `compare` gives each run one unless told
    # otherwise. Threads that share a core with another job stall each other (a debug run took
    # 7x longer with 2 threads than with 1 beside another job): set 1 on a busy machine. 0 leaves
    # torch's default.
    num_threads=IntOrAuto("auto"),
    env_steps=10_000,  # total env steps of the run
    checkpoint_every=0,  # env steps between checkpoints; 0: only at the end (and on SIGINT/SIGTERM)
    # wall-clock minutes of training between checkpoints (0: none by the clock): a run killed
    # without a signal (SIGKILL, a lost machine) loses at most this much; checkpoints never
    # change what a run computes
    checkpoint_minutes=30.0,
    keep_checkpoints=3,  # checkpoint.pt plus this many minus one older ones in checkpoints/
    save_buffer=True,  # checkpoints hold the replay buffers (needed to resume)
    # action_repeat: env steps per agent step (budgets and schedules count env steps)
    env=dict(id=None, kwargs={}, max_episode_steps=None, action_repeat=1, wrappers=[]),
    collector=dict(env_num=1, vector="sync", warmup_steps=1000),
    buffer=dict(type="replay", import_names=[], capacity=1_000_000),
    policy=dict(type="sac"),
    world_model=None,
    learner=dict(batch_size=256, updates_per_step=1.0, log_every=100),
    evaluator=dict(eval_freq=1000, n_episodes=5),
    # Run output. backends: "csv" (progress.csv) must be listed, as it is always written (resume and
    # compare read it); "tensorboard" writes TensorBoard events; "mlflow" records an MLflow run
    # (params, the TensorBoard scalars, checkpoint.pt and progress.csv as artifacts) in
    # mlflow_tracking_uri, by default a local store in mlruns/ beside the experiment folders.
    logger=dict(backends=["tensorboard", "csv"], mlflow_tracking_uri=None),
    # Offline training (``worldmodels train CONFIG --offline DATASET --updates N``): with a dataset
    # (an .npz, a run directory or a Minari directory on disk; see workers/dataset.py) the run takes
    # no env step: it trains for ``updates`` update steps on the dataset, and every ratio and
    # frequency of the config counts update steps where it would count env steps. The evaluator
    # still runs its episodes on the env.
    offline=dict(dataset=None, updates=10_000),
)

LOGGER_BACKENDS = ("tensorboard", "csv", "mlflow")
MLFLOW_INSTALL = 'pip install "worldmodels[mlflow]"'


AUTO_THREADS_CAP = 8  # small RL networks gain nothing from more threads than this


def resolve_threads(num_threads: int | str) -> int:
    """The torch thread count of a config's ``num_threads``: "auto" is the usable cores, at most
    AUTO_THREADS_CAP and at most the environment variable WORLDMODELS_MAX_THREADS where set."""
    if num_threads == "auto":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        cap = AUTO_THREADS_CAP
        limit = os.environ.get("WORLDMODELS_MAX_THREADS", "").strip()
        if limit:
            if not limit.isdigit() or int(limit) < 1:
                raise ConfigError(f"WORLDMODELS_MAX_THREADS must be a positive int, got {limit!r}")
            cap = min(cap, int(limit))
        return max(1, min(cores, cap))
    return int(num_threads)


def _resolve_component(registry: Any, section: str, cfg: Any) -> EasyDict:
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"config section '{section}' must be a dict with a 'type', got {cfg!r}")
    if "type" not in cfg:
        raise ConfigError(f"config section '{section}' needs a 'type' (one of: {', '.join(registry.names())})")
    import_all(cfg.get("import_names"))
    target = registry.get(cfg["type"])
    if hasattr(target, "merge_config"):
        return target.merge_config(cfg, prefix=section)
    return EasyDict(copy.deepcopy(dict(cfg)))


def resolve_config(raw: Mapping) -> EasyDict:
    """Merge a config over the pipeline defaults and each component's defaults; validate.

    Raises:
        ConfigError / RegistryError: naming the bad key or value and the valid choices.
    """
    defaults = copy.deepcopy(PIPELINE_DEFAULTS)
    open_sections = {key: raw[key] for key in ("policy", "world_model", "buffer") if key in raw}
    for key in ("policy", "buffer"):  # world_model may also be None: a model-free run
        if key in open_sections and not isinstance(open_sections[key], Mapping):
            raise ConfigError(f"config key '{key}' must be a dict with a 'type' (e.g. {{'type': "
                              f"'{PIPELINE_DEFAULTS[key]['type']}'}}), got {open_sections[key]!r}")
    rest = {k: v for k, v in raw.items() if k not in open_sections}
    cfg = merge_config({k: v for k, v in defaults.items() if k not in open_sections}, rest)
    cfg.policy = _resolve_component(POLICY_REGISTRY, "policy", open_sections.get("policy", defaults["policy"]))
    wm_cfg = open_sections.get("world_model")
    cfg.world_model = None if wm_cfg is None else _resolve_component(WORLD_MODEL_REGISTRY, "world_model", wm_cfg)
    if cfg.world_model is not None and isinstance(cfg.world_model.get("rollout_length_scheduler"), Mapping):
        # a schedule whose type was switched is replaced whole: check its keys now, not when the run starts
        SCHEDULE_REGISTRY.build(cfg.world_model.rollout_length_scheduler)
    buffer_cfg = deep_update(copy.deepcopy(defaults["buffer"]), open_sections.get("buffer") or {})
    cfg.buffer = _resolve_component(BUFFER_REGISTRY, "buffer", buffer_cfg)
    check_env_id(cfg.env.id)
    name = cfg.exp_name
    if not name.strip() or name in (".", "..") or any(sep in name for sep in "/\\\0"):
        raise ConfigError(f"config key 'exp_name' must name a directory (no '/', not empty), got {name!r}")
    check_choice(cfg, "device", DEVICE_CHOICES)
    check_choice(cfg, "collector.vector", VECTOR_MODES)
    for key in ("env_steps", "keep_checkpoints", "collector.env_num", "learner.batch_size", "learner.log_every",
                "evaluator.eval_freq", "evaluator.n_episodes", "buffer.capacity"):
        check_range(cfg, key, 1)
    for key in ("collector.warmup_steps", "checkpoint_every", "checkpoint_minutes", "learner.updates_per_step"):
        check_range(cfg, key, 0)
    if cfg.num_threads != "auto":
        check_range(cfg, "num_threads", 0, 1024)
    check_range(cfg, "seed", 0, MAX_SEED)
    check_range(cfg, "env.max_episode_steps", 1, allow_none=True)
    check_range(cfg, "env.action_repeat", 1)
    check_range(cfg, "offline.updates", 1)
    dataset = cfg.offline.dataset
    if dataset is not None and (not isinstance(dataset, str) or not dataset.strip()):
        raise ConfigError(f"config key 'offline.dataset' must be None (online training) or the path of a "
                          f"dataset (.npz file, run directory or Minari directory), got {dataset!r}")
    _check_logger(cfg.logger)
    if cfg.learner.batch_size > cfg.buffer.capacity:
        raise ConfigError(f"config key 'learner.batch_size' ({cfg.learner.batch_size}) is larger than "
                          f"'buffer.capacity' ({cfg.buffer.capacity}): no batch could ever be drawn")
    if dataset is not None and "learning_starts" in (cfg.world_model or {}):
        cfg.world_model.learning_starts = 0  # offline, the data is all there: learning starts at once
    if "env_id" in (cfg.world_model or {}) and cfg.world_model.env_id is None:
        cfg.world_model.env_id = cfg.env.id
    for section in ("policy", "world_model"):
        if cfg[section] is not None and cfg[section].get("device", "unset") is None:
            cfg[section].device = cfg.device
    return cfg


def _check_logger(logger: Mapping) -> None:
    """Raise ConfigError for an unknown backend, a list without "csv", a tracking URI that is not
    a string, or "mlflow" without MLflow installed."""
    backends = logger["backends"]
    valid = ", ".join(LOGGER_BACKENDS)
    for name in backends:
        if name not in LOGGER_BACKENDS:
            hint = closest_match(str(name), LOGGER_BACKENDS)
            hint_text = f"; did you mean '{hint}'?" if hint else ""
            raise ConfigError(f"config key 'logger.backends' has an unknown backend {name!r}{hint_text} "
                              f"(valid backends: {valid})")
    if "csv" not in backends:
        raise ConfigError(f"config key 'logger.backends' must include 'csv' (progress.csv is always written: "
                          f"resume and compare read it), got {list(backends)!r}")
    uri = logger["mlflow_tracking_uri"]
    if uri is not None and (not isinstance(uri, str) or not uri.strip()):
        raise ConfigError(f"config key 'logger.mlflow_tracking_uri' must be None (a local store in mlruns/) "
                          f"or a tracking URI, got {uri!r}")
    if "mlflow" in backends:
        needed = ["mlflow"] + (["sqlalchemy", "alembic"] if uri is None or uri.startswith("sqlite:") else [])
        missing = [module for module in needed if not _installed(module)]
        if missing:
            raise ConfigError(f"config key 'logger.backends' has 'mlflow', which needs {', '.join(missing)} "
                              f"(not installed): {MLFLOW_INSTALL}")


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported, found without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
        return False


def build_components(cfg: Mapping, env_spec: Any, logger: Any = None) -> tuple[Any, Any]:
    """The world model (None for a model-free config) and the policy of a resolved config, each
    seeded with ``cfg.seed``: what the pipeline, ``load_agent`` and the benchmarks all build.

    Shapes: none (``env_spec`` is anything with ``observation_space`` and ``action_space``).
    """
    world_model = None
    if cfg["world_model"] is not None:
        world_model = WORLD_MODEL_REGISTRY.build(cfg["world_model"], env_spec, logger, seed=cfg["seed"])
    policy = POLICY_REGISTRY.build(cfg["policy"], env_spec, world_model=world_model, seed=cfg["seed"], logger=logger)
    return world_model, policy


__all__ = ["AUTO_THREADS_CAP", "LOGGER_BACKENDS", "MAX_SEED", "MLFLOW_INSTALL", "PIPELINE_DEFAULTS",
           "build_components", "resolve_config", "resolve_threads"]
