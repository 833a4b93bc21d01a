"""Registries of every pluggable kind: world models, policies, env wrappers, termination functions,
buffers, schedules; building from a config's ``type``, ``import_names`` and the
``worldmodels.plugins`` entry points. The bottom layer: it imports none of our packages (each
registry names the modules that register its built-ins, imported on first use)."""
from registry.registry import (
    ENTRY_POINT_GROUP,
    Registry,
    RegistryError,
    UntrustedPluginError,
    closest_match,
    import_module_or_file,
    load_entry_points,
    plugin_names,
    require_trust,
)

WORLD_MODEL_REGISTRY = Registry("world_model", ["worldmodels.builtin"])
POLICY_REGISTRY = Registry("policy", ["policies.builtin"])
ENV_REGISTRY = Registry("env", ["wm_envs.wrappers"])  # env wrappers (a config's env.wrappers)
# termination rules of gymnasium tasks by env name ("Hopper"), for imagined rollouts
TERMINATION_REGISTRY = Registry("termination", ["wm_envs.termination"])
BUFFER_REGISTRY = Registry("buffer", ["workers.buffer"])
SCHEDULE_REGISTRY = Registry("schedule", ["worldmodels.schedules"])

ALL_REGISTRIES = {
    "world_model": WORLD_MODEL_REGISTRY,
    "policy": POLICY_REGISTRY,
    "env": ENV_REGISTRY,
    "termination": TERMINATION_REGISTRY,
    "buffer": BUFFER_REGISTRY,
    "schedule": SCHEDULE_REGISTRY,
}

__all__ = [
    "ALL_REGISTRIES",
    "BUFFER_REGISTRY",
    "ENTRY_POINT_GROUP",
    "ENV_REGISTRY",
    "POLICY_REGISTRY",
    "Registry",
    "RegistryError",
    "SCHEDULE_REGISTRY",
    "TERMINATION_REGISTRY",
    "UntrustedPluginError",
    "WORLD_MODEL_REGISTRY",
    "closest_match",
    "import_module_or_file",
    "load_entry_points",
    "plugin_names",
    "require_trust",
]
