"""Decision-time planners as policies: ``cem``, ``icem`` and ``mppi`` over any world model.

At every env step the planner samples action sequences (candidates), scores each by
the return the world model predicts over ``horizon`` steps, refits its sampling
distribution to the best (elite) candidates for ``iterations`` rounds, and executes
the first action of the result. Everything is batched: envs x candidates x particles
rows go through one model ``step`` per horizon step, with no Python loop over
candidates.

What a planner needs from the world model (``PlanningModel``) is ``step(obs, action)``.
Ensembles may offer more, and the ``propagation`` setting uses it:

- ``ts_inf`` (PETS's TS-infinity): each particle of a candidate follows one ensemble
  member for the whole horizon; needs ``step_members(obs, action, members, generator=)`` and
  ``planning_members`` (the number of members a particle may follow);
- ``ts_1``: the model's own ``step`` (``mbpo``: a random elite per row and step; the
  model's own generator, so evaluating with ``ts_1`` moves the model's random stream);
- ``mean``: the members' mean prediction; needs ``step_mean(obs, action)``.

A latent model (``LatentPlanningModel``: it has ``encode(obs)``) is planned through in
its own state space: the observation is encoded once, and candidates step through
``imagine_step`` (``imagine_step_members`` for ``ts_inf``).

``prior_candidates`` of the candidates follow a policy through the model (as in TD-MPC2),
and ``value_bootstrap`` adds the discounted value of the state a candidate ends in. Both
come from a companion ``prior`` policy (any registered policy with ``value(obs)``, e.g.
``sac``, learning from the run's batches), or, without one, from the world model's own
``policy_action(state)`` and ``value(state)`` (a latent model that learns its actor and
critic, as TD-MPC2's does).

Continuous actions plan in [-1, 1] per dimension (scaled to the env's bounds);
discrete actions plan with categorical CEM (per-step action probabilities).

The action taken is the refitted distribution's mean first action (``action_choice="mean"``),
or, as TD-MPC2 does, the first action of one final elite drawn with the refit's weights
(``"elite_sample"``). ``collect`` adds Gaussian noise of std ``collect_noise``, or, with ``collect_plan_std``
(TD-MPC2), of the final distribution's own std at the first step (wide while the planner is
unsure, down to ``min_std`` once it is sure).
"""
from __future__ import annotations

import math
import os
import shutil
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from policies.base import Policy
from registry import POLICY_REGISTRY
from wm_core.config import ConfigError, check_choice, check_range
from wm_core.utils import check_rank, generator_for

PROPAGATIONS = ("ts_inf", "ts_1", "mean")
ACTION_CHOICES = ("mean", "elite_sample")
ACT_SEED_OFFSET = 1_000_003  # the evaluation generator's seed is the policy's seed plus this


