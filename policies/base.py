"""The Policy base class: acting (collect / act) and learning, built from config."""
from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from wm_core.component import Component


class Policy(Component, abc.ABC):
    """An agent's acting and learning rule.

    ``collect`` and ``act`` take and return tensors (the collector converts to
    and from numpy), so imagination calls the same methods without copies.

    Args:
        cfg: partial config merged over ``default_config()``; unknown keys are errors.
        env_spec: anything with ``observation_space`` and ``action_space``.
        world_model: the run's world model, for policies that learn through one.
        seed: seeds network initialisation and the policy's own generator.

    Config keys every policy has (``Component``): ``type``, ``import_names``, ``device``,
    ``precision``, ``max_nonfinite_updates``.
    """

    section: ClassVar[str] = "policy"
    kind: ClassVar[str] = "policy"

    def __init__(self, cfg: Mapping | None, env_spec: Any, *, world_model: Any = None, seed: int = 0,
                 logger: Any = None) -> None:
        super().__init__(cfg, env_spec, logger, seed=seed)
        self.world_model = world_model
        self.train_iter = 0

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

    def imagined_length(self, envstep: int) -> int | None:
        """The steps this policy imagines ahead at ``envstep`` when it decides that itself (a
        planner's horizon), logged as the run's ``rollout_length``; None (here): the world
        model's rollout-length schedule decides."""
        return None

    def reset(self, mask: Any = None, *, evaluation: bool = False) -> None:
        """Forget per-env recurrent state where ``mask`` [B] is True (all when None).

        A recurrent policy keeps two states: the collector's (``collect``, one
        per vector-env slot) and the evaluator's (``act``, ``evaluation=True``),
        so evaluating never disturbs collection.
        """

    def state_dict(self) -> dict:
        return {**super().state_dict(), "train_iter": self.train_iter}

    def load_state_dict(self, state: Mapping) -> None:
        super().load_state_dict(state)
        self.train_iter = int(state["train_iter"])
