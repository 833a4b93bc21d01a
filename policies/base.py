"""The Policy base class: acting (collect / act) and learning, built from config."""
from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from worldmodels.config import Configurable
from worldmodels.guards import UpdateGuard, check_state
from worldmodels.precision import PRECISIONS, autocast, check_precision
from worldmodels.utils import generator_for, resolve_device


class Policy(Configurable, abc.ABC):
    """An agent's acting and learning rule.

    ``collect`` and ``act`` take and return tensors (the collector converts to
    and from numpy), so imagination calls the same methods without copies.

    Args:
        cfg: partial config merged over ``default_config()``; unknown keys are errors.
        env_spec: anything with ``observation_space`` and ``action_space``.
        world_model: the run's world model, for policies that learn through one.
        seed: seeds network initialisation and the policy's own generator.
    """

    config = dict(
        type=None,
        import_names=[],
        device=None,  # cpu | cuda | auto; None inherits the pipeline's device
        precision="fp32",  # fp32 | bf16 | auto: the dtype of matmuls in updates (worldmodels.precision)
        max_nonfinite_updates=10,  # consecutive skipped (non-finite) updates before the run stops
    )
    # the precisions this type's updates run in (a type that never enters ``autocast()`` lists fp32 only)
    supported_precisions: ClassVar[tuple[str, ...]] = PRECISIONS

    def __init__(self, cfg: Mapping | None, env_spec: Any, *, world_model: Any = None, seed: int = 0,
                 logger: Any = None) -> None:
        self.cfg = self.merge_config(cfg, prefix="policy")
        self.env_spec = env_spec
        self.observation_space = env_spec.observation_space
        self.action_space = env_spec.action_space
        self.world_model = world_model
        self.logger = logger
        self.seed = int(seed)
        self.device = resolve_device(self.cfg.device)
        self.precision = check_precision(self.cfg.precision, self.device, "policy", self.supported_precisions,
                                         f"policy '{self.cfg.type}'")
        self.generator = generator_for(self.device, self.seed)
        self.nets = nn.ModuleDict()
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.train_iter = 0
        self.guard = UpdateGuard(f"policy '{self.cfg.type}'", self.cfg.max_nonfinite_updates)

    @abc.abstractmethod
    def collect(self, obs: torch.Tensor) -> torch.Tensor:
        """Exploring actions.

        Shapes:
            obs: [B, O] -> action [B, A] (continuous) or [B] (discrete)
        """

    @abc.abstractmethod
    def act(self, obs: torch.Tensor) -> torch.Tensor:
        """Deterministic actions for evaluation; shapes as ``collect``."""

    @abc.abstractmethod
    def learn(self, data: Any) -> dict[str, float]:
        """One update from a batch (or from a world model); returns metrics."""

    def reset(self, mask: Any = None, *, evaluation: bool = False) -> None:
        """Forget per-env recurrent state where ``mask`` [B] is True (all when None).

        A recurrent policy keeps two states: the collector's (``collect``, one
        per vector-env slot) and the evaluator's (``act``, ``evaluation=True``),
        so evaluating never disturbs collection.
        """

    def autocast(self):
        """The autocast context of the config's ``precision`` (fp32: no autocast)."""
        return autocast(self.precision, self.device)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.nets.parameters())

    def check_state(self) -> None:
        """Raise NonFiniteStateError naming the first non-finite parameter or optimiser state."""
        check_state(self.guard.component, self.nets, self.optimizers)

    def state_dict(self) -> dict:
        return {
            "nets": self.nets.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in self.optimizers.items()},
            "generator": self.generator.get_state(),
            "train_iter": self.train_iter,
            "guard": self.guard.state_dict(),
        }

    def load_state_dict(self, state: Mapping) -> None:
        self.nets.load_state_dict(state["nets"])
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][name])
        self.generator.set_state(state["generator"])
        self.train_iter = int(state["train_iter"])
        self.guard.load_state_dict(state["guard"])
