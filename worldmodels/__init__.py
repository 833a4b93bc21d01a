"""worldmodels: a plugin framework for model-based reinforcement learning."""
import os
import sys

if sys.argv[:1] == ["-m"] and sys.path and sys.path[0] in ("", os.getcwd()):
    # `python -m worldmodels` (argv[0] is "-m" while the package is located) puts the current
    # folder first on sys.path, where a folder named like one of our top-level packages
    # (configs/, workers/, registry/, policies/: common in ML projects) would shadow it.
    sys.path.pop(0)

from worldmodels.base import (
    ActionCodec,
    ContractError,
    DreamWorldModel,
    DynaWorldModel,
    HybridWorldModel,
    ImaginationStarts,
    WorldModel,
)
from worldmodels.config import ConfigError

__version__ = "0.1.0"
__all__ = ["ActionCodec", "ConfigError", "ContractError", "DreamWorldModel", "DynaWorldModel", "HybridWorldModel",
           "ImaginationStarts", "WorldModel", "__version__"]
