"""worldmodels: a plugin framework for model-based reinforcement learning."""
from worldmodels.base import DreamWorldModel, DynaWorldModel, HybridWorldModel, WorldModel
from worldmodels.config import ConfigError

__version__ = "0.1.0"
__all__ = ["ConfigError", "DreamWorldModel", "DynaWorldModel", "HybridWorldModel", "WorldModel", "__version__"]
