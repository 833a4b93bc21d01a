"""worldmodels: a plugin framework for model-based reinforcement learning.

This package holds world models only: the ``WorldModel`` hierarchy (``base``: Dyna, Dream and
Hybrid kinds), rollout-length schedules (``schedules``), the update-ratio mixin
(``replay_ratio``), the concrete models (``mbpo``, ``steve``, ``dreamerv3``, ``latent``) and
their nets (``nets``, ``dreamer_nets``, ``rssm``). A new built-in world model is a module here
listed in ``builtin.py``; a third-party one registers in ``WORLD_MODEL_REGISTRY`` from its own
package. Environments live in ``wm_envs``, shared infrastructure in ``wm_core``, the command
line in ``wm_app`` (``python -m worldmodels`` starts it).
"""
import os
import sys

if sys.argv[:1] == ["-m"] and sys.path and sys.path[0] in ("", os.getcwd()):
    # `python -m worldmodels` (argv[0] is "-m" while the package is located) puts the current
    # folder first on sys.path, where a folder named like one of our top-level packages
    # (configs/, workers/, registry/, policies/: common in ML projects) would shadow it.
    sys.path.pop(0)

from wm_core.config import ConfigError
from worldmodels.base import (
    ActionCodec,
    ContractError,
    DreamWorldModel,
    DynaWorldModel,
    HybridWorldModel,
    ImaginationStarts,
    WorldModel,
)

__version__ = "0.1.0"
__all__ = ["ActionCodec", "ConfigError", "ContractError", "DreamWorldModel", "DynaWorldModel", "HybridWorldModel",
           "ImaginationStarts", "WorldModel", "__version__"]
