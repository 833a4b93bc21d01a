"""Training guards: optimiser steps with non-finite losses or gradients are skipped and counted,
and a component whose parameters or optimiser state turned non-finite is named before it is saved."""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch


class NonFiniteError(RuntimeError):
    """Too many consecutive updates of one component had a non-finite loss or gradient."""

    def __init__(self, component: str, loss_name: str, what: str, count: int) -> None:
        self.component, self.loss_name, self.what, self.count = component, loss_name, what, count
        super().__init__(f"{component}: {count} consecutive updates had a non-finite {what} "
                         f"(loss '{loss_name}'); stopping")


class NonFiniteStateError(RuntimeError):
    """A component's parameters, optimiser state or output became non-finite: nothing of it may be saved."""


# A gradient whose norm reaches this would overflow Adam's float32 second moment (g**2 > 3.4e38):
# the step is skipped like a non-finite one, so the optimiser state never holds an inf.
GRADIENT_NORM_LIMIT = 1e18


def nonfinite_state(nets: torch.nn.Module, optimizers: Mapping[str, torch.optim.Optimizer]) -> str | None:
    """The name of the first non-finite parameter, buffer or optimiser-state tensor, or None.

    One pass over the tensors and one read: cheap beside writing a checkpoint.
    """
    named = [(f"parameter '{name}'", t) for name, t in nets.state_dict().items()
             if torch.is_tensor(t) and t.is_floating_point()]
    for opt_name, optimizer in optimizers.items():
        for index, state in enumerate(optimizer.state.values()):
            named.extend((f"optimiser '{opt_name}' state '{key}' of parameter {index}", t)
                         for key, t in state.items() if torch.is_tensor(t) and t.is_floating_point())
    named = [(name, t) for name, t in named if t.numel()]
    if not named:
        return None
    with torch.no_grad():
        finite = torch.stack([torch.isfinite(t).all() for _, t in named]).tolist()
    for (name, _), ok in zip(named, finite, strict=True):
        if not ok:
            return name
    return None


def check_state(component: str, nets: torch.nn.Module, optimizers: Mapping[str, torch.optim.Optimizer]) -> None:
    """Raise NonFiniteStateError naming ``component``'s first non-finite tensor."""
    bad = nonfinite_state(nets, optimizers)
    if bad is not None:
        raise NonFiniteStateError(f"{component}: {bad} became non-finite (lower its learning rate)")


def check_action(policy: Any, action: np.ndarray, where: str) -> None:
    """Raise NonFiniteStateError when ``action`` (as sent to the env) is not finite, naming the
    non-finite parameter behind it when there is one (the policy's, then its world model's)."""
    if not np.issubdtype(action.dtype, np.floating) or np.isfinite(action).all():
        return
    for component in (policy, getattr(policy, "world_model", None)):
        if hasattr(component, "check_state"):
            component.check_state()
    name = getattr(policy, "name", f"policy {type(policy).__name__}")
    raise NonFiniteStateError(f"{name} chose a non-finite action {where} (its parameters may have grown "
                              "too large: lower its learning rate)")


class UpdateGuard:
    """Runs backward and the optimiser step unless the loss or the gradients are not finite
    (or so large that the optimiser's state would overflow).

    A skipped update leaves the parameters and the optimiser untouched; after
    ``max_consecutive`` skipped updates of one loss in a row (other losses of
    the component may succeed in between) a ``NonFiniteError`` names the
    component and the loss.

    Args:
        component: what owns the optimisers, e.g. "policy 'sac'".
        max_consecutive: skipped updates in a row before giving up.
    """

    def __init__(self, component: str, max_consecutive: int = 10) -> None:
        self.component = component
        self.max_consecutive = int(max_consecutive)
        self.skipped = 0
        self.consecutive: dict[str, int] = {}
        self.last_grad_norm = float("nan")

    def step(self, name: str, loss: torch.Tensor, optimizer: torch.optim.Optimizer,
             params: Iterable[torch.Tensor] | None = None, max_grad_norm: float | None = None) -> bool:
        """Zero the gradients, backpropagate ``loss``, clip, step; returns False when skipped.

        ``last_grad_norm`` holds the gradient norm before clipping.
        """
        return self.step_groups(name, loss, [(optimizer, params, max_grad_norm)])

    def step_groups(self, name: str, loss: torch.Tensor,
                    groups: Sequence[tuple[torch.optim.Optimizer, Iterable[torch.Tensor] | None, float | None]]
                    ) -> bool:
        """One backward of ``loss``, then each (optimizer, params, max_grad_norm) group clipped
        and stepped; nothing is stepped when the loss or any group's gradient is not finite.
        """
        for optimizer, _, _ in groups:
            optimizer.zero_grad(set_to_none=True)
        loss.backward()  # a non-finite loss gives non-finite gradients, which are then dropped
        norms = []
        for optimizer, params, max_grad_norm in groups:
            if params is None:
                params = [p for group in optimizer.param_groups for p in group["params"]]
            params = [p for p in params if p.grad is not None]
            if not params:
                norms.append(loss.new_zeros(()))
            elif max_grad_norm is not None and math.isfinite(max_grad_norm):
                norms.append(torch.nn.utils.clip_grad_norm_(params, max_grad_norm))
            else:
                norms.append(torch.nn.utils.get_total_norm([p.grad for p in params]))
        # one read from the device per update: the loss and the gradient norm together
        total = torch.stack([n.float() for n in norms]).norm()
        loss_value, self.last_grad_norm = torch.stack([loss.detach().float().sum(), total]).tolist()
        if not math.isfinite(loss_value):
            return self._skip(name, "loss", [g[0] for g in groups])
        if not math.isfinite(self.last_grad_norm):
            return self._skip(name, "gradient", [g[0] for g in groups])
        if self.last_grad_norm >= GRADIENT_NORM_LIMIT:  # applied, it would put an inf in the optimiser state
            return self._skip(name, f"gradient (norm {self.last_grad_norm:.3g} >= {GRADIENT_NORM_LIMIT:.0e})",
                              [g[0] for g in groups])
        for optimizer, _, _ in groups:
            optimizer.step()
        self.consecutive[name] = 0
        return True

    def _skip(self, name: str, what: str, optimizers: Sequence[torch.optim.Optimizer]) -> bool:
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        self.skipped += 1
        count = self.consecutive[name] = self.consecutive.get(name, 0) + 1
        if count >= self.max_consecutive:
            raise NonFiniteError(self.component, name, what, count)
        return False

    def state_dict(self) -> dict:
        return {"skipped": self.skipped, "consecutive": dict(self.consecutive)}

    def load_state_dict(self, state: dict) -> None:
        """Raises TypeError where a count is not an int (a damaged checkpoint: ``int()`` would
        take a one-element tensor or a float and hide the damage)."""
        counts = [state["skipped"], *state["consecutive"].values()]
        bad = [value for value in counts if isinstance(value, bool) or not isinstance(value, int)]
        if bad:
            raise TypeError(f"guard state counts must be ints, got {type(bad[0]).__name__} {bad[0]!r}")
        self.skipped = state["skipped"]
        self.consecutive = {str(k): v for k, v in state["consecutive"].items()}
