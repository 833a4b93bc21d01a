"""A latent, reward-predictive world model (TD-MPC2's recipe), registered as ``latent``.

The model never reconstructs observations. An encoder maps an observation to a latent
state (SimNorm: softmax over groups of ``simnorm_dim``, optional); latent dynamics (an
ensemble of ``dynamics_members`` mixture-of-Gaussians heads with ``dynamics_modes``
modes each; one deterministic mode is TD-MPC2's MLP) predict the next latent from the
latent and the action; heads predict the reward (twohot over symlog bins), the
termination probability (optional) and, with an ensemble of ``num_q`` twohot Q
functions and a tanh-Gaussian actor on the latent, the value the planners bootstrap
from.

Training (``train_step``) follows TD-MPC2: partial trajectories of ``horizon_k +
n_step - 1`` steps are sampled from the replay buffer; the latent of the first
observation is rolled through the dynamics with the replayed actions for ``horizon_k``
steps; each step t is weighted by ``rho^t`` and by a validity mask that is 0 once the
trajectory has passed its episode's end (terminated or truncated). Losses: latent
consistency (MSE, or the mixture's negative log-likelihood, against the stop-gradient
encoding of the replayed next observation), reward, termination, and the Q ensemble
against ``n_step`` bootstrapped targets (the minimum of two random target Qs at the
actor's action, no bootstrap past a termination). The actor then maximises the
scaled mean of two random Qs plus an entropy bonus on the detached latents.

A model state is ``[latent, context]``: with ``context='goal'`` the observation slice
``context_slice`` (e.g. a goal) is taken to be constant over an episode and is carried
through imagination unchanged, while the encoder sees the rest of the observation.

Actions: every public method takes and returns actions in the env's scale (as the
planners do); the networks see them mapped to [-1, 1].

The model is a Dream model too: the ``dreamer`` actor-critic learns in its imagination
(``rollout`` from the encoded first observations of the latest batch, the actor's [-1, 1]
actions through ``dream_step``) and acts through ``filter_step`` (the encoder; the model
has no recurrent state), so one model can be compared planning (``mppi``) against
imagining (``dreamer``).

The discount ``gamma`` is a config value (TD-MPC2 derives it from the episode length,
``(L/5 - 1) / (L/5)`` clipped to [0.95, 0.995]: 0.975 for Pendulum's 200 steps, 0.99
for DMC's 500 agent steps at action repeat 2).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from easydict import EasyDict
from torch import nn

from registry import WORLD_MODEL_REGISTRY
from wm_core.config import ConfigError, check_choice, check_range, check_sizes
from wm_core.precision import FloatLinear
from wm_core.utils import adam, check_rank, frozen, seeded_init
from wm_envs.termination import never_done, termination_fn
from worldmodels.base import ActionCodec, DreamWorldModel, Metrics
from worldmodels.dreamer_nets import TwoHot
from worldmodels.replay_ratio import ReplayRatioTraining

CONTEXTS = ("none", "goal")
TERMINATIONS = ("auto", "learned", "none")
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
# TD-MPC2 uses Mish; on CPU torch's Mish (a tanh of a softplus) costs about 15x a SiLU
ACTIVATIONS: dict[str, Any] = {"silu": F.silu, "mish": F.mish}


# -- building blocks -----------------------------------------------------------
class SimNorm(nn.Module):
    """Simplicial normalisation: a softmax over each group of ``group`` consecutive features.

    Shapes:
        x [..., D] (D divisible by ``group``) -> [..., D], each group summing to 1
    """

    def __init__(self, group: int) -> None:
        super().__init__()
        self.group = int(group)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # exp(x - group max) / group sum, written out: the same softmax (to float rounding), 3-5x
        # faster forward and backward on CPU than F.softmax over a last dimension of 8, which
        # PyTorch's kernel handles row by row (planning calls it on every imagined step)
        shape = x.shape
        groups = x.reshape(*shape[:-1], -1, self.group)
        exps = (groups - groups.amax(dim=-1, keepdim=True).detach()).exp()
        return (exps / exps.sum(dim=-1, keepdim=True)).reshape(shape)


class Activation(nn.Module):
    """An activation of ``ACTIVATIONS`` by name (a module, so that Sequentials can hold it)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.fn = ACTIVATIONS[name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def normed_mlp(in_dim: int, hidden: list[int], out_dim: int, zero_output: bool = False,
               activation: str = "silu") -> nn.Sequential:
    """TD-MPC2's MLP: (Linear, LayerNorm, activation) per hidden layer, then a Linear.

    Weights are drawn from a truncated normal with std 0.02 (TD-MPC2), biases are zero;
    ``zero_output`` zeroes the output layer (reward and Q heads predict 0 at first).

    Shapes:
        [..., in_dim] -> [..., out_dim]
    """
    layers: list[nn.Module] = []
    last = in_dim
    for width in hidden:
        layers += [nn.Linear(last, width), nn.LayerNorm(width), Activation(activation)]
        last = width
    layers.append(FloatLinear(last, out_dim))
    for layer in layers:
        if isinstance(layer, nn.Linear):
            nn.init.trunc_normal_(layer.weight, std=0.02)
            nn.init.zeros_(layer.bias)
    if zero_output:
        nn.init.zeros_(layers[-1].weight)
    return nn.Sequential(*layers)


class EnsembleMLP(nn.Module):
    """``members`` independent ``normed_mlp`` nets (own LayerNorm affines) run as batched matmuls.

    Args:
        members: ensemble size.
        zero_output: zero the output layer of every member.

    Shapes:
        x [N, in_dim] (every member sees the same rows) or [K, N, in_dim] (member k sees
        x[k]); ``members`` [K] selects the members run (all E when None) ->
        [K, N, out_dim]

    ``forward(..., dropout=p, generator=g)`` zeroes each unit of the first layer's output
    (before its LayerNorm) with chance p and scales the rest by 1 / (1 - p), masks drawn with
    ``g`` (TD-MPC2's Q dropout; only the losses ask for it).
    """

    def __init__(self, members: int, in_dim: int, hidden: list[int], out_dim: int,
                 zero_output: bool = False, activation: str = "silu") -> None:
        super().__init__()
        self.activation = ACTIVATIONS[activation]
        dims = [in_dim, *hidden, out_dim]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.norm_weights = nn.ParameterList()
        self.norm_biases = nn.ParameterList()
        for i, (fan_in, fan_out) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
            weight = torch.empty(members, fan_in, fan_out)
            nn.init.trunc_normal_(weight, std=0.02)
            if zero_output and i == len(dims) - 2:
                weight.zero_()
            self.weights.append(nn.Parameter(weight))
            self.biases.append(nn.Parameter(torch.zeros(members, 1, fan_out)))
            if i < len(dims) - 2:
                self.norm_weights.append(nn.Parameter(torch.ones(members, 1, fan_out)))
                self.norm_biases.append(nn.Parameter(torch.zeros(members, 1, fan_out)))
        self.members = int(members)

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None, dropout: float = 0.0,
                generator: torch.Generator | None = None) -> torch.Tensor:
        if members is None and self.members == 1 and x.dim() == 2 and not dropout:
            return self._forward_single(x).unsqueeze(0)

        def pick(param: torch.Tensor) -> torch.Tensor:
            return param if members is None else param.index_select(0, members)

        last = len(self.weights) - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.matmul(x, pick(weight)) + pick(bias)
            if i == 0 and dropout:
                keep = torch.rand(x.shape, generator=generator, device=x.device) >= dropout
                x = x * keep.to(x.dtype) / (1.0 - dropout)
            if i < last:
                x = F.layer_norm(x, x.shape[-1:]) * pick(self.norm_weights[i]) + pick(self.norm_biases[i])
                x = self.activation(x)
        return x.float()  # float32 under bf16 autocast

    def _forward_single(self, x: torch.Tensor) -> torch.Tensor:
        """A one-member ensemble on shared rows with fused kernels (planning's hot path).

        Shapes:
            x [N, in_dim] -> [N, out_dim]
        """
        last = len(self.weights) - 1
        for i, (weight, bias) in enumerate(zip(self.weights, self.biases, strict=True)):
            x = torch.addmm(bias[0, 0], x, weight[0])
            if i < last:
                x = self.activation(F.layer_norm(x, x.shape[-1:], self.norm_weights[i][0, 0],
                                                 self.norm_biases[i][0, 0]))
        return x.float()


