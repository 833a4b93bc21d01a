"""The world-model hierarchy: WorldModel, DynaWorldModel, DreamWorldModel, HybridWorldModel."""
from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from registry import BUFFER_REGISTRY, SCHEDULE_REGISTRY
from wm_core.component import Component
from wm_core.config import ConfigError
from wm_core.utils import check_rank, frozen

Metrics = dict[str, float]


class WorldModel(Component, abc.ABC):
    """A learned model of an environment; owns its networks (``self.nets``) and optimisers.

    Not an ``nn.Module``: ``train`` here means "fit to the replay buffer".

    Args:
        cfg: partial config, merged over ``default_config()``; unknown keys are errors.
        env_spec: anything with ``observation_space`` and ``action_space``.
        logger: optional object with ``log_scalars(prefix, metrics, step)``.
        seed: seeds network initialisation and the model's own generator.
    """

    config = dict(
        train_freq=250,  # env steps between two model trainings
        eval_freq=250,  # env steps between two model evaluations
        rollout_length_scheduler=dict(type="constant", rollout_length=1),
        # train, evaluate and imagine during the collector's random warm-up too (by default the
        # model's first training is at the end of warm-up, when the policy starts learning)
        train_during_warmup=False,
        min_env_transitions=1,  # env-buffer transitions before the model's first training
    )
    section: ClassVar[str] = "world_model"
    kind: ClassVar[str] = "world model"
    # the metric of ``train`` that the progress bar shows beside the return
    progress_metric: ClassVar[str] = "loss"

    def __init__(self, cfg: Mapping | None, env_spec: Any, logger: Any = None, *, seed: int = 0) -> None:
        super().__init__(cfg, env_spec, logger, seed=seed)
        for key in ("train_freq", "eval_freq", "min_env_transitions"):
            if self.cfg[key] < 1:
                raise ConfigError(f"world_model.{key} must be >= 1, got {self.cfg[key]}")
        self.rollout_length_scheduler = SCHEDULE_REGISTRY.build(self.cfg.rollout_length_scheduler)
        self.last_train_envstep = 0
        self.last_eval_envstep = 0
        self.envstep = 0  # the real env step of the latest ``update``
        self._reported_length: float | None = None
        self.img_buffer: Any = None  # the imagination buffer a Dyna model owns (None for other kinds)

    # -- the pipeline's entry point --------------------------------------
    def update(self, envstep: int, env_buffer: Any, policy: Any, train_iter: int) -> dict[str, Metrics]:
        """What this kind of model does at one pipeline iteration, logged; returns the metrics
        by prefix. Here: train when due and ``min_env_transitions`` are stored, evaluate when
        due; Dyna models also fill their imagination buffer. Every kind reports the schedule's
        rollout length (``imagination/rollout_length``): the policy's own when it imagines as
        far as it decides (a planner's horizon), else the schedule's."""
        self.envstep = int(envstep)
        out: dict[str, Metrics] = {}
        if len(env_buffer) >= self.cfg.min_env_transitions and self.should_train(envstep):
            out["world_model"] = self.train(env_buffer, envstep, train_iter)
            self.log("world_model", out["world_model"], envstep)
        if self.should_eval(envstep):
            metrics = self.eval(env_buffer, envstep, train_iter)
            self.log("world_model", metrics, envstep)
            out["world_model"] = {**out.get("world_model", {}), **metrics}
        out["imagination"] = self.update_imagination(policy, env_buffer, envstep, train_iter)
        own = policy.imagined_length(envstep) if policy is not None else None
        length = float(self.rollout_length(envstep) if own is None else own)
        logged = out["imagination"].get("rollout_length")  # by a Dyna fill, at the schedule's length
        if logged != length and (length != self._reported_length or logged is not None):
            self.log("imagination", {"rollout_length": length}, envstep)  # when it changes: progress.csv rows carry it
        self._reported_length = length
        out["imagination"]["rollout_length"] = length
        return out

    def update_imagination(self, policy: Any, env_buffer: Any, envstep: int, train_iter: int) -> Metrics:
        """This kind's imagination at ``update``, logged (Dyna: fill the buffer when due);
        nothing here: a Dream policy imagines in its own update."""
        return {}

    # -- scheduling -----------------------------------------------------
    def should_train(self, envstep: int) -> bool:
        """True once every ``train_freq`` env steps; a True answer records ``envstep``."""
        if envstep - self.last_train_envstep >= self.cfg.train_freq:
            self.last_train_envstep = envstep
            return True
        return False

    def should_eval(self, envstep: int) -> bool:
        """True once every ``eval_freq`` env steps; a True answer records ``envstep``."""
        if envstep - self.last_eval_envstep >= self.cfg.eval_freq:
            self.last_eval_envstep = envstep
            return True
        return False

    def rollout_length(self, envstep: int) -> int:
        """The rollout length the schedule gives at ``envstep``."""
        return int(self.rollout_length_scheduler(envstep))

    # -- learning -------------------------------------------------------
    @abc.abstractmethod
    def train(self, env_buffer: Any, envstep: int, train_iter: int) -> Metrics:
        """Fit the model to ``env_buffer``; returns metrics (scalars)."""

    def eval(self, env_buffer: Any, envstep: int, train_iter: int) -> Metrics:
        """Evaluate the model on ``env_buffer``; returns metrics (scalars)."""
        return {}

    @abc.abstractmethod
    def step(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One imagined step.

        Shapes:
            obs: [B, O]; action: [B, A] -> reward [B], next_obs [B, O], done [B] (bool)
        """

    def policy_input(self, env_buffer: Any, img_buffer: Any, batch_size: int, train_iter: int) -> Any:
        """What the policy learns from at one update; a model-free batch by default.
        (``img_buffer``: the Dyna model's own, kept in the signature for callers of the seed API.)"""
        return env_buffer.sample(batch_size, device=self.device)

    # -- state ----------------------------------------------------------
    def to(self, device: torch.device | str) -> WorldModel:
        self.device = torch.device(device)
        self.nets.to(self.device)
        return self

    def state_dict(self) -> dict:
        """Networks, optimisers, generator, guard and schedule counters (tensors and plain values only)."""
        return {**super().state_dict(), "last_train_envstep": self.last_train_envstep,
                "last_eval_envstep": self.last_eval_envstep}

    def load_state_dict(self, state: Mapping) -> None:
        super().load_state_dict(state)
        self.last_train_envstep = int(state["last_train_envstep"])
        self.last_eval_envstep = int(state["last_eval_envstep"])


class DynaWorldModel(WorldModel):
    """A model that fills an imagination buffer which a model-free learner samples (MBPO)."""

    config = dict(
        real_ratio=0.05,  # fraction of real transitions in each policy batch
        rollout_retain=4,  # imagination buffer keeps this many fills
        rollout_batch_size=1000,  # rollouts started per fill
        rollout_freq=250,  # env steps between two fills
        img_buffer=dict(type="replay"),
    )

    def __init__(self, cfg: Mapping | None, env_spec: Any, logger: Any = None, *, seed: int = 0) -> None:
        super().__init__(cfg, env_spec, logger, seed=seed)
        c = self.cfg
        if not 0.0 <= c.real_ratio <= 1.0:
            raise ConfigError(f"world_model.real_ratio must be within [0, 1], got {c.real_ratio}")
        for key in ("rollout_retain", "rollout_batch_size", "rollout_freq"):
            if c[key] < 1:
                raise ConfigError(f"world_model.{key} must be >= 1, got {c[key]}")
        self.last_fill_envstep = 0
        self.img_buffer = self.make_img_buffer(0)

    def update_imagination(self, policy: Any, env_buffer: Any, envstep: int, train_iter: int) -> Metrics:
        """Fill the model's imagination buffer when due (``should_fill``); logged."""
        if not self.should_fill(envstep):
            return {}
        metrics = self.fill_img_buffer(policy, env_buffer, self.img_buffer, envstep, train_iter)
        self.log("imagination", metrics, envstep)
        return metrics

    def img_buffer_capacity(self, envstep: int) -> int:
        """Rollout length x rollout batch x retain at ``envstep`` (at least 1: an empty buffer when
        the length is 0)."""
        return max(1, self.rollout_length(envstep) * self.cfg.rollout_batch_size * self.cfg.rollout_retain)

    def make_img_buffer(self, envstep: int = 0) -> Any:
        obs_shape = self.observation_space.shape
        action_shape = self.action_space.shape
        return BUFFER_REGISTRY.build(self.cfg.img_buffer, capacity=self.img_buffer_capacity(envstep),
                                     obs_shape=obs_shape, action_shape=action_shape, seed=self.seed + 1)

    def should_fill(self, envstep: int) -> bool:
        """True once the model has trained, then once every ``rollout_freq`` env steps; never while
        the schedule's rollout length is 0."""
        if self.last_train_envstep == 0 or self.rollout_length(envstep) == 0:
            return False
        if self.last_fill_envstep == 0 or envstep - self.last_fill_envstep >= self.cfg.rollout_freq:
            self.last_fill_envstep = envstep
            return True
        return False

    @torch.no_grad()
    def fill_img_buffer(self, policy: Any, env_buffer: Any, img_buffer: Any, envstep: int,
                        train_iter: int) -> Metrics:
        """Start ``rollout_batch_size`` rollouts from real states and push their transitions.

        Every branch runs as one batch; a branch stops at its predicted ``done``.
        """
        length = self.rollout_length(envstep)
        img_buffer.set_capacity(self.img_buffer_capacity(envstep))
        obs = env_buffer.sample(self.cfg.rollout_batch_size, device=self.device)["obs"]
        pushed, penalty_sum, penalty = 0, 0.0, None
        for _ in range(length):
            action = policy.collect(obs)
            reward, next_obs, done = self.step(obs, action)
            penalty = self.reward_penalty(obs, action)
            if penalty is not None:
                reward = reward - penalty
                penalty_sum += float(penalty.sum())
            img_buffer.push(obs, action, reward, next_obs, done, torch.zeros_like(done))
            pushed += obs.shape[0]
            alive = ~done
            if not bool(alive.any()):
                break
            obs = next_obs[alive]
        metrics = {"rollout_length": float(length), "img_transitions_pushed": float(pushed),
                   "img_buffer_size": float(len(img_buffer))}
        if penalty is not None:
            metrics["reward_penalty_mean"] = penalty_sum / max(pushed, 1)
        return metrics

    def reward_penalty(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor | None:
        """What to subtract from each imagined reward before it enters the imagination buffer
        (e.g. MOPO's uncertainty penalty for offline RL); None: nothing.

        Shapes:
            obs [B, O]; action [B, A] -> [B] or None
        """
        return None

    def sample(self, env_buffer: Any, img_buffer: Any, batch_size: int, train_iter: int) -> dict:
        """A batch of ``real_ratio`` real and ``1 - real_ratio`` imagined transitions."""
        n_img = 0 if len(img_buffer) == 0 else int(round(batch_size * (1.0 - self.cfg.real_ratio)))
        n_real = batch_size - n_img
        parts = []
        if n_real:
            parts.append(env_buffer.sample(n_real, device=self.device))
        if n_img:
            parts.append(img_buffer.sample(n_img, device=self.device))
        if len(parts) == 1:
            return parts[0]
        return {key: torch.cat([p[key] for p in parts], dim=0) for key in parts[0]}

    def policy_input(self, env_buffer: Any, img_buffer: Any, batch_size: int, train_iter: int) -> Any:
        return self.sample(env_buffer, img_buffer, batch_size, train_iter)

    def state_dict(self) -> dict:
        state = super().state_dict()
        state["last_fill_envstep"] = self.last_fill_envstep
        return state

    def load_state_dict(self, state: Mapping) -> None:
        super().load_state_dict(state)
        self.last_fill_envstep = int(state["last_fill_envstep"])


ActorFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class ContractError(ConfigError):
    """A component lacks what another relies on (e.g. a Dream model a Dream policy cannot learn in)."""


class ActionCodec:
    """Env actions <-> the model's action input: one-hot for Discrete, [-1, 1] for Box.

    Shapes:
        to_model: env actions [..., A] (Box) or [...] (Discrete) -> model actions [..., A]
        to_env: model actions [..., A] -> env actions, same shapes as ``to_model``'s input
    """

    def __init__(self, space: Any, device: torch.device) -> None:
        self.discrete = hasattr(space, "n")
        if self.discrete:
            self.dim = int(space.n)
        elif len(space.shape) == 1 and np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high)):
            self.dim = int(space.shape[0])
            low = torch.as_tensor(space.low, dtype=torch.float32, device=device)
            high = torch.as_tensor(space.high, dtype=torch.float32, device=device)
            self.scale, self.bias = (high - low) / 2, (high + low) / 2
        else:
            raise ConfigError(f"a Dream model needs a Discrete or a bounded 1-D Box action space, got {space}")

    def to_model(self, action: torch.Tensor) -> torch.Tensor:
        if self.discrete:
            return F.one_hot(action.long(), self.dim).float()
        return ((action.float() - self.bias) / self.scale).clamp(-1.0, 1.0)

    def to_env(self, action: torch.Tensor) -> torch.Tensor:
        if self.discrete:
            return action.argmax(-1)
        return action * self.scale + self.bias

    def to(self, device: torch.device) -> None:
        if not self.discrete:
            self.scale, self.bias = self.scale.to(device), self.bias.to(device)


@dataclass(frozen=True)
class ImaginationStarts:
    """What a Dream model hands a Dream policy at an update: where imagination begins.

    Shapes:
        features [N, F]: model states (detached), e.g. the latest batch's posterior features;
        continues [N]: 1 - terminated of each state (float).
    ``envstep`` is the real env step: ``rollout(features, actor_fn, envstep)`` imagines as
    many steps as the model's rollout-length schedule says there.
    """

    features: torch.Tensor
    continues: torch.Tensor
    envstep: int


class DreamWorldModel(WorldModel):
    """A model inside whose imagined rollouts the policy learns (Dreamer).

    What a Dream policy (the built-in ``dreamer``) needs from the model, all declared here:

    - learning: ``starts`` [N, F] and ``start_continues`` [N], set by ``train`` to the states
      imagination starts from (``dreamerv3``: the latest batch's posterior features), handed
      over as ``ImaginationStarts``; ``rollout`` / ``imagine_step`` with gradients flowing
      from the imagined states into the actions (do not run ``imagine_step`` under
      ``torch.no_grad``, as a Dyna ``step`` may). A model that trains but sets no starts,
      or whose imagined states carry no gradient for a backprop actor, fails at the first
      update with a ContractError.
    - acting: ``initial_state``, ``filter_step`` (observation -> state), ``feature_dim``,
      ``sizes`` (``units``, ``layers``: the actor's defaults) and ``actions``, an action codec
      with ``discrete``, ``dim``, ``to_model`` (env actions -> model actions: one-hot, or
      [-1, 1]) and ``to_env``. ``imagine_step`` takes model actions; a Dyna ``step`` takes
      env-scale ones.
    """

    config = dict(rollout_length_scheduler=dict(type="constant", rollout_length=15))

    def __init__(self, cfg: Mapping | None, env_spec: Any, logger: Any = None, *, seed: int = 0) -> None:
        super().__init__(cfg, env_spec, logger, seed=seed)
        self.starts: torch.Tensor | None = None  # [N, F] imagination start states, set by train
        self.start_continues: torch.Tensor | None = None  # [N] their continue flags
        self.trained_once = False  # a train call has reported metrics (so it has trained)

    def update(self, envstep: int, env_buffer: Any, policy: Any, train_iter: int) -> dict[str, Metrics]:
        out = super().update(envstep, env_buffer, policy, train_iter)
        if out.get("world_model"):
            self.trained_once = True
        return out

    def state_dict(self) -> dict:
        """The base state plus the latest imagination starts, whether the model has trained and
        the env step of its latest update (a Dream policy may act by it: Plan2Explore's switch)."""
        return {**super().state_dict(), "starts": self.starts, "start_continues": self.start_continues,
                "trained_once": self.trained_once, "envstep": self.envstep}

    def load_state_dict(self, state: Mapping) -> None:
        super().load_state_dict(state)
        self.starts, self.start_continues = state.get("starts"), state.get("start_continues")
        if self.starts is not None:
            self.starts = self.starts.to(self.device)
            self.start_continues = self.start_continues.to(self.device)
        # older checkpoints lack the flag: a model that saved starts had trained
        self.trained_once = bool(state.get("trained_once", self.starts is not None))
        self.envstep = int(state.get("envstep", 0))

    # -- acting (a Dream policy acts through the model's recurrent state) ---------
    feature_dim: int | None = None  # F: the size of a model state as a Dream policy sees it
    actions: Any = None  # the action codec: discrete, dim, to_model(env action), to_env(model action)
    sizes: Any = None  # units, layers: the Dream policy's default widths

    def initial_state(self, batch: int) -> tuple[torch.Tensor, ...]:
        """The recurrent state before an episode's first observation (``dreamerv3``: deter [B, D],
        stoch [B, Z])."""
        raise ContractError(f"world model '{self.cfg.type}' cannot act for a Dream policy: it has no "
                            "initial_state (see DreamWorldModel)")

    def filter_step(self, deter: torch.Tensor, stoch: torch.Tensor, action: torch.Tensor, obs: torch.Tensor,
                    is_first: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The state after ``action`` [B, A] (model actions) and observing ``obs`` [B, *obs_shape];
        rows where ``is_first`` [B] restart from the initial state."""
        raise ContractError(f"world model '{self.cfg.type}' cannot act for a Dream policy: it has no "
                            "filter_step (see DreamWorldModel)")

    def acting_contract_gaps(self) -> list[str]:
        """What this model lacks for a Dream policy to act through it (empty: nothing)."""
        gaps = [name for name in ("initial_state", "filter_step")
                if getattr(type(self), name) is getattr(DreamWorldModel, name)]
        return gaps + [name for name in ("feature_dim", "actions", "sizes") if getattr(self, name, None) is None]

    def imagination_starts(self) -> ImaginationStarts | None:
        """The states imagination starts from at ``self.envstep``; None before the first training.

        Raises:
            ContractError: the model has trained but never set ``starts``.
        """
        if self.starts is None or self.start_continues is None:
            if self.trained_once:
                raise ContractError(f"world model '{self.cfg.type}' trained but set no imagination starts: a "
                                    "Dream model's train sets self.starts [N, F] and self.start_continues [N] "
                                    "(see DreamWorldModel)")
            return None
        return ImaginationStarts(self.starts, self.start_continues, self.envstep)

    def imagine_step(self, state: torch.Tensor, action: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One differentiable imagined step from a model state; ``step`` by default.

        Shapes:
            state: [B, S]; action: [B, A] -> reward [B], next_state [B, S], done [B]
        """
        return self.step(state, action)

    def dream_step(self, state: torch.Tensor, action: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The step ``rollout`` takes: model actions (the codec's ``to_model`` space), with
        gradients into the action; ``imagine_step`` by default. A model whose
        ``imagine_step`` takes env-scale actions for planners (``latent``) overrides it.

        Shapes:
            state: [B, S]; action: [B, A] -> reward [B], next_state [B, S], done [B]
        """
        return self.imagine_step(state, action)
    def rollout(self, start: torch.Tensor, actor_fn: ActorFn, envstep: int,
                horizon: int | None = None) -> tuple[torch.Tensor, ...]:
        """Imagine ``horizon`` steps (the schedule's length by default) from ``start``.

        The model's parameters take no gradient, but gradients flow through the
        model into whatever ``actor_fn`` computed its actions with.

        Shapes:
            start: [B, S] -> states [N+1, B, S], actions [N+1, B, A], rewards [N, B],
            aug_rewards [N+1, B], dones [N, B] (float), where states[0] is ``start``.

        ``aug_rewards`` carries what ``actor_fn`` returns beside each action: an intrinsic
        reward of the state the action is taken in (e.g. an exploration bonus such as
        Plan2Explore's disagreement); the ``dreamer`` policy returns zeros.
        """
        check_rank("start", start, 2)
        horizon = self.rollout_length(envstep) if horizon is None else int(horizon)
        states, actions, rewards, aug_rewards, dones = [start], [], [], [], []
        state = start
        with frozen(self.nets):
            for _ in range(horizon):
                action, aug_reward = actor_fn(state)
                reward, state, done = self.dream_step(state, action)
                actions.append(action)
                aug_rewards.append(aug_reward)
                rewards.append(reward)
                dones.append(done.to(reward.dtype))
                states.append(state)
            action, aug_reward = actor_fn(state)
            actions.append(action)
            aug_rewards.append(aug_reward)
        return (torch.stack(states), torch.stack(actions), torch.stack(rewards),
                torch.stack(aug_rewards), torch.stack(dones))

    def policy_input(self, env_buffer: Any, img_buffer: Any, batch_size: int, train_iter: int) -> Any:
        """The policy learns in imagination: its input is where imagination starts."""
        return self.imagination_starts()


class HybridWorldModel(DynaWorldModel, DreamWorldModel):
    """Both: fills an imagination buffer and expands value targets through the model."""

    config = dict(rollout_length_scheduler=dict(type="constant", rollout_length=1))

    def policy_input(self, env_buffer: Any, img_buffer: Any, batch_size: int, train_iter: int) -> Any:
        return DynaWorldModel.policy_input(self, env_buffer, img_buffer, batch_size, train_iter)
