"""Registries of every pluggable kind: world models, policies, envs, buffers, schedules."""
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
ENV_REGISTRY = Registry("env", ["worldmodels.envs"])
BUFFER_REGISTRY = Registry("buffer", ["workers.buffer"])
SCHEDULE_REGISTRY = Registry("schedule", ["worldmodels.schedules"])

ALL_REGISTRIES = {
    "world_model": WORLD_MODEL_REGISTRY,
    "policy": POLICY_REGISTRY,
    "env": ENV_REGISTRY,
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
    "UntrustedPluginError",
    "WORLD_MODEL_REGISTRY",
    "closest_match",
    "import_module_or_file",
    "load_entry_points",
    "plugin_names",
    "require_trust",
]