class Mixture(NamedTuple):
    """Mixture-of-Gaussians parameters of the next latent, per member and row.

    Shapes:
        means [K, N, M, D]; log_stds [K, N, M, D] (None: deterministic); logits [K, N, M]
    """

    means: torch.Tensor
    log_stds: torch.Tensor | None
    logits: torch.Tensor

    def mean(self) -> torch.Tensor:
        """The mixture's mean. Shapes: -> [K, N, D]"""
        if self.means.shape[-2] == 1:
            return self.means[..., 0, :]
        return (F.softmax(self.logits, dim=-1).unsqueeze(-1) * self.means).sum(-2)


def mog_log_prob(target: torch.Tensor, means: torch.Tensor, log_stds: torch.Tensor,
                 logits: torch.Tensor) -> torch.Tensor:
    """Log-density of ``target`` under a mixture of diagonal Gaussians with mode weights
    ``softmax(logits)``.

    Shapes:
        target [..., D], means / log_stds [..., M, D], logits [..., M] -> [...]
    """
    z = (target.unsqueeze(-2) - means) * torch.exp(-log_stds)
    per_mode = (-0.5 * z.pow(2) - log_stds - HALF_LOG_2PI).sum(-1)
    return torch.logsumexp(F.log_softmax(logits, dim=-1) + per_mode, dim=-1)


class LatentDynamics(nn.Module):
    """An ensemble of mixture-of-Gaussians heads over the next latent.

    The mode means go through LayerNorm and SimNorm (as TD-MPC2's last dynamics layer)
    when ``simnorm_dim`` is set; with ``delta_stats`` (standardised deltas) a mean is
    ``latent + delta_mean + delta_std * output`` instead. Log-stds are soft-bounded in
    [log_std_min, log_std_max].

    Shapes:
        forward: x [N, in] or [K, N, in], latent [N, D] or [K, N, D] (the current latent,
        for deltas) -> Mixture with K = E (or len(members))
    """

    def __init__(self, members: int, modes: int, in_dim: int, hidden: list[int], latent_dim: int,
                 deterministic: bool, simnorm_dim: int | None, log_std_bounds: tuple[float, float],
                 delta_stats: DeltaStats | None, activation: str = "silu") -> None:
        super().__init__()
        self.modes, self.latent_dim, self.deterministic = modes, latent_dim, deterministic
        width = modes * latent_dim * (1 if deterministic else 2) + (modes if modes > 1 else 0)
        self.net = EnsembleMLP(members, in_dim, hidden, width, activation=activation)
        self.simnorm = SimNorm(simnorm_dim) if simnorm_dim else None
        self.norm_weight = nn.Parameter(torch.ones(members, 1, 1, latent_dim))
        self.norm_bias = nn.Parameter(torch.zeros(members, 1, 1, latent_dim))
        self.log_std_min, self.log_std_max = log_std_bounds
        self.delta_stats = delta_stats

    def forward(self, x: torch.Tensor, latent: torch.Tensor, members: torch.Tensor | None = None) -> Mixture:
        out = self.net(x, members)
        modes, dim = self.modes, self.latent_dim
        means = out[..., : modes * dim].unflatten(-1, (modes, dim))
        if self.delta_stats is not None:
            stats = self.delta_stats
            means = latent.unsqueeze(-2) + stats.mean + stats.var.sqrt() * means
        else:
            weight, bias = self.norm_weight, self.norm_bias
            if members is not None:
                weight, bias = weight.index_select(0, members), bias.index_select(0, members)
            if weight.shape[0] == 1:
                means = F.layer_norm(means, (dim,), weight[0, 0, 0], bias[0, 0, 0])
            else:
                means = F.layer_norm(means, (dim,)) * weight + bias
            if self.simnorm is not None:
                means = self.simnorm(means)
        log_stds = None
        if not self.deterministic:
            raw = out[..., modes * dim: 2 * modes * dim].unflatten(-1, (modes, dim))
            log_stds = self.log_std_min + (self.log_std_max - self.log_std_min) * torch.sigmoid(raw)
            if self.delta_stats is not None:
                log_stds = log_stds + 0.5 * self.delta_stats.var.log()
        logits = out[..., -modes:] if modes > 1 else out.new_zeros((*out.shape[:-1], 1))
        return Mixture(means, log_stds, logits)


