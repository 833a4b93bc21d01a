"""What a policy and a world model both are: a configured owner of networks and optimisers.

``Component`` holds the config, the spaces, the device and precision, a seeded generator,
``nets`` (an ``nn.ModuleDict``), ``optimizers``, the non-finite update guard and the
logger, and saves and restores all of them. ``Policy`` and ``WorldModel`` add their roles.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from wm_core.config import Configurable
from wm_core.guards import UpdateGuard, check_state
from wm_core.precision import PRECISIONS, autocast, check_precision
from wm_core.utils import generator_for, resolve_device


class Component(Configurable):
    """The shared part of ``Policy`` and ``WorldModel``.

    Args:
        cfg: partial config, merged over ``default_config()`` (unknown keys are errors).
        env_spec: anything with ``observation_space`` and ``action_space``.
        logger: optional object with ``log_scalars(prefix, metrics, step)``.
        seed: seeds the component's own generator (and, in subclasses, network initialisation).
    """

    config = dict(
        type=None,
        import_names=[],
        device=None,  # cpu | cuda | auto; None inherits the pipeline's device
        precision="fp32",  # fp32 | bf16 | auto: the dtype of matmuls in updates (wm_core.precision)
        max_nonfinite_updates=10,  # consecutive skipped (non-finite) updates before the run stops
    )
    # the config section ("policy", "world_model") and how messages name the kind
    section: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    # the precisions this type's updates run in (a type that never enters ``autocast()`` lists fp32 only)
    supported_precisions: ClassVar[tuple[str, ...]] = PRECISIONS

    def __init__(self, cfg: Mapping | None, env_spec: Any, logger: Any = None, *, seed: int = 0) -> None:
        self.cfg = self.merge_config(cfg, prefix=self.section)
        self.env_spec = env_spec
        self.observation_space = env_spec.observation_space
        self.action_space = env_spec.action_space
        self.logger = logger
        self.seed = int(seed)
        self.device = resolve_device(self.cfg.device)
        self.precision = check_precision(self.cfg.precision, self.device, self.section, self.supported_precisions,
                                         self.name)
        self.generator = generator_for(self.device, self.seed)
        self.nets = nn.ModuleDict()
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.guard = UpdateGuard(self.name, self.cfg.max_nonfinite_updates)

    @property
    def name(self) -> str:
        """How messages name this component, e.g. "policy 'sac'"."""
        return f"{self.kind} '{self.cfg.type}'"

    def autocast(self):
        """The autocast context of the config's ``precision`` (fp32: no autocast)."""
        return autocast(self.precision, self.device)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.nets.parameters())

    def check_state(self) -> None:
        """Raise NonFiniteStateError naming the first non-finite parameter or optimiser state."""
        check_state(self.name, self.nets, self.optimizers)

    def log(self, prefix: str, metrics: Mapping[str, float], step: int) -> None:
        if self.logger is not None and metrics:
            self.logger.log_scalars(prefix, metrics, step)

    def state_dict(self) -> dict:
        """Networks, optimisers, generator and guard (tensors and plain values only)."""
        return {
            "nets": self.nets.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "generator": self.generator.get_state(),
            "guard": self.guard.state_dict(),
        }

    def load_state_dict(self, state: Mapping) -> None:
        self.nets.load_state_dict(state["nets"])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        self.generator.set_state(state["generator"])
        self.guard.load_state_dict(state["guard"])
