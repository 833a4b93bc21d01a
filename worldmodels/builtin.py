"""Imports every built-in world model so that its registration runs."""
import importlib

BUILTIN_MODULES: tuple[str, ...] = ("worldmodels.mbpo", "worldmodels.dreamerv3", "worldmodels.steve",
                                     "worldmodels.latent")

for _module in BUILTIN_MODULES:
    importlib.import_module(_module)