class DeltaStats(nn.Module):
    """Running mean and variance (EMA at ``rate``) of latent deltas ``z_{t+1} - z_t``.

    Shapes:
        update: deltas [N, D], weights [N] (0/1)
    """

    def __init__(self, dim: int, rate: float) -> None:
        super().__init__()
        self.rate = float(rate)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))

    @torch.no_grad()
    def update(self, deltas: torch.Tensor, weights: torch.Tensor) -> None:
        count = weights.sum()
        if float(count) < 2:
            return
        mean = (weights[:, None] * deltas).sum(0) / count
        var = (weights[:, None] * (deltas - mean).pow(2)).sum(0) / count
        self.mean.lerp_(mean, self.rate)
        self.var.lerp_(var.clamp_min(1e-6), self.rate)


class RunningScale(nn.Module):
    """TD-MPC2's Q scale: an EMA (rate ``tau``) of the 5th-95th percentile range, at least 1.

    Shapes:
        update: values [...]; forward: values [...] -> values / scale
    """

    def __init__(self, tau: float) -> None:
        super().__init__()
        self.tau = float(tau)
        self.register_buffer("value", torch.ones(()))
        self.register_buffer("quantiles", torch.tensor([0.05, 0.95]), persistent=False)

    @torch.no_grad()
    def update(self, values: torch.Tensor) -> None:
        low, high = torch.quantile(values.detach().flatten().float(), self.quantiles)
        self.value.lerp_((high - low).clamp_min(1.0), self.tau)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        return values / self.value


