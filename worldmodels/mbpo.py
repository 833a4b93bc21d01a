"""MBPO: a probabilistic ensemble of MLPs as a Dyna world model (Janner et al., 2019).

Three objects, one job each:

- ``ProbabilisticEnsemble``: E independent MLPs run as one batched forward
  (weights are ``[E, in, out]`` tensors, ``torch.baddbmm``), each predicting a
  diagonal Gaussian over standardised ``[reward, next_obs - obs]`` with a
  soft-bounded log-variance, plus an optional termination logit; input and
  target normalisers fitted on data.
- ``EnsembleTrainer``: fits an ensemble to a dataset: Gaussian NLL with the
  log-variance bound regulariser and per-layer weight decay, a holdout split,
  bootstrapped and independently shuffled batches per member, early stopping
  with per-member best snapshots, bounded epochs and holdout size, elites by
  holdout error.
- ``MbpoWorldModel`` (registered as ``mbpo``): reads the replay buffer, trains
  on schedule, and steps imagined transitions (one elite per row, sampled with
  the model's own generator; termination from the env registry or the learned
  head).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from easydict import EasyDict
from torch import nn

from registry import WORLD_MODEL_REGISTRY
from wm_core.config import ConfigError, check_choice, check_range
from wm_core.protocols import TransitionBuffer
from wm_core.utils import adam, check_rank
from wm_envs.termination import TerminationFn, never_done, termination_fn
from worldmodels.base import DynaWorldModel, Metrics
from worldmodels.nets import activation

TERMINATION_MODES = ("auto", "registry", "learned", "none")
UNCERTAINTIES = ("max_std", "disagreement")  # MOPO's reward-penalty measures


class EnsembleLinear(nn.Module):
    """``ensemble_size`` independent affine maps applied in one batched matmul.

    Weights are drawn from a truncated normal with std ``1 / (2 sqrt(in_dim))``
    (as MBPO), each member from its own draws of ``generator``.

    Shapes:
        input [E, B, in_dim] -> output [E, B, out_dim]; with ``members`` (K indices),
        input [K, B, in_dim] -> output [K, B, out_dim]
    """

    def __init__(self, ensemble_size: int, in_dim: int, out_dim: int, generator: torch.Generator) -> None:
        super().__init__()
        std = 1.0 / (2.0 * math.sqrt(in_dim))
        weight = torch.empty(ensemble_size, in_dim, out_dim)
        nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std, generator=generator)
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.zeros(ensemble_size, 1, out_dim))

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        weight, bias = self.weight, self.bias
        if members is not None:
            weight, bias = weight.index_select(0, members), bias.index_select(0, members)
        return torch.baddbmm(bias, x, weight)


class ProbabilisticEnsemble(nn.Module):
    """E MLPs, each mapping normalised ``[obs, action]`` to a diagonal Gaussian (and a logit).

    Each member predicts the Gaussian in normalised target space, with a
    log-variance soft-bounded between the learned ``min_logvar`` and
    ``max_logvar`` (shared by the members, as in MBPO); ``forward`` maps it
    back to target units. Input and target means and stds are buffers fitted
    on data (``fit_input_normalizer``, ``fit_target_normalizer``; identity until
    fitted); ``elites`` holds the indices of the members used for prediction.

    Args:
        in_dim: input size (obs + action).
        gaussian_dim: size of the predicted Gaussian (1 reward + obs deltas).
        logit_dim: extra unbounded outputs (1 for a learned termination head, else 0).
        ensemble_size: number of members E.
        elite_size: number of elites K <= E.
        hidden_sizes: widths of the hidden layers.
        act: activation name (see ``worldmodels.nets.ACTIVATIONS``).
        seed: seeds the members' initialisation.
    """

    def __init__(self, in_dim: int, gaussian_dim: int, logit_dim: int = 0, *, ensemble_size: int = 7,
                 elite_size: int = 5, hidden_sizes: Sequence[int] = (200, 200, 200, 200), act: str = "silu",
                 seed: int = 0) -> None:
        super().__init__()
        if not 1 <= elite_size <= ensemble_size:
            raise ConfigError(f"need 1 <= elite_size <= ensemble_size, got {elite_size} and {ensemble_size}")
        self.in_dim, self.gaussian_dim, self.logit_dim = in_dim, gaussian_dim, logit_dim
        self.ensemble_size, self.elite_size = ensemble_size, elite_size
        generator = torch.Generator().manual_seed(int(seed))
        widths = [in_dim, *hidden_sizes, 2 * gaussian_dim + logit_dim]
        self.layers = nn.ModuleList(EnsembleLinear(ensemble_size, a, b, generator)
                                    for a, b in pairwise(widths))
        self.activation = activation(act)()
        self.max_logvar = nn.Parameter(torch.full((1, 1, gaussian_dim), 0.5))
        self.min_logvar = nn.Parameter(torch.full((1, 1, gaussian_dim), -10.0))
        self.register_buffer("input_mean", torch.zeros(in_dim))
        self.register_buffer("input_std", torch.ones(in_dim))
        self.register_buffer("target_mean", torch.zeros(gaussian_dim))
        self.register_buffer("target_std", torch.ones(gaussian_dim))
        self.register_buffer("elites", torch.arange(elite_size))
        self.register_buffer("trained", torch.tensor(False))  # set by the trainer after a fit

    @staticmethod
    def _mean_std(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_rank("values", values, 2)
        mean = values.mean(dim=0)
        std = values.std(dim=0, unbiased=False) if values.shape[0] > 1 else torch.ones_like(mean)
        return mean, torch.where(std < 1e-12, torch.ones_like(std), std)

    @torch.no_grad()
    def fit_input_normalizer(self, inputs: torch.Tensor) -> None:
        """Set the input mean and std from data; a constant input keeps std 1.

        Once the ensemble has been trained, the first layer is rescaled so that
        every member computes the same function of raw inputs as before.

        Shapes:
            inputs: [N, in_dim]
        """
        mean, std = self._mean_std(inputs)
        if bool(self.trained):
            first = self.layers[0]
            # h = W^T (x - mean) / std + b must not change when mean and std do
            shift = (mean - self.input_mean) / self.input_std
            first.bias.add_(torch.einsum("i,eio->eo", shift, first.weight).unsqueeze(1))
            first.weight.mul_((std / self.input_std).view(1, -1, 1))
        self.input_mean.copy_(mean)
        self.input_std.copy_(std)

    @torch.no_grad()
    def fit_target_normalizer(self, targets: torch.Tensor) -> None:
        """Set the target mean and std from data; a constant target keeps std 1.

        Once the ensemble has been trained, the output layer and the log-variance
        bounds are shifted and rescaled so that predictions in target units do
        not change (the soft bounds commute with a constant shift).

        Shapes:
            targets: [N, G]
        """
        mean, std = self._mean_std(targets)
        if bool(self.trained):
            g, last = self.gaussian_dim, self.layers[-1]
            ratio = self.target_std / std
            last.weight[..., :g].mul_(ratio)
            last.bias[..., :g].mul_(ratio).add_((self.target_mean - mean) / std)
            log_shift = 2.0 * torch.log(ratio)
            last.bias[..., g:2 * g].add_(log_shift)
            self.max_logvar.add_(log_shift)
            self.min_logvar.add_(log_shift)
        self.target_mean.copy_(mean)
        self.target_std.copy_(std)

    def normalize_targets(self, targets: torch.Tensor) -> torch.Tensor:
        """Targets in the space the members predict in. Shapes: [..., G] -> [..., G]"""
        return (targets - self.target_mean) / self.target_std

    def forward_normalized(self, inputs: torch.Tensor, members: torch.Tensor | None = None
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-member mean and bounded log-variance in normalised target space, and logits.

        Args:
            inputs: raw (unnormalised) ``[obs, action]``, one batch per member or
                one batch shared by all members.
            members: run only these members (K indices); all E when None.

        Shapes:
            inputs: [M, B, in_dim] or [B, in_dim], M = K if ``members`` else E
            -> mean [M, B, G], logvar [M, B, G], logits [M, B, L]
        """
        count = self.ensemble_size if members is None else members.shape[0]
        if inputs.dim() == 2:
            inputs = inputs.unsqueeze(0).expand(count, -1, -1)
        check_rank("inputs", inputs, 3)
        if inputs.shape[0] != count or inputs.shape[-1] != self.in_dim:
            raise ValueError(f"inputs must have shape [{count}, B, {self.in_dim}], got {tuple(inputs.shape)}")
        x = (inputs - self.input_mean) / self.input_std
        for layer in self.layers[:-1]:
            x = self.activation(layer(x, members))
        out = self.layers[-1](x, members).float()  # float32 heads under bf16 autocast
        g = self.gaussian_dim
        mean, raw_logvar, logits = out[..., :g], out[..., g:2 * g], out[..., 2 * g:]
        logvar = self.max_logvar - F.softplus(self.max_logvar - raw_logvar)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return mean, logvar, logits

    def forward(self, inputs: torch.Tensor, members: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-member Gaussian mean and log-variance in target units, and logits.

        Shapes:
            as ``forward_normalized``
        """
        mean, logvar, logits = self.forward_normalized(inputs, members)
        return (mean * self.target_std + self.target_mean, logvar + 2.0 * torch.log(self.target_std), logits)

    def weight_decay_loss(self, decays: Sequence[float]) -> torch.Tensor:
        """``sum_l decay_l * ||W_l||^2 / 2`` over the layers' weights (not biases)."""
        return sum(decay * 0.5 * layer.weight.pow(2).sum() for decay, layer in zip(decays, self.layers, strict=True))

    def logvar_bound_loss(self) -> torch.Tensor:
        """Pushes the learned bounds together: ``sum(max_logvar) - sum(min_logvar)``."""
        return self.max_logvar.sum() - self.min_logvar.sum()

    def member_parameters(self) -> list[nn.Parameter]:
        """Parameters with a leading ensemble dimension (one slice per member)."""
        return [p for layer in self.layers for p in (layer.weight, layer.bias)]


def gaussian_nll(mean: torch.Tensor, logvar: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-member Gaussian negative log-likelihood without the constant, averaged over batch and dims.

    Shapes:
        mean, logvar, target: [E, B, G] -> [E]
    """
    check_rank("mean", mean, 3)
    return ((mean - target).pow(2) * torch.exp(-logvar) + logvar).mean(dim=(1, 2))


def squared_error(mean: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-member mean squared error.

    Shapes:
        mean, target: [E, B, G] -> [E]
    """
    check_rank("mean", mean, 3)
    return (mean - target).pow(2).mean(dim=(1, 2))


@dataclass
class Dataset:
    """Model inputs and targets; ``terminated`` only where a termination head learns.

    Shapes:
        inputs [N, in_dim], targets [N, G], terminated [N] or None
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    terminated: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.inputs.shape[0]

    def subset(self, index: torch.Tensor) -> Dataset:
        terminated = None if self.terminated is None else self.terminated[index]
        return Dataset(self.inputs[index], self.targets[index], terminated)


class EnsembleTrainer:
    """Fits a ``ProbabilisticEnsemble``: holdout split, bootstrap, early stopping, elites.

    Each call to ``fit`` re-splits the data (holdout capped at ``max_holdout``),
    refits the normalisers on the training part (without changing what a
    trained ensemble predicts), draws each member's own bootstrap sample, and
    trains until no member improved its holdout score (standardised MSE, plus
    the termination cross-entropy with a termination head) by
    ``improvement_threshold`` (relative) for ``max_epochs_since_update``
    epochs, or ``max_epochs`` / ``max_train_steps`` run out. An epoch is one
    pass over each member's rows, or ``min_epoch_batches`` batches where that
    is more, so that early stopping judges a small buffer after enough
    gradient steps to matter. Each member ends with its best weights (as in
    MBPO, the first epoch always counts as an improvement, so new data is
    always learnt from); elites are the members of lowest holdout score.
    Adam's moments are reset at each fit (``reset_optimizer``): moments left
    by a converged fit turn the first gradients on new data into very large
    steps.

    Args:
        ensemble: the model to train.
        generator: shuffling, splitting and bootstrap randomness.
        cfg: the hyper-parameters, keys as in ``MbpoWorldModel.config`` (``learning_rate``,
            ``weight_decays``, ``batch_size``, ``holdout_ratio``, ``max_holdout``, ``max_epochs``,
            ``max_epochs_since_update``, ``improvement_threshold``, ``min_epoch_batches``,
            ``max_train_steps``, ``bootstrap``, ``logvar_bound_coef``, ``termination_coef``,
            ``normalize_targets``, ``reset_optimizer``); other keys are ignored.
        guard: optional ``UpdateGuard``-like object whose ``step(name, loss, optimizer)``
            runs each update (skipping non-finite ones); plain Adam steps when None.
        autocast: returns the context each training forward pass runs in (the model's
            ``precision``); no autocast by default.
    """

    def __init__(self, ensemble: ProbabilisticEnsemble, generator: torch.Generator, cfg: Mapping, *,
                 guard: Any = None, autocast: Callable[[], AbstractContextManager] = nullcontext) -> None:
        weight_decays, holdout_ratio = cfg["weight_decays"], cfg["holdout_ratio"]
        if len(weight_decays) != len(ensemble.layers):
            raise ConfigError(f"world_model.weight_decays needs one value per layer ({len(ensemble.layers)}: "
                              f"hidden layers + output), got {len(weight_decays)}")
        check_range(cfg, "holdout_ratio", 0, 1, high_open=True, prefix="world_model")
        for name in ("batch_size", "max_epochs", "max_epochs_since_update", "min_epoch_batches"):
            check_range(cfg, name, 1, prefix="world_model")
        self.ensemble = ensemble
        self.generator = generator
        # the hyper-parameters, read where used (typed: a config may hold 1e3 for an int)
        self.cfg = EasyDict(
            weight_decays=[float(d) for d in weight_decays], batch_size=int(cfg["batch_size"]),
            holdout_ratio=float(holdout_ratio), max_holdout=int(cfg["max_holdout"]),
            max_epochs=int(cfg["max_epochs"]), max_epochs_since_update=int(cfg["max_epochs_since_update"]),
            improvement_threshold=float(cfg["improvement_threshold"]), min_epoch_batches=int(cfg["min_epoch_batches"]),
            max_train_steps=None if cfg["max_train_steps"] is None else int(cfg["max_train_steps"]),
            bootstrap=bool(cfg["bootstrap"]), logvar_bound_coef=float(cfg["logvar_bound_coef"]),
            termination_coef=float(cfg["termination_coef"]), normalize_targets=bool(cfg["normalize_targets"]),
            reset_optimizer=bool(cfg["reset_optimizer"]))
        self.guard = guard
        self.autocast = autocast  # the precision of training steps' forward passes
        self.optimizer = adam(ensemble.parameters(), lr=cfg["learning_rate"])
        self.history: list[torch.Tensor] = []  # per-epoch holdout scores [E] of the latest fit

    # -- losses ---------------------------------------------------------
    def loss(self, batch: Dataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training loss of one batch per member: sum of members' NLL + regularisers.

        NLL and MSE are measured in normalised target space (each target
        dimension weighs the same whatever its units).

        Shapes:
            batch.inputs [E, B, in], batch.targets [E, B, G], batch.terminated [E, B]
            -> loss [], nll [E], mse [E]
        """
        mean, logvar, logits = self.ensemble.forward_normalized(batch.inputs)
        targets = self.ensemble.normalize_targets(batch.targets)
        nll = gaussian_nll(mean, logvar, targets)
        loss = nll.sum() + self.cfg.logvar_bound_coef * self.ensemble.logvar_bound_loss()
        loss = loss + self.ensemble.weight_decay_loss(self.cfg.weight_decays)
        if batch.terminated is not None and self.ensemble.logit_dim:
            bce = F.binary_cross_entropy_with_logits(logits[..., 0], batch.terminated, reduction="none")
            loss = loss + self.cfg.termination_coef * bce.mean(dim=1).sum()
        return loss, nll.detach(), squared_error(mean, targets).detach()

    @torch.no_grad()
    def evaluate(self, data: Dataset, chunk: int = 8192) -> dict[str, torch.Tensor]:
        """Per-member errors on ``data`` (the same rows for every member).

        ``mse`` is in target units (MBPO's holdout error); ``normalized_mse`` and
        ``nll`` in normalised target space. ``score`` is what early stopping and
        elite selection minimise: ``normalized_mse``, plus ``termination_coef``
        times the termination cross-entropy where a termination head learns.

        Shapes:
            data.inputs [N, in] -> {"mse", "normalized_mse", "nll", "score": [E];
            with a head also "termination_bce", "termination_accuracy": [E]}
        """
        sums: dict[str, torch.Tensor] = {}
        scale = self.ensemble.target_std.pow(2)
        for start in range(0, len(data), chunk):
            part = data.subset(torch.arange(start, min(start + chunk, len(data)), device=data.inputs.device))
            mean, logvar, logits = self.ensemble.forward_normalized(part.inputs)
            target = self.ensemble.normalize_targets(part.targets).unsqueeze(0).expand_as(mean)
            error = (mean - target).pow(2)
            weight = len(part)
            values = {"mse": (error * scale).mean(dim=(1, 2)) * weight,
                      "normalized_mse": error.mean(dim=(1, 2)) * weight,
                      "nll": gaussian_nll(mean, logvar, target) * weight}
            if part.terminated is not None and self.ensemble.logit_dim:
                flags = part.terminated.unsqueeze(0).expand_as(logits[..., 0])
                bce = F.binary_cross_entropy_with_logits(logits[..., 0], flags, reduction="none")
                values["termination_bce"] = bce.sum(dim=1)
                values["termination_accuracy"] = ((logits[..., 0] > 0).float() == flags).float().sum(dim=1)
            for key, value in values.items():
                sums[key] = sums.get(key, 0) + value
        result = {key: value / len(data) for key, value in sums.items()}
        result["score"] = result["normalized_mse"] + self.cfg.termination_coef * result.get("termination_bce", 0.0)
        return result

    # -- fitting --------------------------------------------------------
    def split(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Random train and holdout indices; holdout is ``holdout_ratio`` of ``size``, at most ``max_holdout``."""
        device = self.ensemble.input_mean.device
        perm = torch.randperm(size, generator=self.generator, device=device)
        n_holdout = min(int(size * self.cfg.holdout_ratio), self.cfg.max_holdout, size - 1)
        return perm[n_holdout:], perm[:n_holdout]

    def member_indices(self, train_size: int) -> torch.Tensor:
        """Each member's own sample of training rows (bootstrap with replacement, or all rows).

        Shapes:
            -> [E, train_size]
        """
        device = self.ensemble.input_mean.device
        size = (self.ensemble.ensemble_size, train_size)
        if self.cfg.bootstrap:
            return torch.randint(0, train_size, size, generator=self.generator, device=device)
        return torch.arange(train_size, device=device).expand(size)

    def shuffled(self, member_index: torch.Tensor) -> torch.Tensor:
        """``member_index`` with each member's row order permuted independently."""
        noise = torch.rand(member_index.shape, generator=self.generator, device=member_index.device)
        return member_index.gather(1, noise.argsort(dim=1))

    def epoch_order(self, member_index: torch.Tensor) -> torch.Tensor:
        """One epoch's rows per member: a shuffled pass, repeated up to ``min_epoch_batches`` batches.

        Shapes:
            member_index [E, N] -> [E, max(N, min_epoch_batches * batch_size)]
        """
        needed = self.cfg.min_epoch_batches * self.cfg.batch_size
        passes = [self.shuffled(member_index)]
        while sum(p.shape[1] for p in passes) < needed:
            passes.append(self.shuffled(member_index))
        order = torch.cat(passes, dim=1)
        return order if len(passes) == 1 else order[:, :needed]

    def fit(self, data: Dataset) -> Metrics:
        """Train on ``data`` with a fresh holdout split; returns scalar metrics.

        Shapes:
            data.inputs [N, in], data.targets [N, G], data.terminated [N] or None
        """
        start_time = time.perf_counter()
        if len(data) < 2:
            raise ValueError(f"the ensemble needs at least 2 transitions to train, got {len(data)}")
        train_index, holdout_index = self.split(len(data))
        train, holdout = data.subset(train_index), data.subset(holdout_index)
        if len(holdout) == 0:
            holdout = train  # no split asked for: stop and choose elites on the training data
        self.ensemble.fit_input_normalizer(train.inputs)
        if self.cfg.normalize_targets:
            self.ensemble.fit_target_normalizer(train.targets)
        member_index = self.member_indices(len(train))
        if self.cfg.reset_optimizer:
            self.optimizer.state.clear()

        # As MBPO: the first epoch always counts, so new data is always learnt from.
        best = torch.full((self.ensemble.ensemble_size,), math.inf, device=self.ensemble.input_mean.device)
        snapshot = [p.detach().clone() for p in self.ensemble.member_parameters()]
        epochs = steps = epochs_since_update = 0
        train_nll = train_mse = torch.zeros(self.ensemble.ensemble_size)
        self.history = []
        while epochs < self.cfg.max_epochs and not self._out_of_steps(steps):
            train_nll, train_mse, steps = self._epoch(train, self.epoch_order(member_index), steps)
            epochs += 1
            current = self.evaluate(holdout)["score"]
            self.history.append(current)
            improved = torch.isinf(best) | ((best - current) > self.cfg.improvement_threshold * best.abs())
            if bool(improved.any()):
                best = torch.where(improved, current, best)
                self._save_members(snapshot, improved)
                epochs_since_update = 0
            else:
                epochs_since_update += 1
            if epochs_since_update >= self.cfg.max_epochs_since_update:
                break
        self._restore_members(snapshot)
        self.ensemble.trained.fill_(True)
        final = self.evaluate(holdout)
        self.ensemble.elites.copy_(final["score"].argsort()[: self.ensemble.elite_size])
        return self._metrics(final, train_nll, train_mse, epochs, steps, len(train), len(holdout_index),
                             time.perf_counter() - start_time)

    def _out_of_steps(self, steps: int) -> bool:
        return self.cfg.max_train_steps is not None and steps >= self.cfg.max_train_steps

    def _epoch(self, train: Dataset, order: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """One pass over every member's rows in ``order``; returns mean NLL and MSE per member."""
        nll_sum = mse_sum = 0
        batches = 0
        for start in range(0, order.shape[1], self.cfg.batch_size):
            if self._out_of_steps(steps):
                break
            batch = train.subset(order[:, start:start + self.cfg.batch_size])
            with self.autocast():
                loss, nll, mse = self.loss(batch)
            if self.guard is not None:  # skips (and counts) a step whose loss or gradient is not finite
                self.guard.step("ensemble", loss, self.optimizer)
            else:
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
            nll_sum, mse_sum, batches, steps = nll_sum + nll, mse_sum + mse, batches + 1, steps + 1
        return nll_sum / max(batches, 1), mse_sum / max(batches, 1), steps

    @torch.no_grad()
    def _save_members(self, snapshot: list[torch.Tensor], members: torch.Tensor) -> None:
        for saved, param in zip(snapshot, self.ensemble.member_parameters(), strict=True):
            saved[members] = param[members]

    @torch.no_grad()
    def _restore_members(self, snapshot: list[torch.Tensor]) -> None:
        for saved, param in zip(snapshot, self.ensemble.member_parameters(), strict=True):
            param.copy_(saved)

    def _metrics(self, final: dict[str, torch.Tensor], train_nll: torch.Tensor, train_mse: torch.Tensor,
                 epochs: int, steps: int, n_train: int, n_holdout: int, seconds: float) -> Metrics:
        elites = self.ensemble.elites
        metrics = {
            "train_nll": float(torch.as_tensor(train_nll).mean()),  # normalised target space
            "train_mse_normalized": float(torch.as_tensor(train_mse).mean()),
            "holdout_nll": float(final["nll"][elites].mean()),
            "holdout_mse": float(final["mse"][elites].mean()),  # target units
            "holdout_mse_normalized": float(final["normalized_mse"][elites].mean()),
            "holdout_mse_all": float(final["mse"].mean()),
            "epochs": float(epochs),
            "train_steps": float(steps),
            "train_samples": float(n_train),
            "holdout_samples": float(n_holdout),
            "train_seconds": seconds,
            "max_logvar": float(self.ensemble.max_logvar.detach().mean()),
            "min_logvar": float(self.ensemble.min_logvar.detach().mean()),
        }
        if "termination_accuracy" in final:
            metrics["holdout_termination_accuracy"] = float(final["termination_accuracy"][elites].mean())
        for rank, member in enumerate(elites.tolist()):
            metrics[f"elite_{rank}"] = float(member)
        return metrics


@WORLD_MODEL_REGISTRY.register("mbpo")
class MbpoWorldModel(DynaWorldModel):
    """MBPO's Dyna world model: a probabilistic ensemble that fills the imagination buffer.

    ``step`` predicts ``reward`` and ``next_obs = obs + delta`` from one elite
    per row (chosen with ``self.generator``), sampled from its Gaussian or its
    mean (``deterministic``). ``done`` comes from the env registry's
    termination function for ``env_id`` or from a learned termination head.
    """

    progress_metric: ClassVar[str] = "holdout_mse"  # the elites' error on held-out transitions
    config: ClassVar[dict] = {
        "precision": "auto",  # bf16 where this machine runs it natively: returns measured to hold (README)
        "type": "mbpo",
        "env_id": None,  # gymnasium id; selects a registered termination function (the pipeline fills it)
        "termination": "auto",  # auto: registered function, else learned head | registry | learned | none
        "ensemble_size": 7,  # members E
        "elite_size": 5,  # members used for prediction, lowest holdout MSE
        "hidden_sizes": [200, 200, 200, 200],  # widths of each member's hidden layers
        "activation": "silu",
        "weight_decays": [2.5e-5, 5e-5, 7.5e-5, 7.5e-5, 1e-4],  # L2 per layer (hidden layers + output)
        "learning_rate": 1e-3,
        "batch_size": 256,  # rows per member per gradient step
        "holdout_ratio": 0.2,  # fraction of the buffer held out for early stopping and elites
        "max_holdout": 5000,  # at most this many holdout rows, so evaluation cost stays bounded
        "max_epochs": 50,  # at most this many epochs per training, so retraining cost stays bounded
        "max_epochs_since_update": 5,  # early stopping patience (epochs without holdout improvement)
        "improvement_threshold": 0.01,  # relative holdout score improvement that counts
        "min_epoch_batches": 10,  # an epoch is at least this many batches (small buffers)
        "max_train_steps": None,  # optional bound on gradient steps per training
        "bootstrap": True,  # each member trains on its own resample of the training rows
        "normalize_targets": True,  # members predict standardised reward and deltas (scale-free training)
        "reset_optimizer": True,  # fresh Adam moments at each training (stale ones blow up on new data)
        "logvar_bound_coef": 0.01,  # weight of the learned log-variance bound regulariser
        "termination_coef": 1.0,  # weight of the termination head's cross-entropy
        "deterministic": False,  # step returns the chosen elite's mean instead of a sample
        "eval_samples": 1000,  # eval() measures error on this many newest transitions
        "train_freq": 250,
        "eval_freq": 1000,
        "rollout_batch_size": 10_000,
        "rollout_freq": 250,
        # MOPO (offline RL): imagined rewards become r - reward_penalty * u(s, a), u the elites'
        # uncertainty: "max_std" the largest norm of an elite's predicted std (MOPO's choice),
        # "disagreement" the norm of the std of the elites' means; 0 turns it off
        "reward_penalty": 0.0,
        "uncertainty": "max_std",
    }

    def __init__(self, cfg: Mapping | None, env_spec: Any, logger: Any = None, *, seed: int = 0) -> None:
        super().__init__(cfg, env_spec, logger, seed=seed)
        c = self.cfg
        check_choice(c, "termination", TERMINATION_MODES, prefix="world_model")
        check_choice(c, "uncertainty", UNCERTAINTIES, prefix="world_model")
        if not c.reward_penalty >= 0:
            raise ConfigError(f"world_model.reward_penalty must be >= 0 (MOPO's lambda), got {c.reward_penalty}")
        obs_shape, action_shape = self.observation_space.shape, self.action_space.shape
        self.discrete = hasattr(self.action_space, "n")  # actions enter the members one-hot
        if obs_shape is None or len(obs_shape) != 1 or (
                not self.discrete and (action_shape is None or len(action_shape) != 1)):
            raise ConfigError("world model 'mbpo' needs a 1-D Box observation space and a 1-D Box or Discrete "
                              f"action space, got {self.observation_space} and {self.action_space}")
        self.obs_dim = int(obs_shape[0])
        self.action_dim = int(self.action_space.n) if self.discrete else int(action_shape[0])
        self.termination_fn = self._termination_fn()
        self.ensemble = ProbabilisticEnsemble(
            self.obs_dim + self.action_dim, 1 + self.obs_dim, 0 if self.termination_fn else 1,
            ensemble_size=c.ensemble_size, elite_size=c.elite_size, hidden_sizes=c.hidden_sizes,
            act=c.activation, seed=self.seed).to(self.device)
        self.nets["ensemble"] = self.ensemble
        self.trainer = EnsembleTrainer(self.ensemble, self.generator, c, guard=self.guard, autocast=self.autocast)
        self.optimizers["ensemble"] = self.trainer.optimizer

    @property
    def trained(self) -> bool:
        """Whether the ensemble has been fitted at least once (kept in its state dict)."""
        return bool(self.ensemble.trained)

    def _termination_fn(self) -> TerminationFn | None:
        """The registered function, or None where the learned head decides."""
        mode, env_id = self.cfg.termination, self.cfg.env_id
        if mode == "none":
            return never_done
        if mode == "learned":
            return None
        found = termination_fn(env_id)
        if found is None and mode == "registry":
            raise ConfigError(f"world_model.termination is 'registry' but no termination function is "
                              f"registered for env_id {env_id!r}; register '<EnvName>' in "
                              "TERMINATION_REGISTRY or use termination='learned'")
        return found

    # -- data -----------------------------------------------------------
    def dataset(self, env_buffer: TransitionBuffer, index: np.ndarray | None = None) -> Dataset:
        """Model inputs ``[obs, action]`` and targets ``[reward, next_obs - obs]`` from the buffer.

        Args:
            env_buffer: a ``TransitionBuffer`` (``transitions`` gives its stored rows).
            index: rows to read; every stored row when None.

        Shapes:
            -> inputs [N, O + A], targets [N, 1 + O], terminated [N] (with a termination head)
        """
        arrays = env_buffer.transitions(index)
        count = len(arrays["reward"])
        tensors = {key: torch.as_tensor(np.asarray(value, dtype=np.float32), device=self.device)
                   for key, value in arrays.items()}
        obs = tensors["obs"].reshape(count, self.obs_dim)
        action = self.action_input(tensors["action"])
        next_obs = tensors["next_obs"].reshape(count, self.obs_dim)
        inputs = torch.cat([obs, action], dim=-1)
        targets = torch.cat([tensors["reward"].unsqueeze(-1), next_obs - obs], dim=-1)
        terminated = tensors["terminated"] if self.ensemble.logit_dim else None
        return Dataset(inputs, targets, terminated)

    # -- learning -------------------------------------------------------
    def train(self, env_buffer: Any, envstep: int, train_iter: int) -> Metrics:
        """Fit the ensemble to every transition in ``env_buffer``; returns metrics."""
        return self.trainer.fit(self.dataset(env_buffer))

    @torch.no_grad()
    def eval(self, env_buffer: Any, envstep: int, train_iter: int) -> Metrics:
        """Elite MSE and NLL on the ``eval_samples`` newest transitions (mostly unseen in training)."""
        size = len(env_buffer)
        if size == 0 or not self.trained:
            return {}
        data = self.dataset(env_buffer, env_buffer.newest(self.cfg.eval_samples))
        result = self.trainer.evaluate(data)
        elites = self.ensemble.elites
        mean, _, _ = self.ensemble(data.inputs, elites)
        metrics = {"recent_mse": float(result["mse"][elites].mean()),
                   "recent_mse_normalized": float(result["normalized_mse"][elites].mean()),
                   "recent_nll": float(result["nll"][elites].mean()),
                   "recent_reward_mse": float((mean[..., 0] - data.targets[:, 0]).pow(2).mean()),
                   "recent_obs_mse": float((mean[..., 1:] - data.targets[:, 1:]).pow(2).mean())}
        if "termination_accuracy" in result:
            metrics["recent_termination_accuracy"] = float(result["termination_accuracy"][elites].mean())
        return metrics

    # -- imagination ----------------------------------------------------
    def action_input(self, action: torch.Tensor) -> torch.Tensor:
        """Actions as the members take them: float, one-hot for a Discrete space.

        Shapes:
            action [B, A] (Discrete: [B] indices or [B, 1]) -> [B, A] (Discrete: [B, n])
        """
        action = torch.as_tensor(action, device=self.device)
        if self.discrete:
            return F.one_hot(action.long().reshape(-1), self.action_dim).float()
        check_rank("action", action, 2)
        return action.float()

    def model_inputs(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The members' raw input ``[obs, action]``.

        Shapes:
            obs [B, O]; action [B, A] (Discrete: [B]) -> [B, O + A] (Discrete: [B, O + n])
        """
        check_rank("obs", obs, 2)
        return torch.cat([obs.to(self.device, torch.float32), self.action_input(action)], dim=-1)

    @property
    def planning_members(self) -> int:
        """Members a planner's particle may follow (``step_members``): the elites."""
        return int(self.ensemble.elites.shape[0])

    @torch.no_grad()
    def predict(self, obs: torch.Tensor, action: torch.Tensor, deterministic: bool | None = None,
                choice: torch.Tensor | None = None, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One elite per row, all rows in one forward padded by elite; sampled or mean prediction.

        Rows are grouped by their elite into a ``[K, M, in]`` batch (M the largest
        group), so each row costs one member's forward, not K.

        Args:
            choice: each row's elite (index into the elites); random when None.
            generator: draws the elites and the Gaussian samples; ``self.generator`` when None.

        Shapes:
            obs: [B, O]; action: [B, A] (Discrete: [B]); choice [B] ->
            reward [B], next_obs [B, O], termination logit [B] (0 if no head)
        """
        deterministic = self.cfg.deterministic if deterministic is None else deterministic
        inputs = self.model_inputs(obs, action)
        batch = inputs.shape[0]
        elites = self.ensemble.elites
        generator = self.generator if generator is None else generator
        if choice is None:
            choice = torch.randint(0, elites.shape[0], (batch,), generator=generator, device=self.device)
        elif choice.shape != (batch,) or int(choice.max()) >= elites.shape[0] or int(choice.min()) < 0:
            raise ValueError(f"choice must be [B] = [{batch}] indices into the {elites.shape[0]} elites, got "
                             f"shape {tuple(choice.shape)}")
        mean, logvar, logits = self._forward_grouped(inputs, choice, elites)
        if deterministic:
            sample = mean
        else:
            noise = torch.randn(mean.shape, generator=generator, device=self.device)
            sample = mean + noise * torch.exp(0.5 * logvar)
        logit = logits[:, 0] if logits.shape[-1] else torch.zeros(batch, device=self.device)
        return sample[:, 0], inputs[:, : self.obs_dim] + sample[:, 1:], logit

    def _forward_grouped(self, inputs: torch.Tensor, choice: torch.Tensor, members: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run row ``i`` through member ``members[choice[i]]`` in one padded batched forward.

        Shapes:
            inputs [B, in], choice [B] in [0, K), members [K] -> mean [B, G], logvar [B, G], logits [B, L]
        """
        count = members.shape[0]
        order = choice.argsort(stable=True)
        group = choice[order]
        sizes = torch.bincount(choice, minlength=count)
        offsets = sizes.cumsum(0) - sizes
        slot = torch.arange(inputs.shape[0], device=inputs.device) - offsets[group]
        padded = inputs.new_zeros(count, int(sizes.max()), inputs.shape[-1])
        padded[group, slot] = inputs[order]
        outputs = self.ensemble(padded, members)
        unsorted = []
        for out in outputs:
            rows = out[group, slot]
            result = torch.empty_like(rows)
            result[order] = rows
            unsorted.append(result)
        return unsorted[0], unsorted[1], unsorted[2]

    @torch.no_grad()
    def step(self, obs: torch.Tensor, action: torch.Tensor, deterministic: bool | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One imagined step from one randomly chosen elite per row.

        Args:
            obs, action: real or imagined states and the actions taken.
            deterministic: return the elite's mean; ``cfg.deterministic`` when None.

        Shapes:
            obs: [B, O]; action: [B, A] -> reward [B], next_obs [B, O], done [B] (bool)
        """
        reward, next_obs, logit = self.predict(obs, action, deterministic)
        return reward, next_obs, self._done(obs, action, next_obs, logit)

    def _done(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor, logit: torch.Tensor
              ) -> torch.Tensor:
        if self.termination_fn is not None:
            return self.termination_fn(obs.to(self.device), self.action_input(action), next_obs).to(torch.bool)
        return logit > 0

    @torch.no_grad()
    def step_members(self, obs: torch.Tensor, action: torch.Tensor, members: torch.Tensor,
                     generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``step`` with row ``i`` predicted by elite ``members[i]`` (a planner's TS-infinity particles);
        ``generator`` (the caller's, else the model's) draws the Gaussian samples.

        Shapes:
            obs [B, O]; action [B, A] (Discrete: [B]); members [B] in [0, planning_members) ->
            reward [B], next_obs [B, O], done [B] (bool)
        """
        reward, next_obs, logit = self.predict(obs, action, choice=members.to(self.device), generator=generator)
        return reward, next_obs, self._done(obs, action, next_obs, logit)

    @torch.no_grad()
    def uncertainty(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The elites' uncertainty about each transition (``cfg.uncertainty``), in target units
        over the reward and the observation change.

        Shapes:
            obs [B, O]; action [B, A] -> [B]
        """
        mean, logvar, _ = self.ensemble(self.model_inputs(obs, action), self.ensemble.elites)  # [K, B, G]
        if self.cfg.uncertainty == "max_std":
            return torch.exp(0.5 * logvar).norm(dim=-1).amax(dim=0)
        return mean.std(dim=0, correction=0).norm(dim=-1)

    def reward_penalty(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor | None:
        """MOPO's penalty ``reward_penalty * uncertainty`` (None while it is 0). Shapes: -> [B]"""
        if not self.cfg.reward_penalty:
            return None
        return self.cfg.reward_penalty * self.uncertainty(obs, action)

    @torch.no_grad()
    def step_mean(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The elites' mean prediction (no sampling). Shapes: as ``step``."""
        inputs = self.model_inputs(obs, action)
        mean, _, logits = self.ensemble(inputs, self.ensemble.elites)
        mean, logit = mean.mean(dim=0), (logits.mean(dim=0)[:, 0] if logits.shape[-1] else None)
        next_obs = inputs[:, : self.obs_dim] + mean[:, 1:]
        if logit is None:
            logit = torch.zeros(inputs.shape[0], device=self.device)
        return mean[:, 0], next_obs, self._done(obs, action, next_obs, logit)

