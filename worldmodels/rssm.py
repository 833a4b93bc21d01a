"""The recurrent state-space model of DreamerV3: a LayerNorm GRU deterministic state and
``stoch`` categorical variables of ``classes`` classes each, with unimix and straight-through
samples, and a learned initial state.

A model state is the pair ``(deter [B, D], stoch [B, S*C])``; its feature vector (what
heads, actor and critic read) is their concatenation ``[B, D + S*C]``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from worldmodels.dreamer_nets import sample_one_hot, unimix_log_probs
from worldmodels.utils import check_rank


class LayerNormGRUCell(nn.Module):
    """DreamerV3's GRU: one fused linear for the three gates, LayerNorm, update bias -1.

    Shapes:
        x [B, I], h [B, D] -> h' [B, D]
    """

    def __init__(self, input_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.linear = nn.Linear(input_dim + hidden_dim, 3 * hidden_dim, bias=False)
        self.norm = nn.LayerNorm(3 * hidden_dim, eps=1e-3)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        parts = self.norm(self.linear(torch.cat([x, h], dim=-1)))
        reset, candidate, update = parts.chunk(3, dim=-1)
        candidate = torch.tanh(torch.sigmoid(reset) * candidate)
        update = torch.sigmoid(update - 1.0)
        return torch.lerp(h, candidate, update)


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
        self.img_in = nn.Sequential(nn.Linear(self.stoch_dim + action_dim, units, bias=False),
                                    nn.LayerNorm(units, eps=1e-3), nn.SiLU())
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
    def _log_probs(self, logits: torch.Tensor) -> torch.Tensor:
        return unimix_log_probs(logits.unflatten(-1, (self.stoch, self.classes)), self.unimix)

    def sample(self, log_probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """A straight-through one-hot draw (the mode when ``generator`` is None), flattened.

        Shapes:
            log_probs [..., S, C] -> stoch [..., S*C]
        """
        return sample_one_hot(log_probs, generator).flatten(-2)

    def prior(self, deter: torch.Tensor) -> torch.Tensor:
        """Shapes: deter [..., D] -> log_probs [..., S, C]"""
        return self._log_probs(self.prior_net(deter))

    def posterior(self, deter: torch.Tensor, embed_proj: torch.Tensor) -> torch.Tensor:
        """Shapes: deter [..., D], embed_proj [..., units] (``post_embed(embed)``) -> log_probs [..., S, C]"""
        return self._log_probs(self.post_net(self.post_deter(deter) + embed_proj))

    def deter_step(self, deter: torch.Tensor, stoch: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """Shapes: deter [B, D], stoch [B, S*C], action [B, A] -> deter' [B, D]"""
        return self.gru(self.img_in(torch.cat([stoch, action], dim=-1)), deter)

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
        return deter, self.sample(self.prior(deter), generator)

    def obs_step(self, deter: torch.Tensor, stoch: torch.Tensor, action: torch.Tensor, embed: torch.Tensor,
                 generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One filtering step: the GRU, then a draw from the posterior given ``embed``.

        Shapes:
            deter [B, D], stoch [B, S*C], action [B, A], embed [B, E] -> deter' [B, D], stoch' [B, S*C]
        """
        deter = self.deter_step(deter, stoch, action)
        return deter, self.sample(self.posterior(deter, self.post_embed(embed)), generator)

    # -- sequences ------------------------------------------------------
    def observe(self, embed: torch.Tensor, action: torch.Tensor, is_first: torch.Tensor,
                first_embed: torch.Tensor, generator: torch.Generator | None) -> Observed:
        """Filter a batch of transition sequences.

        Step t consumes ``action[t]`` and observes ``embed[t]`` (the embedding of the
        observation the action led to). Where ``is_first[t]`` the step starts from the
        posterior state of the episode's first observation (``first_embed``, row-major
        over the True entries of ``is_first``) instead of from step t-1.

        Shapes:
            embed [T, B, E], action [T, B, A], is_first [T, B] (``is_first[0]`` all True),
            first_embed [N, E] with N = is_first.sum() -> ``Observed``
        """
        check_rank("embed", embed, 3)
        steps, batch = embed.shape[:2]
        first_mask = is_first.bool()
        if not bool(first_mask[0].all()):
            raise ValueError("observe: is_first[0] must be True for every row (sequences start from the "
                             "initial state)")
        first_t, first_b = first_mask.nonzero(as_tuple=True)
        if first_embed.shape[0] != first_t.shape[0]:
            raise ValueError(f"observe: first_embed has {first_embed.shape[0]} rows for "
                             f"{first_t.shape[0]} True entries of is_first")
        first_deter = self.first_deter()
        first_post = self.posterior(first_deter, self.post_embed(first_embed))
        first_stoch = self.sample(first_post, generator)
        first_stoch_grid = first_stoch.new_zeros(steps, batch, self.stoch_dim).index_put(
            (first_t, first_b), first_stoch)
        any_first = first_mask.any(1).tolist()
        first_deter_rows = first_deter.expand(batch, -1)

        embed_proj = self.post_embed(embed)
        deters, stochs, posts = [], [], []
        deter, stoch = first_deter_rows, first_stoch_grid[0]
        for t in range(steps):
            if t > 0 and any_first[t]:
                mask = first_mask[t].unsqueeze(-1)
                deter = torch.where(mask, first_deter_rows, deter)
                stoch = torch.where(mask, first_stoch_grid[t], stoch)
            deter = self.deter_step(deter, stoch, action[t])
            post = self.posterior(deter, embed_proj[t])
            stoch = self.sample(post, generator)
            deters.append(deter)
            stochs.append(stoch)
            posts.append(post)
        deter_seq = torch.stack(deters)
        return Observed(deter=deter_seq, stoch=torch.stack(stochs), post_log_probs=torch.stack(posts),
                        prior_log_probs=self.prior(deter_seq),
                        first_deter=first_deter.expand(first_t.shape[0], -1), first_stoch=first_stoch,
                        first_post_log_probs=first_post,
                        first_prior_log_probs=self.prior(first_deter).expand_as(first_post))

    def imagine(self, deter: torch.Tensor, stoch: torch.Tensor, actions: torch.Tensor,
                generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Open-loop imagination under a given action sequence.

        Shapes:
            deter [B, D], stoch [B, S*C], actions [T, B, A] -> deter [T, B, D], stoch [T, B, S*C]
        """
        check_rank("actions", actions, 3)
        deters, stochs = [], []
        for action in actions:
            deter, stoch = self.img_step(deter, stoch, action, generator)
            deters.append(deter)
            stochs.append(stoch)
        return torch.stack(deters), torch.stack(stochs)
