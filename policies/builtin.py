"""Imports every built-in policy so that its registration runs."""
import importlib

BUILTIN_MODULES: tuple[str, ...] = ("policies.sac", "policies.dreamer", "policies.mbsac", "policies.planners")

for _module in BUILTIN_MODULES:
    importlib.import_module(_module)
