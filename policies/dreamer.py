"""DreamerV3's actor-critic, registered as ``dreamer``: learns inside a Dream world model's
imagined rollouts and acts in the real env through the model's recurrent state.

- Returns: lambda-returns over ``horizon`` imagined steps, discounted by ``gamma`` times
  the predicted continue probability; every term is weighted by the cumulative
  discount-and-continue of reaching its state.
- Actor: REINFORCE with the normalised advantage for discrete actions, dynamics
  backpropagation of the normalised return for continuous ones (``actor_grad``), plus
  an entropy bonus. Returns are normalised by an EMA of their 5th-95th percentile
  range, never by less than 1 (so small returns are not blown up).
- Critic: twohot over 255 symexp bins, regressed on the lambda-returns and towards a
  slow EMA copy of itself.

The world model is a Dream model providing what ``DreamWorldModel`` declares (imagination
starts, ``rollout``, ``initial_state``, ``filter_step``, an action codec, ``feature_dim`` and
``sizes``); it imagines as far as its rollout-length schedule says at the real env step.

Plan2Explore (a world model whose ``exploration`` is its ``plan2explore`` config, e.g.
``dreamerv3`` with ``world_model.plan2explore.enabled``): a second, exploration
actor-critic imagines from the starts and learns from the intrinsic reward its rollout
returns in ``aug_rewards`` (the model's ``intrinsic_reward`` of each imagined state and
action) plus ``extrinsic_scale`` times the task reward. The task actor-critic learns on the
task reward from the same imagination: ``task_horizon`` steps of the task actor from every
state the explorer imagined, weighted by the chance that the explorer's rollout is still
running there, its critic regressed on lambda-returns bootstrapped from itself (zero-shot:
the task actor never needs to collect); with ``task_starts="replay"`` it imagines its own
rollout from the explorer's starts instead, as long as the schedule says (as without
Plan2Explore). The exploration actor collects until the env step
``explore_until`` (None: always), the task actor after; evaluation always uses the task actor.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from policies.base import Policy
from registry import POLICY_REGISTRY
from wm_core.config import ConfigError, check_choice
from wm_core.utils import adam, check_rank, seeded_init
from worldmodels.base import ContractError, DreamWorldModel, ImaginationStarts
from worldmodels.dreamer_nets import TwoHot, norm_mlp, sample_one_hot, unimix_log_probs

ACTOR_GRADS = ("auto", "reinforce", "backprop")
ACTOR_BACKPROPS = ("full", "dreamerv3")
HALF_LOG_2PI_E = 0.5 * math.log(2 * math.pi * math.e)


def lambda_returns(rewards: torch.Tensor, values: torch.Tensor, continues: torch.Tensor, gamma: float,
                   lambda_: float) -> torch.Tensor:
    """TD(lambda) returns, bootstrapped from the last value.

    ``R_t = r_t + gamma c_t ((1 - lambda) v_{t+1} + lambda R_{t+1})`` with ``R_N = v_N``,
    where ``r_t`` and ``c_t`` are the reward and continue of arriving at state t+1.

    Shapes:
        rewards [N, B], values [N+1, B], continues [N, B] -> returns [N, B]
    """
    check_rank("rewards", rewards, 2)
    if values.shape[0] != rewards.shape[0] + 1 or continues.shape != rewards.shape:
        raise ValueError(f"lambda_returns: rewards {tuple(rewards.shape)}, values {tuple(values.shape)} and "
                         f"continues {tuple(continues.shape)} must be [N, B], [N+1, B] and [N, B]")
    discounts = gamma * continues
    # Everything but the recursive term is computed for all steps at once.
    targets = rewards + discounts * (1.0 - lambda_) * values[1:]
    returns = []
    last = values[-1]
    for t in reversed(range(rewards.shape[0])):
        last = targets[t] + discounts[t] * lambda_ * last
        returns.append(last)
    return torch.stack(returns[::-1])


class ReturnNormalizer(nn.Module):
    """EMA of the low and high percentiles of returns; the scale is their range, floored.

    Args:
        decay: EMA decay per update.
        low, high: percentiles (0-100).
        floor: the scale never drops below this (DreamerV3: 1, so that returns that are
            already small are not amplified).
    """

    def __init__(self, decay: float = 0.99, low: float = 5.0, high: float = 95.0, floor: float = 1.0) -> None:
        super().__init__()
        self.decay, self.floor = decay, floor
        self.register_buffer("quantiles", torch.tensor([low / 100.0, high / 100.0]), persistent=False)
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))

    @torch.no_grad()
    def update(self, returns: torch.Tensor) -> None:
        low, high = torch.quantile(returns.detach().flatten().float(), self.quantiles)
        self.low.lerp_(low, 1.0 - self.decay)
        self.high.lerp_(high, 1.0 - self.decay)

    def scale(self) -> torch.Tensor:
        return torch.clamp_min(self.high - self.low, self.floor)


class Actor(nn.Module):
    """Features -> a categorical (with unimix) or a Normal with tanh mean and bounded std.

    Shapes:
        features [..., F] -> discrete: log_probs [..., A]; continuous: mean, std [..., A]
    """

    def __init__(self, feature_dim: int, action_dim: int, discrete: bool, units: int, layers: int,
                 unimix: float, min_std: float, max_std: float) -> None:
        super().__init__()
        self.discrete, self.unimix = discrete, unimix
        self.min_std, self.max_std = min_std, max_std
        self.net = norm_mlp(feature_dim, units, layers, action_dim if discrete else 2 * action_dim)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.net(features)
        if self.discrete:
            return (unimix_log_probs(out, self.unimix),)
        mean, std = out.chunk(2, dim=-1)
        return torch.tanh(mean), (self.max_std - self.min_std) * torch.sigmoid(std + 2.0) + self.min_std

    def sample(self, params: tuple[torch.Tensor, ...], generator: torch.Generator | None) -> torch.Tensor:
        """A model action (one-hot, or in [-1, 1]); the mode when ``generator`` is None.

        Gradients reach the parameters straight through (one-hot) or by reparameterisation
        (Normal, clipped to [-1, 1] with a straight-through gradient).
        """
        if self.discrete:
            return sample_one_hot(params[0], generator)
        mean, std = params
        if generator is None:
            return mean
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        action = mean + std * noise
        return action + (action.clamp(-1.0, 1.0) - action).detach()

    def log_prob(self, params: tuple[torch.Tensor, ...], action: torch.Tensor) -> torch.Tensor:
        if self.discrete:
            return (params[0] * action).sum(-1)
        mean, std = params
        return (-0.5 * ((action - mean) / std).square() - std.log() - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self, params: tuple[torch.Tensor, ...]) -> torch.Tensor:
        if self.discrete:
            return -(params[0].exp() * params[0]).sum(-1)
        return (params[1].log() + HALF_LOG_2PI_E).sum(-1)


@dataclass(frozen=True)
class ActorCritic:
    """One actor-critic's nets and the prefix of its optimisers' names (``{prefix}actor``,
    ``{prefix}critic``): the task's (prefix "") or Plan2Explore's exploration one ("explore_")."""

    prefix: str
    actor: Actor
    critic: nn.Module
    slow_critic: nn.Module
    return_norm: ReturnNormalizer


@POLICY_REGISTRY.register("dreamer")
class DreamerPolicy(Policy):
    """DreamerV3's actor-critic; see the module docstring. Needs a ``dreamerv3``-like world model.

    Acting keeps the model's recurrent state per env slot: one state for ``collect``
    (the collector's vector env) and one for ``act`` (the evaluator), reset by ``reset``.
    """

    config: ClassVar[dict] = {
        "precision": "auto",  # bf16 where this machine runs it natively: returns measured to hold (README)
        "gamma": 0.997,  # discount
        "return_lambda": 0.95,  # TD(lambda) mixing
        "actor_grad": "auto",  # auto (reinforce for discrete, backprop for continuous) | reinforce | backprop
        # the backprop estimator: "full" (the return's total derivative: the actor sees the imagined
        # states with their gradients; the critic baseline is detached) or "dreamerv3" (as DreamerV3's
        # code: the actor sees detached states, so gradients reach earlier actions only through the
        # dynamics, and the baseline's value keeps its gradient through the states)
        "actor_backprop": "full",
        "entropy_coef": 3e-4,  # entropy bonus of the actor
        "actor_lr": 8e-5,
        "critic_lr": 8e-5,
        "adam_eps": 1e-5,
        "grad_clip": 100.0,  # gradient-norm clip of actor and critic, each
        "slow_critic_fraction": 0.02,  # EMA rate of the slow critic per update
        "slow_critic_reg": 1.0,  # weight of the pull towards the slow critic
        "return_norm_decay": 0.99,  # EMA decay of the return percentiles
        "return_percentiles": [5.0, 95.0],  # low and high percentiles of the return range
        "return_scale_floor": 1.0,  # returns are divided by max(floor, range)
        "imagine_starts": 256,  # start states per update, drawn from the model's latest batch; 0: all
        "critic_bins": 255,  # twohot bins of the critic
        "action_unimix": 0.01,  # uniform mass mixed into the discrete actor
        "min_std": 0.1,  # continuous actor std range
        "max_std": 1.0,
        "units": None,  # actor and critic width; None: the world model's
        "layers": None,  # actor and critic hidden layers; None: the world model's
    }

    def __init__(self, cfg: Mapping | None, env_spec: Any, *, world_model: Any = None, seed: int = 0,
                 logger: Any = None) -> None:
        super().__init__(cfg, env_spec, world_model=world_model, seed=seed, logger=logger)
        c = self.cfg
        if not isinstance(world_model, DreamWorldModel):
            raise ConfigError("policy 'dreamer' learns in imagination: it needs a Dream world model such as "
                              "'dreamerv3' (set world_model.type)")
        gaps = world_model.acting_contract_gaps()
        if gaps:
            raise ContractError(f"policy 'dreamer' cannot act through world model '{world_model.cfg.type}': it "
                                f"lacks {', '.join(gaps)} (see DreamWorldModel)")
        check_choice(c, "actor_grad", ACTOR_GRADS, prefix="policy")
        check_choice(c, "actor_backprop", ACTOR_BACKPROPS, prefix="policy")
        for key in ("critic_bins",):
            if c[key] < 1:
                raise ConfigError(f"policy.{key} must be >= 1, got {c[key]}")
        if c.imagine_starts < 0:
            raise ConfigError(f"policy.imagine_starts must be >= 0, got {c.imagine_starts}")
        if len(c.return_percentiles) != 2 or not 0 <= c.return_percentiles[0] < c.return_percentiles[1] <= 100:
            raise ConfigError(f"policy.return_percentiles must be [low, high] within 0-100, "
                              f"got {c.return_percentiles}")
        self.discrete = world_model.actions.discrete
        self.backprop = c.actor_grad == "backprop" or (c.actor_grad == "auto" and not self.discrete)
        units = c.units or world_model.sizes.units
        layers = c.layers if c.layers is not None else world_model.sizes.layers
        feature_dim, action_dim = world_model.feature_dim, world_model.actions.dim
        with seeded_init(self.seed + 1):
            self.actor = Actor(feature_dim, action_dim, self.discrete, units, layers, c.action_unimix,
                               c.min_std, c.max_std)
            self.critic = norm_mlp(feature_dim, units, layers, c.critic_bins, zero_output=True)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.return_norm = ReturnNormalizer(c.return_norm_decay, *c.return_percentiles, c.return_scale_floor)
        self.twohot = TwoHot(c.critic_bins)
        self.nets.update({"actor": self.actor, "critic": self.critic, "slow_critic": self.slow_critic,
                          "return_norm": self.return_norm, "twohot": self.twohot})
        self.nets.to(self.device)
        self.optimizers = {
            "actor": adam(self.actor.parameters(), lr=c.actor_lr, eps=c.adam_eps),
            "critic": adam(self.critic.parameters(), lr=c.critic_lr, eps=c.adam_eps),
        }
        self.states: dict[str, dict[str, torch.Tensor]] = {}  # "collect" / "eval" recurrent states
        self.task = ActorCritic("", self.actor, self.critic, self.slow_critic, self.return_norm)
        # Plan2Explore: the model's plan2explore config when enabled (module docstring)
        self.exploration = getattr(world_model, "exploration", None)
        self.explorer: ActorCritic | None = None
        if self.exploration is not None:
            with seeded_init(self.seed + 2):
                actor = Actor(feature_dim, action_dim, self.discrete, units, layers, c.action_unimix,
                              c.min_std, c.max_std)
                critic = norm_mlp(feature_dim, units, layers, c.critic_bins, zero_output=True)
            self.explorer = ActorCritic("explore_", actor, critic, copy.deepcopy(critic).requires_grad_(False),
                                        ReturnNormalizer(c.return_norm_decay, *c.return_percentiles,
                                                         c.return_scale_floor))
            for name in ("actor", "critic", "slow_critic", "return_norm"):
                self.nets[f"explore_{name}"] = getattr(self.explorer, name).to(self.device)
            self.optimizers["explore_actor"] = adam(actor.parameters(), lr=c.actor_lr, eps=c.adam_eps)
            self.optimizers["explore_critic"] = adam(critic.parameters(), lr=c.critic_lr, eps=c.adam_eps)

    # -- acting ---------------------------------------------------------
    def collect(self, obs: torch.Tensor) -> torch.Tensor:
        return self._act("collect", obs, self.generator, self.explorer.actor if self.explores() else self.actor)

    def act(self, obs: torch.Tensor) -> torch.Tensor:
        return self._act("eval", obs, None)

    def explores(self) -> bool:
        """Whether the exploration actor collects now: Plan2Explore is on and the world model's
        env step (that of its latest update, which is the collector's step whenever the policy
        collects) is below ``explore_until`` (None: always)."""
        if self.explorer is None:
            return False
        until = self.exploration.explore_until
        return until is None or self.world_model.envstep < until

    def _act(self, key: str, obs: torch.Tensor, generator: torch.Generator | None,
             actor: Actor | None = None) -> torch.Tensor:
        """Filter ``obs`` into the ``key`` state and pick actions (``actor``: the task actor by
        default): sampled latents and actions with a generator, modes without.

        Shapes:
            obs [B, *obs_shape] -> env actions [B, A] (Box) or [B] (Discrete)
        """
        model = self.world_model
        check_rank("obs", obs, 1 + len(self.observation_space.shape))
        with torch.no_grad():
            state = self._state(key, obs.shape[0])
            deter, stoch = model.filter_step(state["deter"], state["stoch"], state["action"], obs,
                                             state["is_first"], generator)
            actor = self.actor if actor is None else actor
            action = actor.sample(actor(torch.cat([deter, stoch], dim=-1)), generator)
        self.states[key] = {"deter": deter, "stoch": stoch, "action": action,
                            "is_first": torch.zeros_like(state["is_first"])}
        return model.actions.to_env(action)

    def _state(self, key: str, batch: int) -> dict[str, torch.Tensor]:
        state = self.states.get(key)
        if state is None or state["deter"].shape[0] != batch:
            deter, stoch = self.world_model.initial_state(batch)
            state = {"deter": deter, "stoch": stoch,
                     "action": deter.new_zeros(batch, self.world_model.actions.dim),
                     "is_first": torch.ones(batch, dtype=torch.bool, device=deter.device)}
        return state

    def reset(self, mask: Any = None, *, evaluation: bool = False) -> None:
        """Restart the collector's (or, with ``evaluation``, the evaluator's) recurrent state
        where ``mask`` [B] is True; all rows when ``mask`` is None."""
        key = "eval" if evaluation else "collect"
        state = self.states.get(key)
        if mask is None or state is None:
            self.states.pop(key, None)
            return
        mask = torch.as_tensor(mask, device=state["is_first"].device).bool()
        self.states[key] = {**state, "is_first": state["is_first"] | mask}

    def state_dict(self) -> dict:
        """The base state plus the recurrent acting states (a resumed run continues its episodes)."""
        state = super().state_dict()
        state["acting_states"] = {key: dict(value) for key, value in self.states.items()}
        return state

    def load_state_dict(self, state: Mapping) -> None:
        super().load_state_dict(state)
        self.states = {key: {name: tensor.to(self.device) for name, tensor in value.items()}
                       for key, value in state.get("acting_states", {}).items()}

    # -- learning -------------------------------------------------------
    @classmethod
    def merge_config(cls, cfg: Mapping | None, prefix: str = "") -> Any:
        if isinstance(cfg, Mapping) and "horizon" in cfg:
            raise ConfigError(f"{prefix or 'policy'}.horizon is gone: a Dream policy imagines as many steps as the "
                              "world model's schedule says (set world_model.rollout_length_scheduler, e.g. "
                              "--set world_model.rollout_length_scheduler.rollout_length=15)")
        return super().merge_config(cfg, prefix)

    def learn(self, data: ImaginationStarts | None) -> dict[str, float]:
        """One actor-critic update on imagined rollouts from ``data`` (the world model's
        ``policy_input``); an empty dict while the model has not trained yet (None)."""
        if data is None:
            return {}
        if not isinstance(data, ImaginationStarts):
            raise TypeError(f"policy 'dreamer' learns from ImaginationStarts (a Dream model's policy_input), "
                            f"got {type(data).__name__}")
        if self.explorer is not None:
            return self.learn_exploring(data)
        model = self.world_model
        with self.autocast():
            starts, start_continues = self.pick_starts(data)
            states, actions, rewards, dones, actor_outputs = self.imagine(model, starts, data.envstep)
            continues = torch.cat([start_continues.unsqueeze(0), 1.0 - dones])
            task_losses = self.losses(self.task, states, actions, rewards, continues, actor_outputs)

        # actor and critic step together, each clipped, or (non-finite loss or gradient) not at all
        self.guard.step_groups("actor_critic_loss", task_losses[0] + task_losses[1], self.optimizer_groups(self.task))
        self.update_slow_critic()
        self.train_iter += 1
        return self.task_metrics(task_losses, rewards, continues)

    def task_metrics(self, task_losses: tuple, rewards: torch.Tensor, continues: torch.Tensor) -> dict[str, float]:
        """The metrics of one update: the task actor-critic's ``losses`` and the imagination's
        rewards [H, N] and continues [H + 1, N]."""
        actor_loss, critic_loss, entropy, returns, values = task_losses
        return {"actor_loss": actor_loss.item(), "critic_loss": critic_loss.item(), "entropy": entropy.item(),
                "imagined_return": returns.mean().item(), "imagined_reward": rewards.mean().item(),
                "imagined_continue": continues[1:].mean().item(), "value": values.mean().item(),
                "return_scale": self.return_norm.scale().item(), "nonfinite_skipped": float(self.guard.skipped)}

    def learn_exploring(self, data: ImaginationStarts) -> dict[str, float]:
        """Plan2Explore's update (module docstring): the explorer imagines from the starts and
        learns from its rollout's ``aug_rewards`` (the intrinsic reward of each imagined state
        and action) plus ``extrinsic_scale`` times the task reward; the task actor-critic learns
        from ``task_horizon`` steps of its own actor from every state of that imagination
        (``task_starts="explorer"``) or from its own rollout from the same starts ("replay")."""
        model, explore = self.world_model, self.exploration
        with self.autocast():
            starts, start_continues = self.pick_starts(data)
            states, actions, rewards, aug_rewards, dones, outputs = self.imagine_with(
                model, starts, data.envstep, self.explorer, intrinsic=True)
            continues = torch.cat([start_continues.unsqueeze(0), 1.0 - dones])
            intrinsic = aug_rewards[:-1]  # of (s_t, a_t): aligned with rewards[t], of arriving at s_(t+1)
            explore_rewards = intrinsic + explore.extrinsic_scale * rewards
            explore_losses = self.losses(self.explorer, states, actions, explore_rewards, continues, outputs)

            if explore.task_starts == "replay":  # the task actor's own rollout from the same starts
                task_from, task_first, task_horizon = starts, start_continues, None
            else:  # from every state the explorer imagined, weighted by the chance it is reached
                task_from = states[:-1].detach().flatten(0, 1)
                task_first = torch.cumprod(continues, 0)[:-1].detach().flatten()
                task_horizon = explore.task_horizon
            task_states, task_actions, task_rewards, _, task_dones, task_outputs = self.imagine_with(
                model, task_from, data.envstep, self.task, horizon=task_horizon)
            task_continues = torch.cat([task_first.unsqueeze(0), 1.0 - task_dones])
            task_losses = self.losses(self.task, task_states, task_actions, task_rewards, task_continues,
                                      task_outputs)

        self.guard.step_groups("actor_critic_loss",
                               explore_losses[0] + explore_losses[1] + task_losses[0] + task_losses[1],
                               self.optimizer_groups(self.explorer) + self.optimizer_groups(self.task))
        self.update_slow_critic()
        self.update_slow_critic(self.explorer)
        self.train_iter += 1
        return {**self.task_metrics(task_losses, rewards, continues),
                "intrinsic_reward": intrinsic.mean().item(), "explore_actor_loss": explore_losses[0].item(),
                "explore_critic_loss": explore_losses[1].item(), "explore_entropy": explore_losses[2].item(),
                "explore_imagined_return": explore_losses[3].mean().item(),
                "explore_value": explore_losses[4].mean().item(),
                "explore_return_scale": self.explorer.return_norm.scale().item(),
                "exploring": float(self.explores())}

    def losses(self, ac: ActorCritic, states: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
               continues: torch.Tensor, actor_outputs: tuple[torch.Tensor, ...] | None
               ) -> tuple[torch.Tensor, ...]:
        """The actor and critic losses of ``ac`` on an imagined trajectory, its mean entropy, the
        lambda-returns and the values; updates ``ac``'s return normaliser.

        Shapes:
            states [H+1, B, F], actions [H+1, B, A], rewards [H, B], continues [H+1, B] (the
            start's, then those of arriving at each state) -> scalars, scalar, returns [H, B],
            values [H+1, B]
        """
        c = self.cfg
        critic_log_probs, values = self.critic_forward(states, ac)
        returns = lambda_returns(rewards, values, continues[1:], c.gamma, c.return_lambda)
        weights = (torch.cumprod(c.gamma * continues, 0) / c.gamma).detach()[:-1]
        ac.return_norm.update(returns)
        actor_loss, entropy = self.actor_loss(states, actions, returns, values, weights, actor_outputs, ac)
        critic_loss = self.critic_loss(states, critic_log_probs, returns, weights, ac)
        return actor_loss, critic_loss, entropy, returns, values

    def optimizer_groups(self, ac: ActorCritic) -> list[tuple[torch.optim.Optimizer, Any, float]]:
        """``ac``'s actor and critic optimisers with their parameters and clip, for one guarded step."""
        clip = self.cfg.grad_clip
        return [(self.optimizers[f"{ac.prefix}actor"], ac.actor.parameters(), clip),
                (self.optimizers[f"{ac.prefix}critic"], ac.critic.parameters(), clip)]

    def pick_starts(self, data: ImaginationStarts) -> tuple[torch.Tensor, torch.Tensor]:
        """``imagine_starts`` of the start states, drawn without replacement.

        Shapes:
            -> starts [N, F], continues [N]
        """
        starts, continues = data.features, data.continues
        count = self.cfg.imagine_starts
        if 0 < count < starts.shape[0]:
            index = torch.randperm(starts.shape[0], generator=self.generator, device=self.device)[:count]
            starts, continues = starts[index], continues[index]
        return starts, continues

    def imagine(self, model: Any, starts: torch.Tensor, envstep: int) -> tuple[torch.Tensor, ...]:
        """Roll the actor out in the model for as many steps as its schedule says at ``envstep``.

        Shapes:
            starts [B, F] -> states [H+1, B, F], actions [H+1, B, A], rewards [H, B], dones [H, B],
            actor outputs (REINFORCE: each [H+1, B, ...]; backprop: None)
        """
        states, actions, rewards, _, dones, outputs = self.imagine_with(model, starts, envstep, self.task)
        return states, actions, rewards, dones, outputs

    def imagine_with(self, model: Any, starts: torch.Tensor, envstep: int, ac: ActorCritic,
                     intrinsic: bool = False, horizon: int | None = None) -> tuple[torch.Tensor, ...]:
        """Roll ``ac``'s actor out in the model for ``horizon`` steps (None: as many as its
        schedule says at ``envstep``); with ``intrinsic`` the rollout's ``aug_rewards`` are the
        model's ``intrinsic_reward`` of each state and the action taken in it, else zeros.

        With REINFORCE the rollout itself needs no graph: it runs without one, and the
        actor's outputs at each state are kept (with their graph) for the loss instead of
        being recomputed. With backpropagation the actions keep their gradients through
        the dynamics.

        Shapes:
            starts [B, F] -> states [H+1, B, F], actions [H+1, B, A], rewards [H, B],
            aug_rewards [H+1, B], dones [H, B], actor outputs (REINFORCE: each [H+1, B, ...];
            backprop: None)
        """
        outputs: list[tuple[torch.Tensor, ...]] = []
        actor = ac.actor

        def aug_reward(state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
            return model.intrinsic_reward(state, action) if intrinsic else state.new_zeros(state.shape[0])

        def actor_fn(state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            if self.backprop:
                seen = state.detach() if self.cfg.actor_backprop == "dreamerv3" else state
                action = actor.sample(actor(seen), self.generator)
                return action, aug_reward(state, action)
            with torch.enable_grad():
                params = actor(state)
            outputs.append(params)
            action = actor.sample(tuple(p.detach() for p in params), self.generator)
            return action, aug_reward(state, action)

        extra = {} if horizon is None else {"horizon": horizon}
        if self.backprop:
            states, actions, rewards, aug_rewards, dones = model.rollout(starts, actor_fn, envstep, **extra)
            if states.shape[0] > 1 and not states[1:].requires_grad:
                raise ContractError(f"world model '{model.cfg.type}': imagined states carry no gradient, so the "
                                    "continuous actor cannot learn through the dynamics (imagine_step must not run "
                                    "under torch.no_grad; or set policy.actor_grad='reinforce')")
            return states, actions, rewards, aug_rewards, dones, None
        with torch.no_grad():
            states, actions, rewards, aug_rewards, dones = model.rollout(starts, actor_fn, envstep, **extra)
        return (states, actions, rewards, aug_rewards, dones,
                tuple(torch.stack(parts) for parts in zip(*outputs, strict=True)))

    def critic_forward(self, states: torch.Tensor, ac: ActorCritic | None = None
                       ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The critic's log-probabilities for its loss and its values for the returns.

        With REINFORCE one forward serves both: the values are detached. With
        backpropagation the values carry gradients into ``states`` (not into the critic),
        so the loss needs a forward of its own (None here).

        Shapes:
            states [H+1, B, F] -> log_probs [H, B, K] or None, values [H+1, B]
        """
        critic = (ac or self.task).critic
        if not self.backprop:
            log_probs = F.log_softmax(critic(states.detach()), dim=-1)
            return log_probs[:-1], self.twohot.mean(log_probs.detach(), normalized=True)
        critic.requires_grad_(False)
        try:
            return None, self.twohot.mean(critic(states))
        finally:
            critic.requires_grad_(True)

    def actor_loss(self, states: torch.Tensor, actions: torch.Tensor, returns: torch.Tensor, values: torch.Tensor,
                   weights: torch.Tensor, actor_outputs: tuple[torch.Tensor, ...] | None = None,
                   ac: ActorCritic | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """REINFORCE (``log pi(a) * sg(advantage)``) or backpropagated normalised returns,
        plus the entropy bonus, weighted; returns the loss and the mean entropy.

        Shapes:
            states [H+1, B, F], actions [H+1, B, A], returns [H, B], values [H+1, B], weights [H, B],
            actor_outputs: the actor's outputs at ``states`` (each [H+1, B, ...]); None: computed here;
            ac: whose actor (the task's by default)
        """
        ac = ac or self.task
        actor = ac.actor
        scale = ac.return_norm.scale()
        if actor_outputs is None:
            params = actor(states[:-1].detach())
        else:
            params = tuple(part[:-1] for part in actor_outputs)
        if self.backprop:
            baseline = values[:-1] if self.cfg.actor_backprop == "dreamerv3" else values[:-1].detach()
            objective = (returns - baseline) / scale
        else:
            advantage = ((returns - values[:-1]) / scale).detach()
            objective = actor.log_prob(params, actions[:-1].detach()) * advantage
        entropy = actor.entropy(params)
        loss = -(weights * (objective + self.cfg.entropy_coef * entropy)).mean()
        return loss, entropy.mean().detach()

    def critic_loss(self, states: torch.Tensor, log_probs: torch.Tensor | None, returns: torch.Tensor,
                    weights: torch.Tensor, ac: ActorCritic | None = None) -> torch.Tensor:
        """Twohot log-likelihood of the returns and of the slow critic's values, weighted.

        Shapes:
            states [H+1, B, F], log_probs [H, B, K] (None: computed here), returns [H, B],
            weights [H, B] -> scalar; ac: whose critic (the task's by default)
        """
        ac = ac or self.task
        states = states[:-1].detach()
        if log_probs is None:
            log_probs = F.log_softmax(ac.critic(states), dim=-1)
        with torch.no_grad():
            slow_values = self.twohot.mean(ac.slow_critic(states))
        log_likelihood = (self.twohot.log_prob(log_probs, returns.detach(), normalized=True)
                          + self.cfg.slow_critic_reg * self.twohot.log_prob(log_probs, slow_values, normalized=True))
        return -(weights * log_likelihood).mean()

    @torch.no_grad()
    def update_slow_critic(self, ac: ActorCritic | None = None) -> None:
        ac = ac or self.task
        for slow, fast in zip(ac.slow_critic.parameters(), ac.critic.parameters(), strict=True):
            slow.lerp_(fast, self.cfg.slow_critic_fraction)