class TanhGaussianActor(nn.Module):
    """A tanh-squashed Gaussian policy on the model state, log-std bounded as TD-MPC2's.

    Shapes:
        forward: state [..., S] -> action [..., A] in [-1, 1], log_prob [...] (squash-corrected)
    """

    def __init__(self, state_dim: int, hidden: list[int], action_dim: int, log_std_bounds: tuple[float, float],
                 activation: str = "silu") -> None:
        super().__init__()
        self.net = normed_mlp(state_dim, hidden, 2 * action_dim, activation=activation)
        self.log_std_min, self.log_std_max = log_std_bounds

    def forward(self, state: torch.Tensor, generator: torch.Generator | None, deterministic: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.distribution(state)
        if deterministic:
            return torch.tanh(mean), torch.zeros(mean.shape[:-1], device=mean.device)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return self.squash(mean, log_std, noise)

    def distribution(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The Gaussian before the squash. Shapes: state [..., S] -> mean, log_std [..., A]"""
        mean, raw = self.net(state).chunk(2, dim=-1)
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (torch.tanh(raw) + 1)
        return mean, log_std

    @staticmethod
    def squash(mean: torch.Tensor, log_std: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The action of standard-normal ``noise`` and its squash-corrected log-probability.

        Shapes: mean, log_std, noise [..., A] -> action [..., A], log_prob [...]
        """
        action = torch.tanh(mean + noise * log_std.exp())
        log_prob = (-0.5 * noise.pow(2) - log_std - HALF_LOG_2PI).sum(-1)
        log_prob = log_prob - torch.log(F.relu(1 - action.pow(2)) + 1e-6).sum(-1)
        return action, log_prob


# -- targets and masks ---------------------------------------------------------
def validity_mask(terminated: torch.Tensor, truncated: torch.Tensor) -> torch.Tensor:
    """1 for the steps of a sampled sequence that belong to its first step's episode.

    A step is valid while no earlier step of the sequence ended its episode
    (terminated or truncated); the ending step itself is valid.

    Shapes:
        terminated [T, B], truncated [T, B] -> valid [T, B] (float 0/1)
    """
    check_rank("terminated", terminated, 2)
    ended = (terminated.bool() | truncated.bool()).float()
    valid = torch.ones_like(ended)
    valid[1:] = torch.cumprod(1.0 - ended[:-1], dim=0)
    return valid


def n_step_targets(rewards: torch.Tensor, terminated: torch.Tensor, truncated: torch.Tensor,
                   bootstrap: torch.Tensor, gamma: float, n_step: int, horizon: int) -> torch.Tensor:
    """n-step value targets of the first ``horizon`` steps, in O(T) from discounted prefix sums.

    Step t sums ``gamma^i r_{t+i}`` over i < m, where its window stops after n steps, at
    the first step at or after t that ends an episode, or at the sequence's end (m
    steps in all), then adds ``gamma^m bootstrap[t+m-1]`` unless step t+m-1 terminated
    (a truncated step bootstraps from its stored final observation). ``bootstrap[j]``
    is the value of step j's next observation. Targets of steps past an episode's end
    are meaningless (see ``validity_mask``).

    Shapes:
        rewards / terminated / truncated / bootstrap [T, B] -> targets [horizon, B]
    """
    check_rank("rewards", rewards, 2)
    length, batch = rewards.shape
    if not 1 <= horizon <= length:
        raise ValueError(f"n_step_targets: horizon {horizon} must be within [1, {length}] (the sequence length)")
    if gamma <= 0.0:
        raise ValueError(f"n_step_targets needs gamma > 0, got {gamma}")
    ended = terminated.bool() | truncated.bool()
    steps = torch.arange(length, device=rewards.device)
    first_end = torch.where(ended, steps[:, None], length).flip(0).cummin(0).values.flip(0)
    start = steps[:horizon, None].expand(horizon, batch)
    stop = torch.minimum(torch.minimum(start + n_step, first_end[:horizon] + 1), torch.full_like(start, length))
    powers = torch.full((length,), float(gamma), device=rewards.device, dtype=torch.float64).pow(steps)
    prefix = F.pad(torch.cumsum(powers[:, None] * rewards.double(), dim=0), (0, 0, 1, 0))
    reward_sums = (prefix.gather(0, stop) - prefix[:horizon]) / powers[:horizon, None]
    last = stop - 1
    alive = 1.0 - terminated.double().gather(0, last)
    discounts = torch.full_like(reward_sums, float(gamma)).pow(stop - start)
    targets = reward_sums + discounts * alive * bootstrap.double().gather(0, last)
    return targets.to(rewards.dtype)


def rho_weighted_mean(losses: torch.Tensor, valid: torch.Tensor, rho: float) -> torch.Tensor:
    """``sum_t rho^t mean_b(valid[t, b] * losses[t, b]) / T``: TD-MPC2's horizon weighting
    with steps past an episode's end contributing nothing.

    Shapes:
        losses [T, B], valid [T, B] -> scalar
    """
    check_rank("losses", losses, 2)
    weights = torch.full((losses.shape[0],), float(rho), device=losses.device).pow(
        torch.arange(losses.shape[0], device=losses.device))
    return (weights * (valid * losses).mean(dim=1)).sum() / losses.shape[0]


class Targets(NamedTuple):
    """What the losses of one batch regress on (no gradient).

    Shapes:
        next_states [T, B, S] (encoded next observations), returns [K, B] (n-step targets),
        valid [T, B] (validity mask), where T = horizon_k + n_step - 1 and K = horizon_k
    """

    next_states: torch.Tensor
    returns: torch.Tensor
    valid: torch.Tensor


# -- the model ------------------------------------------------------------------
@WORLD_MODEL_REGISTRY.register("latent")
class LatentWorldModel(ReplayRatioTraining, DreamWorldModel):
    """TD-MPC2's latent model; see the module docstring.

    Planners use ``encode``, ``imagine_step`` (``imagine_step_members`` with
    ``planning_members`` for ``ts_inf``), ``policy_action`` and ``value``. The model
    trains ``replay_ratio`` gradient steps per env step (owed steps carry over), after
    ``pretrain_steps`` steps at the first training once ``learning_starts`` env steps
    are collected.
    """

    config: ClassVar[dict] = {
        "latent_dim": 64,  # size of the latent state (without the context)
        "simnorm": True,  # SimNorm on encoder and dynamics outputs (TD-MPC2)
        "simnorm_dim": 8,  # features per SimNorm group (latent_dim must be a multiple)
        "encoder_hidden_sizes": [128],  # hidden widths of the encoder MLP
        "hidden_sizes": [128, 128],  # hidden widths of the dynamics, reward, termination, Q and actor MLPs
        "activation": "silu",  # silu | mish (TD-MPC2's; about 15x slower on CPU here)
        "context": "none",  # none | goal: the observation slice context_slice is a per-episode constant
        "context_slice": [0, 0],  # [start, stop) of the observation that is the context (context='goal')
        "dynamics_members": 1,  # dynamics ensemble size (planning_members for ts_inf)
        "dynamics_modes": 1,  # Gaussian modes per member
        "deterministic_dynamics": True,  # one mode, mean only, MSE consistency (TD-MPC2); needs modes 1
        "dynamics_log_std_min": -5.0,  # soft lower bound of the modes' log-std
        "dynamics_log_std_max": 0.5,  # soft upper bound of the modes' log-std
        "standardize_deltas": False,  # predict z' - z standardised by running stats (needs simnorm False)
        "delta_stats_rate": 0.01,  # EMA rate of the delta statistics
        "termination": "auto",  # auto: none for envs that never terminate (env_id), else learned | learned | none
        "env_id": None,  # gymnasium id; the pipeline fills it (selects termination='auto')
        "num_bins": 101,  # twohot bins of the reward and Q heads
        "bins_low": -10.0,  # lowest bin in symlog space
        "bins_high": 10.0,  # highest bin in symlog space
        "num_q": 5,  # Q ensemble size; value = mean of 2 random Qs, targets = min of 2 random target Qs
        "q_dropout": 0.0,  # dropout after the Qs' first layer in the value and actor losses (TD-MPC2: 0.01)
        "tau": 0.01,  # Polyak rate of the target Qs (and of the Q scale's EMA)
        "gamma": 0.99,  # discount (TD-MPC2 derives it from the episode length; see the module docstring)
        "n_step": 1,  # steps of reward summed before bootstrapping in the Q targets
        "horizon_k": 3,  # latent rollout steps per partial trajectory
        "rho": 0.5,  # weight rho^t of rollout step t in every loss
        "consistency_coef": 20.0,  # weight of the latent consistency loss
        "reward_coef": 0.1,  # weight of the reward loss
        "value_coef": 0.1,  # weight of the Q loss
        "termination_coef": 1.0,  # weight of the termination loss
        "entropy_coef": 1e-4,  # actor entropy bonus (entropy scaled by the action dims, as TD-MPC2)
        "actor_log_std_min": -10.0,  # lower bound of the actor's log-std
        "actor_log_std_max": 2.0,  # upper bound of the actor's log-std
        "lr": 3e-4,  # learning rate of the model and the Qs
        "encoder_lr_scale": 0.3,  # encoder learning rate = lr * this (TD-MPC2)
        "actor_lr": 3e-4,  # learning rate of the actor
        "lr_warmup_steps": 0,  # gradient steps of linear learning-rate warm-up (0: constant rates)
        "grad_clip": 20.0,  # global gradient-norm clip of each optimiser
        "batch_size": 256,  # partial trajectories per gradient step
        "pretrain_steps": 1000,
    }

    def __init__(self, cfg: Mapping | None, env_spec: Any, logger: Any = None, *, seed: int = 0) -> None:
        super().__init__(cfg, env_spec, logger, seed=seed)
        self._check_config(self.cfg)
        self._setup_spaces()
        self.termination = self._termination_mode()
        # what a Dream policy ('dreamer') needs to act and learn through the model
        self.actions = ActionCodec(self.action_space, self.device)
        self.feature_dim = self.state_dim
        self.sizes = EasyDict(units=int(self.cfg.hidden_sizes[0]), layers=len(self.cfg.hidden_sizes))
        with seeded_init(self.seed):
            self._build_nets()
        self.nets.to(self.device)
        self._build_optimizers()
        self.init_replay_ratio()

    # -- construction ---------------------------------------------------
    def _check_config(self, c: Mapping) -> None:
        """Raise ConfigError for values outside their ranges or settings that do not combine."""
        for key in ("latent_dim", "simnorm_dim", "dynamics_members", "dynamics_modes", "n_step", "horizon_k",
                    "batch_size", "log_every"):
            check_range(c, key, 1, prefix="world_model")
        check_range(c, "num_bins", 2, prefix="world_model")
        check_range(c, "num_q", 2, prefix="world_model")
        check_range(c, "q_dropout", 0.0, 1.0, high_open=True, prefix="world_model")
        for key in ("replay_ratio", "learning_starts", "pretrain_steps", "lr_warmup_steps", "entropy_coef",
                    "consistency_coef", "reward_coef", "value_coef", "termination_coef"):
            check_range(c, key, 0, prefix="world_model")
        check_range(c, "gamma", 0.0, 1.0, low_open=True, prefix="world_model")
        for key in ("tau", "rho", "delta_stats_rate", "encoder_lr_scale"):
            check_range(c, key, 0.0, 1.0, prefix="world_model")
        for key in ("lr", "actor_lr", "grad_clip"):
            check_range(c, key, 0.0, low_open=True, prefix="world_model")
        check_sizes(c, "hidden_sizes", prefix="world_model")
        check_sizes(c, "encoder_hidden_sizes", prefix="world_model")
        if c.simnorm and c.latent_dim % c.simnorm_dim:
            raise ConfigError(f"world_model.latent_dim ({c.latent_dim}) must be a multiple of "
                              f"world_model.simnorm_dim ({c.simnorm_dim})")
        if c.deterministic_dynamics and c.dynamics_modes != 1:
            raise ConfigError("world_model.deterministic_dynamics needs dynamics_modes=1 "
                              f"(got {c.dynamics_modes}); set deterministic_dynamics=False for a mixture")
        if c.standardize_deltas and c.simnorm:
            raise ConfigError("world_model.standardize_deltas predicts unnormalised latent deltas; it needs "
                              "simnorm=False")
        for key, choices in (("activation", ACTIVATIONS), ("context", CONTEXTS), ("termination", TERMINATIONS)):
            check_choice(c, key, choices, prefix="world_model")
        if c.dynamics_log_std_min >= c.dynamics_log_std_max or c.actor_log_std_min >= c.actor_log_std_max:
            raise ConfigError("world_model log-std bounds need min < max")

    def _setup_spaces(self) -> None:
        space, obs_space = self.action_space, self.observation_space
        if hasattr(space, "n") or len(space.shape) != 1 or not (
                np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise ConfigError(f"world model 'latent' needs a bounded 1-D Box action space, got {space}")
        if len(obs_space.shape) != 1:
            raise ConfigError(f"world model 'latent' needs 1-D vector observations, got {obs_space.shape}")
        self.action_dim = int(space.shape[0])
        self.action_low = torch.as_tensor(space.low, dtype=torch.float32, device=self.device)
        self.action_high = torch.as_tensor(space.high, dtype=torch.float32, device=self.device)
        obs_dim = int(obs_space.shape[0])
        start, stop = (int(v) for v in self.cfg.context_slice) if self.cfg.context == "goal" else (0, 0)
        if self.cfg.context == "goal" and not 0 <= start < stop <= obs_dim:
            raise ConfigError(f"world_model.context_slice must be [start, stop) within the {obs_dim} observation "
                              f"features with start < stop, got {list(self.cfg.context_slice)}")
        keep = [i for i in range(obs_dim) if not start <= i < stop]
        self.obs_index = torch.as_tensor(keep, device=self.device)
        self.context_index = torch.arange(start, stop, device=self.device)
        self.context_dim = stop - start
        self.state_dim = int(self.cfg.latent_dim) + self.context_dim

    def _termination_mode(self) -> str:
        """'learned' or 'none': 'auto' is 'none' where the env never terminates (DMC), else 'learned'."""
        mode = self.cfg.termination
        if mode == "auto":
            return "none" if termination_fn(self.cfg.env_id) is never_done else "learned"
        return mode

    def _build_nets(self) -> None:
        c = self.cfg
        hidden, latent, state, action = list(c.hidden_sizes), int(c.latent_dim), self.state_dim, self.action_dim
        act = c.activation
        self.encoder = nn.Sequential(
            normed_mlp(len(self.obs_index), list(c.encoder_hidden_sizes), latent, activation=act),
            nn.LayerNorm(latent), SimNorm(c.simnorm_dim) if c.simnorm else nn.Identity())
        self.delta_stats = DeltaStats(latent, c.delta_stats_rate) if c.standardize_deltas else None
        self.dynamics = LatentDynamics(c.dynamics_members, c.dynamics_modes, state + action, hidden, latent,
                                       c.deterministic_dynamics, c.simnorm_dim if c.simnorm else None,
                                       (c.dynamics_log_std_min, c.dynamics_log_std_max), self.delta_stats, act)
        self.reward_head = normed_mlp(state + action, hidden, c.num_bins, zero_output=True, activation=act)
        self.q_ensemble = EnsembleMLP(c.num_q, state + action, hidden, c.num_bins, zero_output=True, activation=act)
        self.target_q = EnsembleMLP(c.num_q, state + action, hidden, c.num_bins, activation=act)
        self.target_q.load_state_dict(self.q_ensemble.state_dict())
        self.target_q.requires_grad_(False)
        self.actor = TanhGaussianActor(state, hidden, action, (c.actor_log_std_min, c.actor_log_std_max), act)
        self.scale = RunningScale(c.tau)
        self.twohot = TwoHot(c.num_bins, c.bins_low, c.bins_high)
        self.nets.update({"encoder": self.encoder, "dynamics": self.dynamics, "reward_head": self.reward_head,
                          "q_ensemble": self.q_ensemble, "target_q": self.target_q, "actor": self.actor,
                          "scale": self.scale, "twohot": self.twohot})
        self.termination_head = None
        if self.termination == "learned":
            self.termination_head = normed_mlp(state, hidden, 1, activation=act)
            self.nets["termination_head"] = self.termination_head

    def _build_optimizers(self) -> None:
        c = self.cfg
        rest = [self.dynamics, self.reward_head, self.q_ensemble]
        if self.termination_head is not None:
            rest.append(self.termination_head)
        groups = [{"params": list(self.encoder.parameters()), "lr": c.lr * c.encoder_lr_scale, "base_scale":
                   c.encoder_lr_scale},
                  {"params": [p for module in rest for p in module.parameters()], "lr": c.lr, "base_scale": 1.0}]
        self.optimizers["model"] = adam(groups, lr=c.lr)
        self.optimizers["actor"] = adam(self.actor.parameters(), lr=c.actor_lr, eps=1e-5)

    @property
    def planning_members(self) -> int:
        """Dynamics members a planner's particle may follow (``ts_inf``)."""
        return int(self.cfg.dynamics_members)

    def to(self, device: torch.device | str) -> LatentWorldModel:
        super().to(device)
        for name in ("action_low", "action_high", "obs_index", "context_index"):
            setattr(self, name, getattr(self, name).to(self.device))
        self.actions.to(self.device)
        return self

    # -- states and actions ---------------------------------------------
    def to_unit(self, action: torch.Tensor) -> torch.Tensor:
        """Env-scale actions -> [-1, 1]. Shapes: [..., A] -> [..., A]"""
        scaled = 2.0 * (action.float() - self.action_low) / (self.action_high - self.action_low) - 1.0
        return scaled.clamp(-1.0, 1.0)

    def to_env(self, unit: torch.Tensor) -> torch.Tensor:
        """[-1, 1] actions -> env scale. Shapes: [..., A] -> [..., A]"""
        return self.action_low + (unit + 1.0) * 0.5 * (self.action_high - self.action_low)

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        """The model state of an observation: its latent, then its context (if any).

        Shapes:
            obs [..., O] -> state [..., S], S = latent_dim + context size
        """
        obs = obs.to(self.device, torch.float32)
        if not self.context_dim:
            return self.encoder(obs)
        latent = self.encoder(obs.index_select(-1, self.obs_index))
        return torch.cat([latent, obs.index_select(-1, self.context_index)], dim=-1)

    def split(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Shapes: state [..., S] -> latent [..., D], context [..., S - D]"""
        return state.split([int(self.cfg.latent_dim), self.context_dim], dim=-1)

    def predict_reward(self, state: torch.Tensor, unit_action: torch.Tensor) -> torch.Tensor:
        """Expected reward of taking ``unit_action`` (in [-1, 1]) at ``state``.

        Shapes:
            state [..., S], unit_action [..., A] -> reward [...]
        """
        return self.twohot.mean(self.reward_head(torch.cat([state, unit_action], dim=-1)))

    def termination_prob(self, state: torch.Tensor) -> torch.Tensor:
        """Probability that arriving at ``state`` ends the episode (0 without a head).

        Shapes:
            state [..., S] -> [...]
        """
        if self.termination_head is None:
            return state.new_zeros(state.shape[:-1])
        return torch.sigmoid(self.termination_head(state).squeeze(-1))

    def _next_state(self, state: torch.Tensor, unit_action: torch.Tensor, members: torch.Tensor | None,
                    generator: torch.Generator | None) -> torch.Tensor:
        """One latent step of the given member per row (``members`` None: member 0 when the
        ensemble has one, else a random member per row from ``generator``); stochastic
        dynamics draw a mode and a Gaussian sample with ``generator``.

        Shapes:
            state [N, S], unit_action [N, A], members [N] -> next_state [N, S]
        """
        rows = state.shape[0]
        latent, context = self.split(state)
        ensemble = self.cfg.dynamics_members
        if members is None and ensemble > 1:
            members = torch.randint(0, ensemble, (rows,), generator=generator, device=self.device)
        mixture = self.dynamics(torch.cat([state, unit_action], dim=-1), latent)
        if members is None:
            mixture = Mixture(*(None if p is None else p[0] for p in mixture))
        else:
            row = torch.arange(rows, device=self.device)
            mixture = Mixture(*(None if p is None else p[members, row] for p in mixture))
        return torch.cat([self._sample(mixture, generator), context], dim=-1)

    def _sample(self, mixture: Mixture, generator: torch.Generator | None) -> torch.Tensor:
        """One draw per row (the mean for deterministic dynamics).

        Shapes:
            mixture of per-row parameters (means [N, M, D], logits [N, M]) -> latent [N, D]
        """
        means, log_stds, logits = mixture
        if log_stds is None:
            return means[:, 0]
        uniform = torch.rand((means.shape[0], 1), generator=generator, device=means.device)
        mode = (F.softmax(logits, dim=-1).cumsum(-1) < uniform).sum(-1).clamp_max(means.shape[1] - 1)
        row = torch.arange(means.shape[0], device=means.device)
        noise = torch.randn(means[:, 0].shape, generator=generator, device=means.device)
        return means[row, mode] + log_stds[row, mode].exp() * noise

    def imagine_step_members(self, state: torch.Tensor, action: torch.Tensor, members: torch.Tensor,
                             generator: torch.Generator | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One imagined step where row i follows dynamics member ``members[i]`` (``ts_inf``).

        Shapes:
            state [B, S], action [B, A] (env scale), members [B] -> reward [B], next_state [B, S],
            done [B] (bool: termination probability > 0.5)
        """
        return self._unit_step(state, self.to_unit(action), members, generator)

    def imagine_step(self, state: torch.Tensor, action: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One imagined step (``ts_1``: a random member per row from the model's generator
        when the ensemble has several).

        Shapes:
            state [B, S], action [B, A] (env scale) -> reward [B], next_state [B, S], done [B] (bool)
        """
        return self._unit_step(state, self.to_unit(action), None, self.generator)

    def dream_step(self, state: torch.Tensor, action: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One imagined step of a Dream rollout: ``imagine_step`` on the actor's [-1, 1] actions,
        with gradients flowing from the next state and the reward into the action.

        Shapes:
            state [B, S], action [B, A] (in [-1, 1]) -> reward [B], next_state [B, S], done [B] (bool)
        """
        return self._unit_step(state, action, None, self.generator)

    def _unit_step(self, state: torch.Tensor, unit: torch.Tensor, members: torch.Tensor | None,
                   generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The step every imagining method takes, on [-1, 1] actions: the next state of the given
        members (see ``_next_state``), the reward, and done where the termination probability
        exceeds 0.5.

        Shapes:
            state [B, S], unit [B, A], members [B] or None -> reward [B], next_state [B, S], done [B] (bool)
        """
        check_rank("state", state, 2)
        next_state = self._next_state(state, unit, members, generator)
        return self.predict_reward(state, unit), next_state, self.termination_prob(next_state) > 0.5

    # -- acting for a Dream policy (no recurrent state: a state is the encoded observation) ------
    def initial_state(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Shapes: -> state [B, S] (zeros), an empty stochastic part [B, 0]"""
        return (torch.zeros(batch, self.state_dim, device=self.device),
                torch.zeros(batch, 0, device=self.device))

    def filter_step(self, deter: torch.Tensor, stoch: torch.Tensor, action: torch.Tensor, obs: torch.Tensor,
                    is_first: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The state of ``obs`` (the encoder's; the previous state and action do not matter).

        Shapes:
            obs [B, O] -> state [B, S], stoch [B, 0]
        """
        return self.encode(obs), stoch[:, :0]

    def step(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Not available: the model predicts latent states and has no decoder back to observations.

        Raises:
            ConfigError: always; plan through ``encode`` + ``imagine_step`` (policies
                'cem', 'icem', 'mppi' do).
        """
        raise ConfigError("world model 'latent' predicts latent states, not observations (it has no decoder): "
                          "use encode(obs) then imagine_step(state, action), as the planners 'cem', 'icem' and "
                          "'mppi' do; a Dyna setup that needs step(obs, action) needs an observation model "
                          "such as 'mbpo'")

    # -- actor and critic -----------------------------------------------
    def q_values(self, state: torch.Tensor, unit_action: torch.Tensor, members: torch.Tensor | None = None,
                 target: bool = False, dropout: float = 0.0) -> torch.Tensor:
        """Expected Q of the chosen members (all when None), online or target; ``dropout``
        (the losses' ``q_dropout``) draws its masks with the model's generator.

        Shapes:
            state [N, S], unit_action [N, A], members [K] -> [K, N]
        """
        net = self.target_q if target else self.q_ensemble
        return self.twohot.mean(net(torch.cat([state, unit_action], dim=-1), members, dropout=dropout,
                                    generator=self.generator))

    def two_q(self, generator: torch.Generator | None) -> torch.Tensor:
        """Two distinct Q members drawn with ``generator``. Shapes: -> [2] (long)"""
        return torch.randperm(int(self.cfg.num_q), generator=generator, device=self.device)[:2]

    def policy_action(self, state: torch.Tensor, deterministic: bool = False,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """The actor's action at ``state``: its mean when ``deterministic``, else a sample drawn
        with ``generator`` (the model's own when None).

        Shapes:
            state [B, S] -> action [B, A] (env scale)
        """
        unit, _ = self.actor(state, generator or self.generator, deterministic=deterministic)
        return self.to_env(unit)

    def value(self, state: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Q at the actor's sampled action, averaged over two random Q members (TD-MPC2's
        planning bootstrap); the action, then the members, are drawn with ``generator``
        (the model's own when None).

        Shapes:
            state [B, S] -> value [B]
        """
        unit, members = self._sampled_action_and_two_q(state, generator)
        return self.q_values(state, unit, members).mean(0)

    def target_value(self, state: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """The bootstrap of a Q target: the smaller of two random target Qs at the actor's
        sampled action.

        Shapes:
            state [N, S] -> value [N]
        """
        unit, members = self._sampled_action_and_two_q(state, generator)
        return self.q_values(state, unit, members, target=True).min(0).values

    def _sampled_action_and_two_q(self, state: torch.Tensor, generator: torch.Generator | None
                                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """The actor's sampled [-1, 1] action, then two distinct Q members, drawn with ``generator``
        (the model's own when None). Shapes: state [B, S] -> unit [B, A], members [2]"""
        mean, log_std = self.actor.distribution(state)
        noise, members = self._value_draws(mean, generator or self.generator)
        unit, _ = self.actor.squash(mean, log_std, noise)
        return unit, members

    @torch.compiler.disable
    def _value_draws(self, mean: torch.Tensor, generator: torch.Generator | None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """The random numbers of a value in one eager call (one graph break when a planner's loop
        is compiled): the actor's noise, then the two Q members.

        Shapes: mean [B, A] -> noise [B, A] (mean's dtype), members [2]
        """
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return noise, self.two_q(generator)

    # -- scheduling -----------------------------------------------------
    @property
    def sequence_length(self) -> int:
        """Steps per sampled partial trajectory: ``horizon_k + n_step - 1``."""
        return int(self.cfg.horizon_k) + int(self.cfg.n_step) - 1

    def sample(self, env_buffer: Any) -> dict[str, torch.Tensor]:
        """``batch_size`` partial trajectories with their validity mask.

        Shapes:
            each buffer field [T, B, ...] (T = ``sequence_length``), ``valid`` [T, B]
        """
        batch = env_buffer.sample_sequences(self.cfg.batch_size, self.sequence_length, device=self.device)
        batch["valid"] = validity_mask(batch["terminated"], batch["truncated"])
        return batch

    # -- learning -------------------------------------------------------
    def sample_batch(self, env_buffer: Any) -> dict[str, torch.Tensor]:
        """A batch of partial trajectories with their validity masks (see ``sample``)."""
        return self.sample(env_buffer)

    def _set_learning_rates(self) -> None:
        """Linear warm-up over ``lr_warmup_steps`` gradient steps (constant rates without)."""
        warmup = int(self.cfg.lr_warmup_steps)
        factor = min(1.0, (self.gradient_steps + 1) / warmup) if warmup else 1.0
        for group in self.optimizers["model"].param_groups:
            group["lr"] = self.cfg.lr * group["base_scale"] * factor
        for group in self.optimizers["actor"].param_groups:
            group["lr"] = self.cfg.actor_lr * factor

    def train_step(self, batch: Mapping[str, torch.Tensor]) -> Metrics:
        """One model and Q step, one actor step, one Polyak step of the target Qs.

        Shapes:
            batch: obs / next_obs [T, B, O], action [T, B, A], reward / terminated / truncated /
            valid [T, B], T = ``sequence_length``
        """
        self._set_learning_rates()
        with self.autocast():
            targets = self.targets(batch)
            loss, metrics, states = self.loss(batch, targets)
        c = self.cfg
        self.guard.step("model_loss", loss, self.optimizers["model"], None, c.grad_clip)
        # a Dream policy imagines from the batch's encoded first observations (never terminal)
        self.starts = states[0, 0].detach()
        self.start_continues = torch.ones(self.starts.shape[0], device=self.device)
        metrics["grad_norm"] = self.guard.last_grad_norm
        state_valid = torch.cat([torch.ones_like(targets.valid[:1]), targets.valid[: c.horizon_k]])
        with self.autocast():
            actor_loss, actor_metrics = self.actor_loss(states.detach(), state_valid)
        self.guard.step("actor_loss", actor_loss, self.optimizers["actor"], None, c.grad_clip)
        self.polyak_update()
        self.gradient_steps += 1
        metrics.update(actor_metrics)
        metrics["nonfinite_skipped"] = float(self.guard.skipped)
        return metrics

    @torch.no_grad()
    def polyak_update(self) -> None:
        """target <- target + tau (online - target), for every Q parameter."""
        for target, online in zip(self.target_q.parameters(), self.q_ensemble.parameters(), strict=True):
            target.lerp_(online, float(self.cfg.tau))

    @torch.no_grad()
    def targets(self, batch: Mapping[str, torch.Tensor]) -> Targets:
        """Encoded next observations, n-step Q targets and the validity mask of a batch.

        Shapes: see ``Targets``.
        """
        c = self.cfg
        steps, size = batch["reward"].shape
        next_states = self.encode(batch["next_obs"])
        bootstrap = self.target_value(next_states.flatten(0, 1)).view(steps, size)
        returns = n_step_targets(batch["reward"].float(), batch["terminated"], batch["truncated"], bootstrap,
                                 float(c.gamma), int(c.n_step), int(c.horizon_k))
        valid = batch["valid"] if "valid" in batch else validity_mask(batch["terminated"], batch["truncated"])
        return Targets(next_states, returns, valid)

    def loss(self, batch: Mapping[str, torch.Tensor], targets: Targets
             ) -> tuple[torch.Tensor, Metrics, torch.Tensor]:
        """The model loss of a batch (consistency, reward, termination and Q terms, each
        ``rho_weighted_mean``-ed over the rollout), its metrics and the rolled-out states.

        Shapes:
            batch: as ``train_step``; targets: as ``Targets`` -> loss [], states [K+1, E, B, S]
            (K = horizon_k, E = dynamics_members; states[0] is the encoded first observation)
        """
        c = self.cfg
        check_rank("batch['reward']", batch["reward"], 2)
        horizon = int(c.horizon_k)
        if batch["reward"].shape[0] < horizon:
            raise ValueError(f"latent loss: sequences of {batch['reward'].shape[0]} steps, need {horizon}")
        if self.delta_stats is not None:
            self._update_delta_stats(batch, targets)
        actions = self.to_unit(batch["action"][:horizon])
        states, consistency = self.rollout_latents(self.encode(batch["obs"][0]), actions, targets)
        members = states.shape[1]
        inputs = torch.cat([states[:-1], actions[:, None].expand(-1, members, -1, -1)], dim=-1)
        reward_nll = -self.twohot.log_prob(self.reward_head(inputs), self._per_member(batch["reward"][:horizon],
                                                                                       members))
        q_logits = self.q_ensemble(inputs.flatten(0, 2), dropout=float(c.q_dropout),
                                   generator=self.generator).unflatten(1, inputs.shape[:3])
        value_nll = -self.twohot.log_prob(q_logits, self._per_member(targets.returns, members).expand(c.num_q,
                                                                                                     -1, -1, -1))
        valid = targets.valid[:horizon]
        terms = {"consistency_loss": rho_weighted_mean(consistency, valid, c.rho),
                 "reward_loss": rho_weighted_mean(reward_nll.mean(1), valid, c.rho),
                 "value_loss": rho_weighted_mean(value_nll.mean((0, 2)), valid, c.rho)}
        loss = (c.consistency_coef * terms["consistency_loss"] + c.reward_coef * terms["reward_loss"]
                + c.value_coef * terms["value_loss"])
        if self.termination_head is not None:
            logits = self.termination_head(states[1:]).squeeze(-1)
            bce = F.binary_cross_entropy_with_logits(
                logits, self._per_member(batch["terminated"][:horizon].float(), members), reduction="none")
            terms["termination_loss"] = rho_weighted_mean(bce.mean(1), valid, c.rho)
            loss = loss + c.termination_coef * terms["termination_loss"]
        metrics = {key: float(value.detach()) for key, value in terms.items()}
        metrics["loss"] = float(loss.detach())
        return loss, metrics, states

    @staticmethod
    def _per_member(values: torch.Tensor, members: int) -> torch.Tensor:
        """Shapes: [K, B] -> [K, E, B] (a view)"""
        return values[:, None].expand(-1, members, -1)

    def rollout_latents(self, start: torch.Tensor, actions: torch.Tensor, targets: Targets
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Roll every dynamics member from ``start`` through ``actions`` (the mixture's mean
        is the next state) and score each step's prediction against the encoded next
        observation: squared error averaged over the latent (deterministic dynamics) or the
        mixture's negative log-likelihood per latent dimension, averaged over the members.

        Shapes:
            start [B, S], actions [K, B, A] (in [-1, 1]) -> states [K+1, E, B, S], errors [K, B]
        """
        members = int(self.cfg.dynamics_members)
        state = start.expand(members, *start.shape)
        states, errors = [state], []
        for t in range(actions.shape[0]):
            latent, context = self.split(state)
            mixture = self.dynamics(torch.cat([state, actions[t].expand(members, -1, -1)], dim=-1), latent)
            target = self.split(targets.next_states[t])[0]
            errors.append(self.consistency_error(mixture, target).mean(0))
            state = torch.cat([mixture.mean(), context], dim=-1)
            states.append(state)
        return torch.stack(states), torch.stack(errors)

    def consistency_error(self, mixture: Mixture, target: torch.Tensor) -> torch.Tensor:
        """Per-row error of a predicted next latent against its target.

        Shapes:
            mixture (means [E, B, M, D]), target [B, D] -> [E, B]
        """
        if mixture.log_stds is None:
            return (mixture.means[..., 0, :] - target).pow(2).mean(-1)
        return -mog_log_prob(target, mixture.means, mixture.log_stds, mixture.logits) / target.shape[-1]

    @torch.no_grad()
    def _update_delta_stats(self, batch: Mapping[str, torch.Tensor], targets: Targets) -> None:
        """Fold the batch's one-step latent deltas (every row is a real transition) into the stats."""
        latent = self.split(self.encode(batch["obs"]))[0]
        deltas = (self.split(targets.next_states)[0] - latent).flatten(0, 1)
        self.delta_stats.update(deltas, torch.ones(deltas.shape[0], device=deltas.device))

    def actor_loss(self, states: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, Metrics]:
        """TD-MPC2's actor loss: ``-(entropy_coef * A * entropy + Q / scale)``, ``rho_weighted_mean``-ed,
        where Q is the mean of two random Qs (their parameters take no gradient) at the actor's
        sampled action and ``scale`` tracks the Qs of the first states.

        Shapes:
            states [K+1, E, B, S] (detached), valid [K+1, B] -> loss []
        """
        unit, log_prob = self.actor(states.flatten(0, 2), self.generator)
        with frozen(self.q_ensemble):
            q = self.q_values(states.flatten(0, 2), unit, self.two_q(self.generator),
                              dropout=float(self.cfg.q_dropout)).mean(0)
        q = q.view(states.shape[:3])
        self.scale.update(q[0])
        entropy = -log_prob.view(states.shape[:3]) * self.action_dim
        objective = (self.cfg.entropy_coef * entropy + self.scale(q)).mean(1)
        loss = rho_weighted_mean(-objective, valid, self.cfg.rho)
        entropy_per_dim = float(entropy.mean().detach()) / self.action_dim
        return loss, {"actor_loss": float(loss.detach()), "actor_entropy": entropy_per_dim,
                      "q_scale": float(self.scale.value), "q_mean": float(q.mean().detach())}
