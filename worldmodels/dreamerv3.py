"""DreamerV3 as a Dream world model (Hafner et al., 2023), registered as ``dreamerv3``.

The model learns from replayed sequences: an encoder (symlog MLP for vectors, CNN for
uint8 images), the RSSM (``worldmodels.rssm``), a decoder, a twohot reward head over
255 symexp bins and a continue head; the KL is split into a dynamics term (0.5) and a
representation term (0.1), each clipped below at 1 free nat. The ``dreamer`` policy
learns inside ``rollout`` from the posterior states of the latest training batch.

How a replayed transition row ``(obs, action, reward, next_obs, terminated)`` maps onto
the RSSM: step t consumes ``action[t]`` and observes ``next_obs[t]``, whose state is
labelled with ``reward[t]`` and continue ``1 - terminated[t]`` (so terminal observations
and their rewards are learned). Where a row starts an episode (or a sampled sequence),
the step starts from the posterior of ``obs[t]`` filtered from the learned initial state,
which is also reconstructed.

With ``tbptt`` (truncated backpropagation through time, as in PyDreamer) each batch row
follows a stream of the buffer (``sample_sequence_streams``): the next batch's row b
continues where this batch's row b ended, from the posterior state it ended in, detached so
that gradients stop at the batch boundary. Episode starts reset the state as within a
sequence; a stream that reaches the newest step starts over at a random one.

With ``plan2explore.enabled`` (Plan2Explore, ``worldmodels.plan2explore``) an ensemble of
one-step predictors trains on each batch after the world model's step, from detached
posterior states and actions to the next step's latent or embedding; ``intrinsic_reward``
is their disagreement on an imagined (state, action), which the ``dreamer`` policy takes
through ``rollout``'s ``aug_rewards``.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from easydict import EasyDict

from registry import WORLD_MODEL_REGISTRY
from wm_core.config import ConfigError, check_choice
from wm_core.utils import adam, check_rank, frozen, seeded_init
from worldmodels import plan2explore
from worldmodels.base import ActionCodec, ActorFn, ContractError, DreamWorldModel, Metrics
from worldmodels.dreamer_nets import (
    ConvDecoder,
    ConvEncoder,
    TwoHot,
    VectorDecoder,
    VectorEncoder,
    categorical_kl,
    norm_mlp,
    symexp,
)
from worldmodels.replay_ratio import ReplayRatioTraining
from worldmodels.rssm import RSSM, Observed

# Named model sizes. XS..XL are DreamerV3's (XS as in sheeprl); XXS keeps a 2-core CPU practical.
SIZES: dict[str, dict[str, int]] = {
    "XXS": {"deter": 128, "units": 128, "layers": 1, "stoch": 16, "classes": 16, "cnn_depth": 16},
    "XS": {"deter": 256, "units": 256, "layers": 1, "stoch": 32, "classes": 32, "cnn_depth": 24},
    "S": {"deter": 512, "units": 512, "layers": 2, "stoch": 32, "classes": 32, "cnn_depth": 32},
    "M": {"deter": 1024, "units": 640, "layers": 3, "stoch": 32, "classes": 32, "cnn_depth": 48},
    "L": {"deter": 2048, "units": 768, "layers": 4, "stoch": 32, "classes": 32, "cnn_depth": 64},
    "XL": {"deter": 4096, "units": 1024, "layers": 5, "stoch": 32, "classes": 32, "cnn_depth": 96},
}
SIZE_KEYS = ("deter", "units", "layers", "stoch", "classes", "cnn_depth")


def resolve_sizes(cfg: Mapping) -> EasyDict:
    """The ``size`` preset with any explicitly set size key on top.

    Raises:
        ConfigError: an unknown size name.
    """
    check_choice(cfg, "size", SIZES, prefix="world_model")
    sizes = dict(SIZES[cfg["size"]])
    sizes.update({key: int(cfg[key]) for key in SIZE_KEYS if cfg.get(key) is not None})
    for key, value in sizes.items():
        if value < 1:
            raise ConfigError(f"world_model.{key} must be >= 1, got {value}")
    return EasyDict(sizes)


def is_image_space(space: Any) -> bool:
    return len(space.shape) == 3 and space.dtype == np.uint8


@WORLD_MODEL_REGISTRY.register("dreamerv3")
class DreamerV3WorldModel(ReplayRatioTraining, DreamWorldModel):
    """DreamerV3's world model; see the module docstring.

    The model trains ``replay_ratio`` gradient steps per env step (owed steps carry
    over), after ``pretrain_steps`` steps at the first training once ``learning_starts``
    env steps are collected. The posterior features of the latest batch are kept
    (detached) as imagination start states for the policy.
    """

    config: ClassVar[dict] = {
        "precision": "auto",  # bf16 where this machine runs it natively: returns measured to hold (README)
        "size": "XXS",  # a key of SIZES; the size keys below override single values
        "deter": None,  # GRU state size
        "units": None,  # hidden width of every MLP
        "layers": None,  # hidden layers of encoder, decoder and heads
        "stoch": None,  # categorical latent variables
        "classes": None,  # classes per latent variable
        "cnn_depth": None,  # channels of the first conv layer (image observations)
        "unimix": 0.01,  # uniform mass mixed into the latent categoricals
        "reward_bins": 255,  # twohot bins of the reward head
        "free_nats": 1.0,  # KL terms below this are not optimised
        "dyn_scale": 0.5,  # KL(sg(posterior) || prior): trains the prior
        "rep_scale": 0.1,  # KL(posterior || sg(prior)): regularises the posterior
        "recon_scale": 1.0,
        "reward_scale": 1.0,
        "cont_scale": 1.0,
        "lr": 1e-4,
        "adam_eps": 1e-8,
        "grad_clip": 1000.0,  # global gradient-norm clip
        "batch_size": 16,  # sequences per batch
        "sequence_length": 64,  # steps per sequence
        "replay_ratio": 0.5,
        "learning_starts": 1024,
        "log_every": 50,
        "tbptt": False,  # carry the posterior state from batch to batch along buffer streams (module docstring)
        "plan2explore": dict(plan2explore.DEFAULTS),  # Plan2Explore's disagreement ensemble (module docstring)
    }

    def __init__(self, cfg: Mapping | None, env_spec: Any, logger: Any = None, *, seed: int = 0) -> None:
        super().__init__(cfg, env_spec, logger, seed=seed)
        c = self.cfg
        for key in ("batch_size", "sequence_length", "reward_bins", "log_every"):
            if c[key] < 1:
                raise ConfigError(f"world_model.{key} must be >= 1, got {c[key]}")
        for key in ("replay_ratio", "learning_starts", "pretrain_steps", "free_nats"):
            if c[key] < 0:
                raise ConfigError(f"world_model.{key} must be >= 0, got {c[key]}")
        self.sizes = sizes = resolve_sizes(c)
        self.actions = ActionCodec(self.action_space, self.device)
        self.image = is_image_space(self.observation_space)
        obs_shape = tuple(self.observation_space.shape)
        if not self.image and len(obs_shape) != 1:
            raise ConfigError(f"dreamerv3 needs 1-D vector or HxWxC uint8 image observations, got {obs_shape}")
        self.obs_shape = obs_shape
        with seeded_init(self.seed):
            if self.image:
                encoder = ConvEncoder(obs_shape, sizes.cnn_depth)
            else:
                encoder = VectorEncoder(obs_shape[0], sizes.units, sizes.layers)
            rssm = RSSM(self.actions.dim, encoder.out_dim, sizes.deter, sizes.stoch, sizes.classes, sizes.units,
                        c.unimix)
            feature_dim = rssm.feature_dim
            if self.image:
                decoder = ConvDecoder(feature_dim, obs_shape, sizes.cnn_depth)
            else:
                decoder = VectorDecoder(feature_dim, obs_shape[0], sizes.units, sizes.layers)
            reward_head = norm_mlp(feature_dim, sizes.units, sizes.layers, c.reward_bins, zero_output=True)
            cont_head = norm_mlp(feature_dim, sizes.units, sizes.layers, 1)
        self.encoder, self.rssm, self.decoder = encoder, rssm, decoder
        self.reward_head, self.cont_head = reward_head, cont_head
        self.twohot = TwoHot(c.reward_bins)
        self.nets.update({"encoder": encoder, "rssm": rssm, "decoder": decoder, "reward_head": reward_head,
                          "cont_head": cont_head, "twohot": self.twohot})
        self.nets.to(self.device)
        self.feature_dim = feature_dim
        self.optimizers["model"] = adam(self.nets.parameters(), lr=c.lr, eps=c.adam_eps)
        self.init_replay_ratio()
        # Plan2Explore: the ensemble has its own optimiser; the model's step never touches it
        plan2explore.check_config(c.plan2explore)
        self.disagreement: plan2explore.Disagreement | None = None
        if c.plan2explore.enabled:
            p2e = c.plan2explore
            target_dim = rssm.stoch_dim if p2e.target == "stoch" else encoder.out_dim
            with seeded_init(self.seed + 5):
                self.disagreement = plan2explore.Disagreement(p2e.ensemble, feature_dim, self.actions.dim,
                                                              p2e.units or sizes.units, p2e.layers, target_dim)
            self.nets["plan2explore"] = self.disagreement.to(self.device)
            self.optimizers["plan2explore"] = adam(self.disagreement.parameters(), lr=p2e.lr, eps=c.adam_eps)
        # tbptt: each batch row's buffer stream (slot, next step) and the state its last chunk ended in
        self.streams: dict[str, torch.Tensor] | None = None
        self.carried: tuple[torch.Tensor, torch.Tensor] | None = None

    def to(self, device: torch.device | str) -> DreamerV3WorldModel:
        super().to(device)
        self.actions.to(self.device)
        if self.carried is not None:
            self.carried = (self.carried[0].to(self.device), self.carried[1].to(self.device))
        return self

    # -- scheduling -----------------------------------------------------
    @property
    def sequence_length(self) -> int:
        """Steps per sampled sequence."""
        return int(self.cfg.sequence_length)

    @property
    def exploration(self) -> EasyDict | None:
        """The ``plan2explore`` config when it is enabled (the ``dreamer`` policy then trains an
        exploration actor-critic on ``intrinsic_reward``), else None."""
        return self.cfg.plan2explore if self.disagreement is not None else None

    def model_parameters(self) -> Any:
        """The parameters the world-model loss trains (all but the Plan2Explore ensemble)."""
        if self.disagreement is None:
            return self.nets.parameters()
        return [p for name, net in self.nets.items() if name != "plan2explore" for p in net.parameters()]

    # -- learning -------------------------------------------------------
    def sample_batch(self, env_buffer: Any) -> dict[str, torch.Tensor]:
        """A batch of ``batch_size`` sequences (with ``tbptt``: the next chunk of each row's
        stream). Shapes: each field [T, B, ...]

        Raises:
            ConfigError: ``tbptt`` with a buffer that has no ``sample_sequence_streams``.
        """
        if not self.cfg.tbptt:
            return env_buffer.sample_sequences(self.cfg.batch_size, self.cfg.sequence_length, device=self.device)
        sample_streams = getattr(env_buffer, "sample_sequence_streams", None)
        if sample_streams is None:
            raise ConfigError(f"world_model.tbptt needs a buffer with sample_sequence_streams (the 'replay' "
                              f"buffer), got {type(env_buffer).__name__}")
        batch, self.streams = sample_streams(self.streams, self.cfg.batch_size, self.cfg.sequence_length,
                                             device=self.device)
        return batch

    def train_step(self, batch: Mapping[str, torch.Tensor]) -> Metrics:
        """One gradient step on a sequence batch; keeps its posterior features as starts
        (and, with ``tbptt``, its last states for the next chunk of each row's stream).

        Shapes:
            batch: obs / next_obs [T, B, *obs_shape], action [T, B, (A)], reward / terminated /
            is_first [T, B]
        """
        start = self.carried if self.cfg.tbptt else None
        with self.autocast():
            loss, metrics, observed, embed = self.loss_and_embed(batch, start)
        # a non-finite loss or gradient skips the step (counted; too many in a row stop the run)
        stepped = self.guard.step("model_loss", loss, self.optimizers["model"], self.model_parameters(),
                                  self.cfg.grad_clip)
        grad_norm = self.guard.last_grad_norm
        if self.disagreement is not None:
            metrics.update(self.train_disagreement(batch, observed, embed))
        self.gradient_steps += 1
        self.starts = observed.features.detach().flatten(0, 1)
        self.start_continues = (1.0 - batch["terminated"].float()).flatten()
        metrics["grad_norm"] = float(grad_norm)
        metrics["nonfinite_skipped"] = float(self.guard.skipped)
        if self.cfg.tbptt:
            metrics["carried_rows"] = 1.0 - float(batch["is_first"][0].float().mean())
            self.carry(observed, stepped)
        return metrics

    def disagreement_data(self, batch: Mapping[str, torch.Tensor], observed: Observed, embed: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The ensemble's training pairs of a batch, detached: the posterior state a step starts
        from (the previous step's, or at an episode start the first observation's) and its
        action, and the step's posterior latent or embedding. A batch's first step that is no
        episode start has no state to start from here and is left out.

        Shapes:
            batch as ``train_step``; embed [T, B, E] -> features [N, F], actions [N, A], targets [N, D]
        """
        features = observed.features.detach()
        is_first = batch["is_first"].bool()
        previous = torch.cat([features[:1], features[:-1]])
        previous[is_first] = observed.first_features.detach().to(previous.dtype)
        valid = is_first.clone()
        valid[1:] = True
        target = observed.stoch if self.cfg.plan2explore.target == "stoch" else embed
        actions = self.actions.to_model(batch["action"])
        return previous[valid], actions[valid], target.detach()[valid]

    def train_disagreement(self, batch: Mapping[str, torch.Tensor], observed: Observed, embed: torch.Tensor
                           ) -> Metrics:
        """One step of the Plan2Explore ensemble on a batch's pairs (``disagreement_data``);
        returns its loss and the intrinsic reward of the batch's own (state, action) pairs
        before the step (low where the data are familiar)."""
        features, actions, targets = self.disagreement_data(batch, observed, embed)
        with self.autocast():
            predictions = self.disagreement(features, actions)
            loss = (predictions - targets.float().unsqueeze(0)).square().mean()
        self.guard.step("plan2explore_loss", loss, self.optimizers["plan2explore"],
                        self.disagreement.parameters(), self.cfg.plan2explore.grad_clip)
        disagreement = predictions.detach().var(0, correction=0).mean()
        self.disagreement.track(disagreement)
        return {"plan2explore_loss": loss.item(),
                "plan2explore_disagreement": self.cfg.plan2explore.intrinsic_scale * disagreement.item()}

    def intrinsic_reward(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Plan2Explore's reward of taking ``action`` in ``state``: ``intrinsic_scale`` times the
        ensemble's disagreement (``Disagreement.reward``) about the next step, divided by its
        running mean over the training batches when ``plan2explore.normalize``.

        Shapes:
            state [B, F], action [B, A] (model actions) -> [B]

        Raises:
            ContractError: ``plan2explore`` is not enabled.
        """
        if self.disagreement is None:
            raise ContractError("world_model.plan2explore.enabled is False: dreamerv3 has no intrinsic reward")
        p2e = self.cfg.plan2explore
        return p2e.intrinsic_scale * self.disagreement.reward(state, action, normalize=p2e.normalize)

    def carry(self, observed: Observed, stepped: bool) -> None:
        """Keep the last posterior state of every row (detached: gradients stop at the batch
        boundary) for the next chunk of its stream; after a skipped step every stream starts
        over, so that a non-finite state is never carried on."""
        if stepped:
            self.carried = (observed.deter[-1].detach().clone(), observed.stoch[-1].detach().clone())
        else:
            self.carried, self.streams = None, None

    def loss(self, batch: Mapping[str, torch.Tensor], start: tuple[torch.Tensor, torch.Tensor] | None = None
             ) -> tuple[torch.Tensor, Metrics, Observed]:
        """The world-model loss of a sequence batch, its metrics and the filtered states; rows
        whose ``is_first[0]`` is 0 start from ``start``.

        Shapes: as ``train_step``; start: deter [B, D], stoch [B, S*C]
        """
        loss, metrics, observed, _ = self.loss_and_embed(batch, start)
        return loss, metrics, observed

    def loss_and_embed(self, batch: Mapping[str, torch.Tensor],
                       start: tuple[torch.Tensor, torch.Tensor] | None = None
                       ) -> tuple[torch.Tensor, Metrics, Observed, torch.Tensor]:
        """``loss`` and the embeddings of the batch's ``next_obs`` [T, B, E]."""
        check_rank("batch['reward']", batch["reward"], 2)
        steps, size = batch["reward"].shape
        obs, next_obs = batch["obs"], batch["next_obs"]
        is_first = batch["is_first"].bool()
        first_t, first_b = is_first.nonzero(as_tuple=True)
        # Observations the loss sees: every next_obs, then each episode-first obs.
        seen = torch.cat([next_obs.flatten(0, 1), obs[first_t, first_b]])
        embed = self.encoder(seen)
        observed = self.rssm.observe(embed[: steps * size].unflatten(0, (steps, size)),
                                     self.actions.to_model(batch["action"]), is_first, embed[steps * size:],
                                     self.generator, start)
        features = observed.features
        recon = self.decoder.loss(torch.cat([features.flatten(0, 1), observed.first_features]), seen).mean()
        post = torch.cat([observed.post_log_probs.flatten(0, 1), observed.first_post_log_probs])
        prior = torch.cat([observed.prior_log_probs.flatten(0, 1), observed.first_prior_log_probs])
        dyn_kl = categorical_kl(post.detach(), prior)
        rep_kl = categorical_kl(post, prior.detach())
        dyn_loss, rep_loss = self.kl_losses(dyn_kl, rep_kl)
        reward_loss = -self.twohot.log_prob(self.reward_head(features), batch["reward"].float()).mean()
        cont_target = 1.0 - batch["terminated"].float()
        cont_loss = F.binary_cross_entropy_with_logits(self.cont_head(features).squeeze(-1), cont_target)
        c = self.cfg
        loss = (c.recon_scale * recon + c.reward_scale * reward_loss + c.cont_scale * cont_loss
                + c.dyn_scale * dyn_loss + c.rep_scale * rep_loss)
        metrics = {"loss": loss.item(), "recon_loss": recon.item(), "reward_loss": reward_loss.item(),
                   "cont_loss": cont_loss.item(), "kl": dyn_kl.mean().item(),
                   "posterior_entropy": -(post.exp() * post).sum((-2, -1)).mean().item()}
        return loss, metrics, observed, embed[: steps * size].unflatten(0, (steps, size))

    def kl_losses(self, dyn_kl: torch.Tensor, rep_kl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each KL term clipped below at ``free_nats`` per state, then averaged: a state
        whose KL is already small gives no gradient.

        Shapes:
            dyn_kl [N], rep_kl [N] -> two scalars
        """
        free = self.cfg.free_nats
        return dyn_kl.clamp_min(free).mean(), rep_kl.clamp_min(free).mean()

    # -- state ----------------------------------------------------------
    def state_dict(self) -> dict:
        """The base state plus the ``tbptt`` streams and carried states (None when off)."""
        state = super().state_dict()
        state["tbptt_streams"] = None if self.streams is None else dict(self.streams)
        state["tbptt_state"] = None if self.carried is None else {"deter": self.carried[0],
                                                                   "stoch": self.carried[1]}
        return state

    def load_state_dict(self, state: Mapping) -> None:
        super().load_state_dict(state)
        streams, carried = state.get("tbptt_streams"), state.get("tbptt_state")
        self.streams = None if streams is None else {key: value.clone() for key, value in streams.items()}
        self.carried = None if carried is None else (carried["deter"].to(self.device).clone(),
                                                     carried["stoch"].to(self.device).clone())

    # -- imagination ----------------------------------------------------
    def split(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Shapes: features [..., D + S*C] -> deter [..., D], stoch [..., S*C]"""
        return state.split([self.sizes.deter, self.rssm.stoch_dim], dim=-1)

    def latent_step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Shapes: state [B, F], action [B, A] (model actions) -> next state [B, F]"""
        deter, stoch = self.rssm.img_step(*self.split(state), action, self.generator)
        return torch.cat([deter, stoch.to(deter.dtype)], dim=-1)  # the state's dtype (see rollout)

    def predict_reward(self, state: torch.Tensor) -> torch.Tensor:
        """Shapes: state [..., F] -> reward [...]"""
        return self.twohot.mean(self.reward_head(state))

    def predict_continue(self, state: torch.Tensor) -> torch.Tensor:
        """Probability that the episode goes on. Shapes: state [..., F] -> [...]"""
        return torch.sigmoid(self.cont_head(state).squeeze(-1))

    def imagine_step(self, state: torch.Tensor, action: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One differentiable imagined step; ``done`` is the predicted termination probability.

        Shapes:
            state [B, F], action [B, A] (model actions) -> reward [B], next_state [B, F], done [B]
        """
        next_state = self.latent_step(state, action)
        return self.predict_reward(next_state), next_state, 1.0 - self.predict_continue(next_state)

    def rollout(self, start: torch.Tensor, actor_fn: ActorFn, envstep: int,
                horizon: int | None = None) -> tuple[torch.Tensor, ...]:
        """``DreamWorldModel.rollout`` with the reward and continue heads run once on the
        whole imagined trajectory rather than once per step. ``dones`` are termination
        probabilities.

        Shapes:
            start [B, F] -> states [N+1, B, F], actions [N+1, B, A], rewards [N, B],
            aug_rewards [N+1, B], dones [N, B]
        """
        check_rank("start", start, 2)
        horizon = self.rollout_length(envstep) if horizon is None else int(horizon)
        # Under autocast the imagined states are kept in its dtype (bf16), as DreamerV3 computes
        # in it: every consumer (the GRU's next step, the heads, the actor, the critics) would
        # otherwise cast the same float32 states again, and states are the rollout's bulk.
        device_type = start.device.type
        if torch.is_autocast_enabled(device_type):
            start = start.to(torch.get_autocast_dtype(device_type))
        states, actions, aug_rewards = [start], [], []
        state = start
        with frozen(self.nets):
            for _ in range(horizon):
                action, aug_reward = actor_fn(state)
                state = self.latent_step(state, action)
                actions.append(action)
                aug_rewards.append(aug_reward)
                states.append(state)
            action, aug_reward = actor_fn(state)
            actions.append(action)
            aug_rewards.append(aug_reward)
            states_seq = torch.stack(states)
            rewards = self.predict_reward(states_seq[1:])
            dones = 1.0 - self.predict_continue(states_seq[1:])
        return states_seq, torch.stack(actions), rewards, torch.stack(aug_rewards), dones

    @torch.no_grad()
    def step(self, obs: torch.Tensor, action: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One imagined step from latent features (``obs`` is a model state here).

        Shapes:
            obs [B, F], action [B, A] (model actions) -> reward [B], next_state [B, F], done [B] (bool)
        """
        reward, next_state, done = self.imagine_step(obs, action)
        return reward, next_state, done > 0.5

    # -- acting ---------------------------------------------------------
    def initial_state(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Shapes: -> deter [batch, D], stoch [batch, S*C]"""
        return self.rssm.initial(batch)

    def filter_step(self, deter: torch.Tensor, stoch: torch.Tensor, prev_action: torch.Tensor, obs: torch.Tensor,
                    is_first: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Fold one real observation into the recurrent state, restarting rows where ``is_first``
        from the initial state with a zero action (as in training). ``generator=None`` takes
        the posterior's mode.

        Shapes:
            deter [B, D], stoch [B, S*C], prev_action [B, A] (model actions), obs [B, *obs_shape],
            is_first [B] (bool) -> deter [B, D], stoch [B, S*C]
        """
        if bool(is_first.any()):
            init_deter, init_stoch = self.initial_state(deter.shape[0])
            mask = is_first.unsqueeze(-1)
            deter = torch.where(mask, init_deter, deter)
            stoch = torch.where(mask, init_stoch, stoch)
            prev_action = torch.where(mask, torch.zeros_like(prev_action), prev_action)
        return self.rssm.obs_step(deter, stoch, prev_action, self.encoder(obs), generator)

    @torch.no_grad()
    def open_loop(self, obs: torch.Tensor, actions: torch.Tensor, context: int = 5) -> torch.Tensor:
        """What the model sees and dreams along a real episode: the decoded state of each step,
        filtered from the first ``context`` observations, then imagined from the actions alone
        (posterior and prior modes, so the result is deterministic).

        Args:
            obs: the episode's observations, ``obs[0]`` its first.
            actions: env actions; ``actions[t]`` leads from ``obs[t]`` to ``obs[t+1]``.
            context: observations the model filters before it only imagines (>= 1).

        Shapes:
            obs [T, *obs_shape], actions [T-1, (A)] -> predictions [T, *obs_shape]
            (uint8 frames for image observations)
        """
        steps = obs.shape[0]
        if actions.shape[0] != steps - 1:
            raise ValueError(f"open_loop: {steps} observations need {steps - 1} actions, got {actions.shape[0]}")
        obs = obs.to(self.device)
        model_actions = self.actions.to_model(actions.to(self.device))
        deter, stoch = self.initial_state(1)
        action = deter.new_zeros(1, self.actions.dim)
        first = torch.ones(1, dtype=torch.bool, device=self.device)
        features = []
        for t in range(steps):
            if t < max(int(context), 1):
                deter, stoch = self.filter_step(deter, stoch, action, obs[t:t + 1], first, None)
                first = torch.zeros_like(first)
            else:
                deter, stoch = self.rssm.img_step(deter, stoch, action, None)
            features.append(torch.cat([deter, stoch], dim=-1))
            if t < steps - 1:
                action = model_actions[t:t + 1]
        decoded = self.decoder(torch.cat(features))
        if self.image:
            return ((decoded + 0.5) * 255.0).clamp(0, 255).round().to(torch.uint8)
        return symexp(decoded)
