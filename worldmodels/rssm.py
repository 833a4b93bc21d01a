"""The recurrent state-space model of DreamerV3: a LayerNorm GRU deterministic state and
``stoch`` categorical variables of ``classes`` classes each, with unimix and straight-through
samples, and a learned initial state.

A model state is the pair ``(deter [B, D], stoch [B, S*C])``; its feature vector (what
heads, actor and critic read) is their concatenation ``[B, D + S*C]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from wm_core.utils import check_rank
from worldmodels.dreamer_nets import sample_one_hot, unimix_probs, unimix_softmax


class LayerNormGRUCell(nn.Module):
    """DreamerV3's GRU: one fused linear for the three gates, LayerNorm, update-gate bias -1.

    Gates are ordered [reset, update, candidate] so that one sigmoid covers both gates,
    and the update gate's constant -1 is the initial value of its LayerNorm bias (the
    same family of functions as a learnable bias plus a constant, one op less per step).

    Shapes:
        x [B, I], h [B, D] -> h' [B, D]
    """

    def __init__(self, input_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        self.linear = nn.Linear(input_dim + hidden_dim, 3 * hidden_dim, bias=False)
        self.norm = nn.LayerNorm(3 * hidden_dim, eps=1e-3)
        with torch.no_grad():
            self.norm.bias[hidden_dim:2 * hidden_dim] = -1.0

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        parts = self.norm(self.linear(torch.cat([x, h], dim=-1)))
        gates = torch.sigmoid(parts[..., :2 * self.hidden_dim])
        reset, update = gates.chunk(2, dim=-1)
        candidate = torch.tanh(reset * parts[..., 2 * self.hidden_dim:])
        # the state stays in its own dtype (float32) when the gates ran in bf16 under autocast
        return torch.lerp(h, candidate.to(h.dtype), update.to(h.dtype))


def linear_plus(base: torch.Tensor, x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """``base + layer(x)`` for a bias-free ``layer``, as one fused ``addmm`` on 2-D inputs."""
    if x.dim() == 2 and base.dim() == 2 and x.shape[0] == base.shape[0]:
        return torch.addmm(base, x, layer.weight.t())
    return base + layer(x)


@dataclass
class Observed:
    """What ``RSSM.observe`` returns for a sequence of T steps of B rows, plus the N
    episode-first observations.

    Shapes:
        deter [T, B, D], stoch [T, B, S*C], post_log_probs / prior_log_probs [T, B, S, C],
        first_deter [N, D], first_stoch [N, S*C], first_post_log_probs [N, S, C],
        first_prior_log_probs [N, S, C]
    """

    deter: torch.Tensor
    stoch: torch.Tensor
    post_log_probs: torch.Tensor
    prior_log_probs: torch.Tensor
    first_deter: torch.Tensor
    first_stoch: torch.Tensor
    first_post_log_probs: torch.Tensor
    first_prior_log_probs: torch.Tensor

    @property
    def features(self) -> torch.Tensor:
        return torch.cat([self.deter, self.stoch], dim=-1)

    @property
    def first_features(self) -> torch.Tensor:
        return torch.cat([self.first_deter, self.first_stoch], dim=-1)


class RSSM(nn.Module):
    """Deterministic GRU path plus categorical stochastic state; prior and posterior heads.

    Args:
        action_dim: size of the model's action input (one-hot or in [-1, 1]).
        embed_dim: size of the observation embedding.
        deter: GRU state size D.
        stoch, classes: S categorical variables of C classes.
        units: hidden width of the input, prior and posterior layers.
        unimix: probability mass mixed uniformly into every categorical (0.01).
    """

    def __init__(self, action_dim: int, embed_dim: int, deter: int, stoch: int, classes: int, units: int,
                 unimix: float = 0.01) -> None:
        super().__init__()
        self.deter_dim, self.stoch, self.classes, self.unimix = deter, stoch, classes, unimix
        self.stoch_dim = stoch * classes
        self.feature_dim = deter + self.stoch_dim
        self.action_dim = action_dim
        # The input layer on cat(stoch, action), split so that the action half can be computed
        # for a whole sequence at once, outside the recurrent loop.
        self.img_in_stoch = nn.Linear(self.stoch_dim, units, bias=False)
        self.img_in_action = nn.Linear(action_dim, units, bias=False)
        self.img_in_norm = nn.LayerNorm(units, eps=1e-3)
        self.gru = LayerNormGRUCell(units, deter)
        self.prior_net = nn.Sequential(nn.Linear(deter, units, bias=False), nn.LayerNorm(units, eps=1e-3),
                                       nn.SiLU(), nn.Linear(units, self.stoch_dim))
        # The posterior's first layer on cat(deter, embed), split so that the embedding half is
        # computed for a whole sequence at once, outside the recurrent loop.
        self.post_deter = nn.Linear(deter, units, bias=False)
        self.post_embed = nn.Linear(embed_dim, units, bias=False)
        self.post_net = nn.Sequential(nn.LayerNorm(units, eps=1e-3), nn.SiLU(), nn.Linear(units, self.stoch_dim))
        self.initial_deter = nn.Parameter(torch.zeros(deter))

    # -- single steps ---------------------------------------------------
    def _grid(self, logits: torch.Tensor) -> torch.Tensor:
        """Shapes: logits [..., S*C] -> float32 [..., S, C]"""
        return logits.float().unflatten(-1, (self.stoch, self.classes))

    def _dist(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return unimix_probs(self._grid(logits), self.unimix)

    def _probs(self, logits: torch.Tensor) -> torch.Tensor:
        """``_dist``'s probabilities alone: a step that only draws needs no log."""
        return unimix_softmax(self._grid(logits), self.unimix)

    def sample(self, log_probs: torch.Tensor | None, generator: torch.Generator | None, *,
               probs: torch.Tensor | None = None, uniform: torch.Tensor | None = None) -> torch.Tensor:
        """A straight-through one-hot draw (the mode without ``generator`` or ``uniform``), flattened.

        Shapes:
            log_probs [..., S, C] (None: ``probs`` alone), probs like it, uniform [..., S, 1] -> stoch [..., S*C]
        """
        return sample_one_hot(log_probs, generator, probs=probs, uniform=uniform).flatten(-2)

    def prior(self, deter: torch.Tensor) -> torch.Tensor:
        """Shapes: deter [..., D] -> log_probs [..., S, C]"""
        return self._dist(self.prior_net(deter))[1]

    def posterior(self, deter: torch.Tensor, embed_proj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Shapes: deter [..., D], embed_proj [..., units] (``post_embed(embed)``) -> probs, log_probs [..., S, C]"""
        return self._dist(self._post_logits(deter, embed_proj))

    def _post_logits(self, deter: torch.Tensor, embed_proj: torch.Tensor) -> torch.Tensor:
        """Shapes: deter [..., D], embed_proj [..., units] -> logits [..., S*C]"""
        return self.post_net(linear_plus(embed_proj, deter, self.post_deter))

    def deter_step(self, deter: torch.Tensor, stoch: torch.Tensor, action: torch.Tensor | None = None, *,
                   action_proj: torch.Tensor | None = None) -> torch.Tensor:
        """The GRU step; ``action_proj`` (``img_in_action(action)``) may replace ``action``.

        Shapes:
            deter [B, D], stoch [B, S*C], action [B, A] or action_proj [B, units] -> deter' [B, D]
        """
        if action_proj is None:
            action_proj = self.img_in_action(action)
        x = F.silu(self.img_in_norm(linear_plus(action_proj, stoch, self.img_in_stoch)))
        return self.gru(x, deter)

    def initial(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The learned initial state: tanh of a parameter and the mode of its prior.

        Shapes:
            -> deter [batch, D], stoch [batch, S*C]
        """
        deter = torch.tanh(self.initial_deter).unsqueeze(0)
        stoch = self.sample(self.prior(deter), None)
        return deter.expand(batch, -1), stoch.expand(batch, -1)

    def first_deter(self) -> torch.Tensor:
        """The GRU state of every episode's first observation: one step from the initial state
        with a zero action. Shapes: -> [1, D]
        """
        deter, stoch = self.initial(1)
        return self.deter_step(deter, stoch, deter.new_zeros(1, self.action_dim))

    def img_step(self, deter: torch.Tensor, stoch: torch.Tensor, action: torch.Tensor,
                 generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One imagined step: the GRU, then a draw from the prior.

        Shapes:
            deter [B, D], stoch [B, S*C], action [B, A] -> deter' [B, D], stoch' [B, S*C]
        """
        deter = self.deter_step(deter, stoch, action)
        return deter, self.sample(None, generator, probs=self._probs(self.prior_net(deter)))

    def obs_step(self, deter: torch.Tensor, stoch: torch.Tensor, action: torch.Tensor, embed: torch.Tensor,
                 generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One filtering step: the GRU, then a draw from the posterior given ``embed``.

        Shapes:
            deter [B, D], stoch [B, S*C], action [B, A], embed [B, E] -> deter' [B, D], stoch' [B, S*C]
        """
        deter = self.deter_step(deter, stoch, action)
        return deter, self.sample(None, generator, probs=self._probs(self._post_logits(deter, self.post_embed(embed))))

    # -- sequences ------------------------------------------------------
    def _check_observe_inputs(self, embed: torch.Tensor, first_mask: torch.Tensor, first_embed: torch.Tensor,
                              start: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Raise ValueError for inputs ``observe`` cannot filter; returns the (step, row) indices
        of the True entries of ``first_mask``."""
        check_rank("embed", embed, 3)
        batch = embed.shape[1]
        if start is None and not bool(first_mask[0].all()):
            raise ValueError("observe: is_first[0] must be True for every row (sequences start from the "
                             "initial state) unless a start state is given")
        if start is not None and (start[0].shape != (batch, self.deter_dim)
                                  or start[1].shape != (batch, self.stoch_dim)):
            raise ValueError(f"observe: start states must be [{batch}, {self.deter_dim}] and "
                             f"[{batch}, {self.stoch_dim}], got {tuple(start[0].shape)} and {tuple(start[1].shape)}")
        first_t, first_b = first_mask.nonzero(as_tuple=True)
        if first_embed.shape[0] != first_t.shape[0]:
            raise ValueError(f"observe: first_embed has {first_embed.shape[0]} rows for "
                             f"{first_t.shape[0]} True entries of is_first")
        return first_t, first_b

    def observe(self, embed: torch.Tensor, action: torch.Tensor, is_first: torch.Tensor,
                first_embed: torch.Tensor, generator: torch.Generator | None,
                start: tuple[torch.Tensor, torch.Tensor] | None = None) -> Observed:
        """Filter a batch of transition sequences.

        Step t consumes ``action[t]`` and observes ``embed[t]`` (the embedding of the
        observation the action led to). Where ``is_first[t]`` the step starts from the
        posterior state of the episode's first observation (``first_embed``, row-major
        over the True entries of ``is_first``) instead of from step t-1. Rows whose
        ``is_first[0]`` is False start from ``start`` (the state a previous chunk of the same
        stream ended in: truncated backpropagation through time).

        Shapes:
            embed [T, B, E], action [T, B, A], is_first [T, B] (``is_first[0]`` all True unless
            ``start`` is given), first_embed [N, E] with N = is_first.sum(),
            start: deter [B, D], stoch [B, S*C] -> ``Observed``
        """
        steps, batch = embed.shape[:2]
        first_mask = is_first.bool()
        first_t, first_b = self._check_observe_inputs(embed, first_mask, first_embed, start)
        first_deter = self.first_deter()
        first_probs, first_post = self.posterior(first_deter, self.post_embed(first_embed))
        first_stoch = self.sample(first_post, generator, probs=first_probs)
        first_stoch_grid = first_stoch.new_zeros(steps, batch, self.stoch_dim).index_put(
            (first_t, first_b), first_stoch)
        any_first = first_mask.any(1).tolist()
        first_deter_rows = first_deter.expand(batch, -1)

        # Everything that does not depend on the recurrence is computed for all steps at once.
        embed_proj = self.post_embed(embed)
        action_proj = self.img_in_action(action)
        uniform = None
        if generator is not None:
            uniform = torch.rand((steps, batch, self.stoch, 1), generator=generator, device=embed.device,
                                 dtype=embed.dtype)
        deters, stochs, posts = [], [], []
        deter, stoch = first_deter_rows, first_stoch_grid[0]
        if start is not None:
            mask = first_mask[0].unsqueeze(-1)
            deter = torch.where(mask, first_deter_rows, start[0])
            stoch = torch.where(mask, first_stoch_grid[0], start[1])
        for t in range(steps):
            if t > 0 and any_first[t]:
                mask = first_mask[t].unsqueeze(-1)
                deter = torch.where(mask, first_deter_rows, deter)
                stoch = torch.where(mask, first_stoch_grid[t], stoch)
            deter = self.deter_step(deter, stoch, action_proj=action_proj[t])
            probs, post = self.posterior(deter, embed_proj[t])
            stoch = self.sample(post, None, probs=probs, uniform=None if uniform is None else uniform[t])
            deters.append(deter)
            stochs.append(stoch)
            posts.append(post)
        deter_seq = torch.stack(deters)
        return Observed(deter=deter_seq, stoch=torch.stack(stochs), post_log_probs=torch.stack(posts),
                        prior_log_probs=self.prior(deter_seq),
                        first_deter=first_deter.expand(first_t.shape[0], -1), first_stoch=first_stoch,
                        first_post_log_probs=first_post,
                        first_prior_log_probs=self.prior(first_deter).expand_as(first_post))