@runtime_checkable
class PlanningModel(Protocol):
    """What every planner needs: one imagined step.

    Shapes:
        obs [B, O], action [B, A] (discrete: [B] indices) -> reward [B], next_obs [B, O], done [B] bool
    """

    def step(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ...


@runtime_checkable
class LatentPlanningModel(Protocol):
    """A model planned through in its own state: ``encode`` once, then ``imagine_step``.

    Optional, as for ensembles: ``imagine_step_members(state, action, members, generator=)``
    with ``planning_members`` (``ts_inf``); ``policy_action(state, deterministic=, generator=)``
    (prior candidates) and ``value(state, generator=)`` (bootstrap) when no prior policy is set.

    Shapes:
        encode: obs [B, O] -> state [B, S]
        imagine_step: state [B, S], action [B, A] -> reward [B], next_state [B, S], done [B] bool
    """

    def encode(self, obs: torch.Tensor) -> torch.Tensor:
        ...

    def imagine_step(self, state: torch.Tensor, action: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ...


def colored_noise(shape: tuple[int, ...], exponent: float, generator: torch.Generator,
                  device: torch.device) -> torch.Tensor:
    """Unit-variance Gaussian noise with power spectrum ~ 1/f^exponent along dimension -2 (time).

    exponent 0 is white noise; iCEM uses 2-3 (smoother sequences, more exploration).

    Shapes:
        shape [..., T, A] -> noise of that shape
    """
    if exponent == 0:
        return torch.randn(shape, generator=generator, device=device)
    steps = shape[-2]
    freqs = torch.fft.rfftfreq(steps, device=device)
    freqs[0] = 1.0 / steps  # no infinite power at frequency 0
    scale = freqs.pow(-exponent / 2.0)
    spectrum_shape = (*shape[:-2], shape[-1], freqs.shape[0])
    real = torch.randn(spectrum_shape, generator=generator, device=device) * scale
    imag = torch.randn(spectrum_shape, generator=generator, device=device) * scale
    if steps % 2 == 0:
        imag[..., -1] = 0.0  # the Nyquist bin of a real signal is real
    imag[..., 0] = 0.0
    signal = torch.fft.irfft(torch.complex(real, imag), n=steps, dim=-1)
    # Var(x_t) = (s_0^2 + 4 * sum of the other bins' s_k^2 + s_nyquist^2) / n^2: divide by its root
    # (the same for every t), so every sample has unit variance and the spectrum keeps its shape.
    weights = torch.full_like(scale, 4.0)
    weights[0] = 1.0
    if steps % 2 == 0:
        weights[-1] = 1.0
    variance = (weights * scale.pow(2)).sum() / steps**2
    return (signal / variance.sqrt()).transpose(-1, -2)


class _Best:
    """The best candidate seen over a planning step's iterations, per env row."""

    def __init__(self) -> None:
        self.sequence: torch.Tensor | None = None
        self.value: torch.Tensor | None = None

    def update(self, sequence: torch.Tensor, value: torch.Tensor) -> None:
        """Shapes: sequence [B, H, A], value [B]"""
        if self.value is None:
            self.sequence, self.value = sequence, value
            return
        better = value > self.value
        self.sequence = torch.where(better[:, None, None], sequence, self.sequence)
        self.value = torch.maximum(self.value, value)


class PlannerPolicy(Policy):
    """Shared sampling-based planning; subclasses set how the distribution is refitted.

    See the module docstring. ``collect`` plans and adds ``collect_noise``;
    ``act`` plans without it. The warm-start plan of each env slot (one set for
    collection, one for evaluation) is shifted by a step after acting, reset at
    episode starts and saved in checkpoints.
    """

    config = dict(
        horizon=15,  # imagined steps per candidate
        candidates=400,  # action sequences sampled per iteration
        iterations=5,  # refits of the sampling distribution per env step
        elites=40,  # best candidates the distribution is refitted to
        propagation="ts_inf",  # ts_inf | ts_1 | mean (see the module docstring)
        particles=0,  # model rollouts per candidate, return averaged; 0: planning_members for ts_inf, else 1
        gamma=1.0,  # discount of predicted rewards within the horizon
        momentum=0.1,  # weight of the previous distribution in each refit
        init_std=1.0,  # std of the first sampling distribution (actions in [-1, 1])
        min_std=0.05,  # std floor during refits
        noise_exponent=0.0,  # colored noise: 0 white (CEM), 2-3 for iCEM
        warm_start=True,  # start each step from the previous plan shifted by one step
        collect_noise=0.1,  # Gaussian std added by collect (discrete: chance of a random action)
        collect_plan_std=False,  # True: collect's Gaussian std is the final sampling std of the first
        # step instead of collect_noise (continuous actions; TD-MPC2)
        action_choice="mean",  # mean: the distribution's mean first action; elite_sample: one final
        # elite's, drawn with the refit's weights (TD-MPC2); discrete actions take the best candidate's
        prior=None,  # a companion policy config (e.g. dict(type="sac")) that learns from batches
        prior_candidates=0,  # candidates that follow the prior (or the model's policy) through the model
        value_bootstrap=False,  # add gamma^H * value(final state) (the prior's, else the model's) to returns
        compile=False,  # True: torch.compile the planning loop (fused element-wise work; the same random
        # draws, rounding may differ from eager); compiles on the first call of each shape
    )

    def __init__(self, cfg: Mapping | None, env_spec: Any, *, world_model: Any = None, seed: int = 0,
                 logger: Any = None) -> None:
        super().__init__(cfg, env_spec, world_model=world_model, seed=seed, logger=logger)
        self.check_config(self.cfg)
        self.model = self._check_model(world_model)
        space = self.action_space
        self.discrete = hasattr(space, "n")
        if self.discrete:
            self.action_dim = int(space.n)
        elif len(space.shape) == 1 and np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high)):
            self.action_dim = int(space.shape[0])
            low = torch.as_tensor(space.low, dtype=torch.float32, device=self.device)
            high = torch.as_tensor(space.high, dtype=torch.float32, device=self.device)
            self.action_scale, self.action_bias = (high - low) / 2, (high + low) / 2
        else:
            raise ConfigError(f"policy '{self.cfg.type}' needs a Discrete or a bounded 1-D Box action space, "
                              f"got {space}")
        if self.discrete and self.cfg.collect_plan_std:
            raise ConfigError("policy.collect_plan_std is Gaussian noise for continuous actions; with a Discrete "
                              "action space collect_noise is the chance of a random action")
        self.particles = self._particles()
        self.first_std: torch.Tensor | None = None  # the last plan's final std at its first step, [B, A]
        self.prior = self._build_prior(env_spec, seed)
        # Evaluation plans with its own generator, reseeded at every evaluation episode, so that
        # evaluating never moves the training run's random streams (exact resume holds).
        self.act_generator = generator_for(self.device, self.seed + ACT_SEED_OFFSET)
        self.rng = self.generator  # the generator of the plan in progress
        # whether the plan in progress is an evaluation's (a bool, not `rng is act_generator`: compiled
        # code checks a bool's value, where an identity test of two generators was not re-checked)
        self.evaluating = False
        self.plans: dict[str, torch.Tensor | None] = {"collect": None, "act": None}  # warm-start means
        self.kept: dict[str, torch.Tensor | None] = {"collect": None, "act": None}  # carried candidates
        # the planning loop, compiled when asked: draws from generators stay eager (dynamo breaks
        # the graph at each), so compiled and eager plans see the same random numbers
        self.compiled_optimize = None
        if self.cfg.compile:
            self._check_compiler()
            self.compiled_optimize = torch.compile(self.optimize, dynamic=False)

    def imagined_length(self, envstep: int) -> int:
        """The planning horizon: what the planner imagines, whatever the model's schedule says."""
        return int(self.cfg.horizon)

    # -- construction ---------------------------------------------------
    def check_config(self, c: Mapping) -> None:
        """Raise ConfigError for values outside their valid ranges."""
        for key in ("horizon", "candidates", "iterations", "elites"):
            check_range(c, key, 1, prefix="policy")
        if c.elites > c.candidates:
            raise ConfigError(f"policy.elites ({c.elites}) must be <= policy.candidates ({c.candidates})")
        check_choice(c, "propagation", PROPAGATIONS, prefix="policy")
        check_range(c, "particles", 0, prefix="policy")
        check_range(c, "gamma", 0.0, 1.0, prefix="policy")
        check_range(c, "momentum", 0.0, 1.0, prefix="policy")
        check_range(c, "init_std", 0.0, low_open=True, prefix="policy")
        check_range(c, "min_std", 0.0, prefix="policy")
        check_range(c, "noise_exponent", 0.0, prefix="policy")
        check_range(c, "collect_noise", 0.0, prefix="policy")
        check_choice(c, "action_choice", ACTION_CHOICES, prefix="policy")
        check_range(c, "prior_candidates", 0, c.candidates, prefix="policy")

    def _check_compiler(self) -> None:
        """On a CPU, torch.compile builds its kernels with a C++ compiler: refuse early without one."""
        if self.device.type != "cpu":
            return
        candidates = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "c++", "clang++"]
        if not any(shutil.which(name) for name in candidates):
            raise ConfigError(f"policy.compile=True needs a C++ compiler on the CPU (looked for "
                              f"{', '.join(candidates)}): install one (e.g. g++) or set policy.compile=False")

    def _check_model(self, model: Any) -> Any:
        name, propagation = self.cfg.type, self.cfg.propagation
        if model is None or not isinstance(model, PlanningModel | LatentPlanningModel):
            raise ConfigError(f"policy '{name}' plans through a world model's step(obs, action); this config has "
                              f"{'no world model' if model is None else type(model).__name__}")
        self.latent = isinstance(model, LatentPlanningModel)
        prefix = "imagine_" if self.latent else ""
        needs = {"ts_inf": (f"{prefix}step_members", "planning_members"),
                 "mean": (f"{prefix}step_mean",)}.get(propagation, ())
        missing = [attr for attr in needs if not hasattr(model, attr)]
        if missing:
            raise ConfigError(f"policy.propagation={propagation!r} needs a world model with "
                              f"{' and '.join(missing)} (an ensemble such as 'mbpo'); world model "
                              f"'{model.cfg.type}' has none: use propagation='ts_1'")
        if not self.cfg.prior:
            for key, attr in (("prior_candidates", "policy_action"), ("value_bootstrap", "value")):
                if self.cfg[key] and not hasattr(model, attr):
                    raise ConfigError(f"policy.{key} needs a policy.prior (e.g. prior=dict(type='sac')) or a "
                                      f"world model with {attr}(state); world model '{model.cfg.type}' has none")
        elif self.latent:
            raise ConfigError(f"policy.prior acts on observations, but world model '{model.cfg.type}' is planned "
                              "through in its latent state: drop policy.prior (the model's own policy_action and "
                              "value serve as prior and bootstrap)")
        return model

    def _particles(self) -> int:
        if self.cfg.particles:
            return int(self.cfg.particles)
        return int(self.model.planning_members) if self.cfg.propagation == "ts_inf" else 1

    def _build_prior(self, env_spec: Any, seed: int) -> Policy | None:
        if not self.cfg.prior:
            return None
        prior = POLICY_REGISTRY.build(self.cfg.prior, env_spec, world_model=None, seed=seed + 1)
        if self.cfg.value_bootstrap and not hasattr(prior, "value"):
            raise ConfigError(f"policy.value_bootstrap needs a prior with value(obs); "
                              f"'{self.cfg.prior['type']}' has none")
        self.nets["prior"] = prior.nets
        return prior

    # -- acting ---------------------------------------------------------
    def collect(self, obs: torch.Tensor) -> torch.Tensor:
        check_rank("obs", obs, 2)
        action = self.plan(obs, "collect")
        if self.discrete:
            noise = float(self.cfg.collect_noise)
            explore = torch.rand(action.shape, generator=self.generator, device=self.device) < noise
            random = torch.randint(0, self.action_dim, action.shape, generator=self.generator, device=self.device)
            return torch.where(explore, random, action)
        unit = self._unscale(action)
        noise = self.first_std if self.cfg.collect_plan_std else float(self.cfg.collect_noise)
        unit = unit + noise * torch.randn(unit.shape, generator=self.generator, device=self.device)
        return self._scale(unit.clamp(-1.0, 1.0))

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        check_rank("obs", obs, 2)
        return self.plan(obs, "act")

    def reset(self, mask: Any = None, *, evaluation: bool = False) -> None:
        key = "act" if evaluation else "collect"
        if evaluation and mask is None:
            self.act_generator.manual_seed(self.seed + ACT_SEED_OFFSET)
        plan = self.plans[key]
        self.kept[key] = None  # candidates from another episode are no warm start
        if plan is None or mask is None:
            self.plans[key] = None
            return
        mask = torch.as_tensor(mask, dtype=torch.bool, device=plan.device)
        plan[mask] = self._initial_plan(int(mask.sum()))

    def _scale(self, unit: torch.Tensor) -> torch.Tensor:
        return unit * self.action_scale + self.action_bias

    def _unscale(self, action: torch.Tensor) -> torch.Tensor:
        return ((action - self.action_bias) / self.action_scale).clamp(-1.0, 1.0)

    def _initial_plan(self, batch: int) -> torch.Tensor:
        """Mean actions (continuous) or action probabilities (discrete). Shapes: -> [batch, H, A]"""
        shape = (batch, self.cfg.horizon, self.action_dim)
        if self.discrete:
            return torch.full(shape, 1.0 / self.action_dim, device=self.device)
        return torch.zeros(shape, device=self.device)

    @torch.no_grad()
    def plan(self, obs: torch.Tensor, key: str) -> torch.Tensor:
        """Plan from each row of ``obs``; returns the first action of each plan (env scale or index).

        ``key`` names the warm-start state used and updated: ``collect`` or ``act``.

        Shapes:
            obs [B, O] -> action [B, A] (discrete: [B])
        """
        obs = obs.to(self.device, torch.float32)
        self.evaluating = key == "act"
        self.rng = self.act_generator if self.evaluating else self.generator
        batch = obs.shape[0]
        start = self.plans[key]
        if start is None or start.shape[0] != batch or not self.cfg.warm_start:
            start = self._initial_plan(batch)
            self.kept[key] = None
        with self.autocast():  # the model's matmuls in the policy's precision; returns stay float32
            state = self.model.encode(obs) if self.latent else obs
            optimize = self.optimize if self.compiled_optimize is None else self.compiled_optimize
            mean, first, kept = optimize(state, start, self.kept[key])
        if self.cfg.warm_start:
            self.plans[key] = self._shift(mean)
            self.kept[key] = None if kept is None else self._shift(kept.flatten(0, 1)).view_as(kept)
        return first

    def _shift(self, plans: torch.Tensor) -> torch.Tensor:
        """Drop each plan's first step and append an initial one. Shapes: [B, H, A] -> [B, H, A]"""
        return torch.cat([plans[:, 1:], self._initial_plan(plans.shape[0])[:, :1]], dim=1)

    def optimize(self, obs: torch.Tensor, start: torch.Tensor, kept: torch.Tensor | None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Refit the sampling distribution ``iterations`` times, starting from ``start``.

        ``kept`` are candidates carried over from the previous env step (iCEM), evaluated
        beside the sampled ones. Returns the final mean (or probabilities), the action to
        take, and the candidates to carry to the next step (None for CEM and MPPI).

        Shapes:
            obs [B, O], start [B, H, A], kept [B, K, H, A] -> mean [B, H, A], action [B, A] or [B], kept
        """
        mean = start
        std = torch.full_like(start, float(self.cfg.init_std))
        best = _Best()
        # the prior's candidates are rolled out once per call and scored again at every iteration
        # (TD-MPC2's policy trajectories)
        prior = self.prior_sequences(obs) if self.cfg.prior_candidates else None
        for iteration in range(self.cfg.iterations):
            sequences = self.sample(mean, std, self.population(iteration))
            if kept is not None:
                sequences = torch.cat([sequences, kept], dim=1)
            if prior is not None:
                sequences = torch.cat([sequences, prior], dim=1)
            elite_returns, elites = self.select_elites(sequences, self.evaluate(obs, sequences))
            mean, std = self.refit(mean, std, elites, elite_returns)
            best.update(elites[:, 0], elite_returns[:, 0])
            kept = self.carry(elites)
        self.first_std = std[:, 0]
        return mean, self.first_action(mean, best.sequence, elites, elite_returns), kept

    def population(self, iteration: int) -> int:
        """Candidates sampled at ``iteration`` (less any prior candidates)."""
        return max(1, self.cfg.candidates - self.cfg.prior_candidates)

    def carry(self, elites: torch.Tensor) -> torch.Tensor | None:
        """Candidates evaluated again at the next iteration and env step (none for CEM)."""
        return None

    def select_elites(self, sequences: torch.Tensor, returns: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``elites`` best candidates, best first.

        Shapes:
            sequences [B, N, H, A], returns [B, N] -> elite returns [B, K], elites [B, K, H, A]
        """
        elite_returns, index = returns.topk(self.cfg.elites, dim=1)
        elites = torch.gather(sequences, 1, index[..., None, None].expand(-1, -1, *sequences.shape[2:]))
        return elite_returns, elites

    def first_action(self, mean: torch.Tensor, best_sequence: torch.Tensor, elites: torch.Tensor,
                     elite_returns: torch.Tensor) -> torch.Tensor:
        """The action to take: the best candidate's first (discrete); else the distribution's mean
        first action, or (``action_choice="elite_sample"``) the first action of one of the last
        iteration's elites drawn with the refit's weights.

        Shapes:
            mean [B, H, A], best_sequence [B, H, A], elites [B, K, H, A], elite_returns [B, K] -> [B, A] or [B]
        """
        if self.discrete:
            return best_sequence[:, 0].argmax(-1)
        if self.cfg.action_choice == "elite_sample":
            index = torch.multinomial(self.elite_weights(elite_returns), 1, generator=self.rng)[:, 0]
            return self._scale(elites[torch.arange(elites.shape[0], device=elites.device), index, 0])
        return self._scale(mean[:, 0].clamp(-1.0, 1.0))

    def elite_weights(self, elite_returns: torch.Tensor) -> torch.Tensor:
        """How much each elite counts in a refit: equally (CEM). Shapes: [B, K] -> [B, K], rows sum to 1"""
        return torch.full_like(elite_returns, 1.0 / elite_returns.shape[1])

    def sample(self, mean: torch.Tensor, std: torch.Tensor, count: int) -> torch.Tensor:
        """``count`` candidates: [-1, 1] actions (continuous) or one-hot actions (discrete).

        Shapes:
            mean, std [B, H, A] -> sequences [B, count, H, A]
        """
        batch, horizon, dims = mean.shape
        if self.discrete:
            probs = mean[:, None].expand(batch, count, horizon, dims).reshape(-1, dims)
            index = torch.multinomial(probs, 1, generator=self.rng).reshape(batch, count, horizon)
            return F.one_hot(index, dims).float()
        noise = colored_noise((batch, count, horizon, dims), float(self.cfg.noise_exponent), self.rng,
                              self.device)
        return (mean[:, None] + std[:, None] * noise).clamp(-1.0, 1.0)

    def refit(self, mean: torch.Tensor, std: torch.Tensor, elites: torch.Tensor, elite_returns: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """CEM: the elites' mean and std, blended with the previous distribution by ``momentum``.

        Shapes:
            mean, std [B, H, A]; elites [B, K, H, A]; elite_returns [B, K] -> mean, std [B, H, A]
        """
        momentum = float(self.cfg.momentum)
        new_mean = elites.mean(dim=1)
        if self.discrete:
            return momentum * mean + (1 - momentum) * new_mean, std
        new_std = elites.std(dim=1, unbiased=False).clamp_min(float(self.cfg.min_std))
        return momentum * mean + (1 - momentum) * new_mean, momentum * std + (1 - momentum) * new_std

    # -- scoring --------------------------------------------------------
    def model_actions(self, sequences: torch.Tensor, t: int) -> torch.Tensor:
        """Step ``t`` of every candidate as the model takes it (env scale, or indices).

        Shapes:
            sequences [B, N, H, A] -> [B * N * P, A] (discrete: [B * N * P])
        """
        step = sequences[:, :, t]
        step = step[:, :, None].expand(-1, -1, self.particles, -1).reshape(-1, step.shape[-1])
        return step.argmax(-1) if self.discrete else self._scale(step)

    def model_step(self, obs: torch.Tensor, action: torch.Tensor, members: torch.Tensor | None
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        propagation, prefix = self.cfg.propagation, "imagine_" if self.latent else ""
        if propagation == "ts_inf":
            return getattr(self.model, f"{prefix}step_members")(obs, action, members, generator=self.rng)
        if propagation == "mean":
            return getattr(self.model, f"{prefix}step_mean")(obs, action)
        return getattr(self.model, f"{prefix}step")(obs, action)

    def prior_action(self, state: torch.Tensor) -> torch.Tensor:
        """The prior's action at ``state``: sampled while collecting, its mean while evaluating.

        Shapes:
            state [B, S] -> action [B, A] (env scale; discrete: [B])
        """
        if self.prior is not None:
            return self.prior.act(state) if self.evaluating else self.prior.collect(state)
        return self.model.policy_action(state, deterministic=self.evaluating, generator=self.rng)

    def state_value(self, state: torch.Tensor) -> torch.Tensor:
        """The bootstrap value of ``state`` (the prior's, else the model's). Shapes: [B, S] -> [B]"""
        if self.prior is not None:
            return self.prior.value(state)
        return self.model.value(state, generator=self.rng)

    def particle_members(self, batch: int, count: int) -> torch.Tensor | None:
        """Particle p of every candidate follows member p mod planning_members. Shapes: -> [B * N * P]"""
        if self.cfg.propagation != "ts_inf":
            return None
        members = torch.arange(self.particles, device=self.device) % int(self.model.planning_members)
        return members.repeat(batch * count)

    def evaluate(self, obs: torch.Tensor, sequences: torch.Tensor) -> torch.Tensor:
        """Predicted return of every candidate, averaged over its particles.

        Shapes:
            obs [B, O], sequences [B, N, H, A] -> returns [B, N]
        """
        batch, count, horizon = sequences.shape[:3]
        rows = batch * count * self.particles
        state = obs[:, None, None].expand(batch, count, self.particles, obs.shape[-1]).reshape(rows, -1)
        members = self.particle_members(batch, count)
        alive = torch.ones(rows, device=self.device)
        total = torch.zeros(rows, device=self.device)
        discount = 1.0
        for t in range(horizon):
            reward, state, done = self.model_step(state, self.model_actions(sequences, t), members)
            total = total + discount * alive * reward.float()
            alive = alive * (~done).float()
            discount *= float(self.cfg.gamma)
        if self.cfg.value_bootstrap:
            total = total + discount * alive * self.state_value(state).float()
        total = torch.nan_to_num(total, nan=-math.inf)
        return total.reshape(batch, count, self.particles).mean(dim=-1)

    def prior_sequences(self, obs: torch.Tensor) -> torch.Tensor:
        """``prior_candidates`` sequences of the prior's actions along the model's predicted path.

        Shapes:
            obs [B, S] (a latent model's state) -> sequences [B, C, H, A] (continuous in [-1, 1]; discrete one-hot)
        """
        count = int(self.cfg.prior_candidates)
        state = obs.repeat_interleave(count, dim=0)
        steps = []
        step = self.model.imagine_step if self.latent else self.model.step
        for _ in range(self.cfg.horizon):
            action = self.prior_action(state)
            steps.append(F.one_hot(action.long(), self.action_dim).float() if self.discrete
                         else self._unscale(action))
            _, state, _ = step(state, action)
        return torch.stack(steps, dim=1).reshape(obs.shape[0], count, self.cfg.horizon, -1)

    # -- learning and state ---------------------------------------------
    def learn(self, data: Any) -> dict[str, float]:
        """Train the prior on a batch (nothing to learn without one)."""
        if self.prior is None:
            return {}
        return {f"prior_{key}": value for key, value in self.prior.learn(data).items()}

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["plans"] = dict(self.plans)
        state["kept"] = dict(self.kept)
        if self.prior is not None:
            state["prior"] = self.prior.state_dict()
        return state

    def load_state_dict(self, state: Mapping) -> None:
        super().load_state_dict(state)
        self.plans = dict(state["plans"])
        self.kept = dict(state["kept"])
        if self.prior is not None:
            self.prior.load_state_dict(state["prior"])


@POLICY_REGISTRY.register("cem")
class CEMPolicy(PlannerPolicy):
    """Cross-entropy method: Gaussian (or categorical) sampling refitted to the elites (PETS)."""


@POLICY_REGISTRY.register("icem")
class ICEMPolicy(PlannerPolicy):
    """iCEM (Pinneri et al., 2020): colored noise, a population that shrinks each iteration,
    and a share of the elites kept for the next iteration and (shifted) the next env step."""

    config = dict(
        noise_exponent=2.0,
        population_decay=1.25,  # candidates shrink by this factor each iteration
        keep_elites=0.3,  # share of the elites carried into the next iteration and env step
    )

    def check_config(self, c: Mapping) -> None:
        super().check_config(c)
        check_range(c, "population_decay", 1.0, prefix="policy")
        check_range(c, "keep_elites", 0.0, 1.0, prefix="policy")

    def population(self, iteration: int) -> int:
        sampled = (self.cfg.candidates - self.cfg.prior_candidates) / self.cfg.population_decay ** iteration
        return max(self.cfg.elites, int(sampled))

    def carry(self, elites: torch.Tensor) -> torch.Tensor | None:
        keep = int(round(self.cfg.keep_elites * self.cfg.elites))
        return elites[:, :keep].clone() if keep else None


@POLICY_REGISTRY.register("mppi")
class MPPIPolicy(PlannerPolicy):
    """MPPI as TD-MPC2 uses it: the distribution is refitted to the elites weighted by
    ``exp(temperature * (return - best return))``; continuous actions only."""

    config = dict(temperature=0.5, momentum=0.0)

    def check_config(self, c: Mapping) -> None:
        super().check_config(c)
        check_range(c, "temperature", 0.0, low_open=True, prefix="policy")

    def __init__(self, cfg: Mapping | None, env_spec: Any, **kwargs: Any) -> None:
        super().__init__(cfg, env_spec, **kwargs)
        if self.discrete:
            raise ConfigError("policy 'mppi' plans continuous actions; use 'cem' or 'icem' for a Discrete "
                              "action space")

    def elite_weights(self, elite_returns: torch.Tensor) -> torch.Tensor:
        """``softmax(temperature * (return - best return))`` over the elites. Shapes: [B, K] -> [B, K]"""
        return torch.softmax(float(self.cfg.temperature) * (elite_returns - elite_returns[:, :1]), dim=1)

    def refit(self, mean: torch.Tensor, std: torch.Tensor, elites: torch.Tensor, elite_returns: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        weights = self.elite_weights(elite_returns)[..., None, None]
        new_mean = (weights * elites).sum(dim=1)
        new_std = (weights * (elites - new_mean[:, None]).pow(2)).sum(dim=1).sqrt().clamp_min(float(self.cfg.min_std))
        momentum = float(self.cfg.momentum)
        return momentum * mean + (1 - momentum) * new_mean, momentum * std + (1 - momentum) * new_std
