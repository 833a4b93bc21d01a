"""DreamerV3 building blocks: symlog/symexp, twohot over symexp bins, categorical latents,
LayerNorm+SiLU MLPs, and the CNN encoder/decoder for uint8 HxWxC images.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from wm_core.precision import FloatLinear


def symlog(x: torch.Tensor) -> torch.Tensor:
    """sign(x) log(1 + |x|): compresses large magnitudes, near identity around zero."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    """The inverse of ``symlog``: sign(x) (exp(|x|) - 1)."""
    return torch.sign(x) * torch.expm1(x.abs())


# -- twohot ------------------------------------------------------------------
class TwoHot(nn.Module):
    """A distribution over ``num_bins`` symexp-spaced bins: bins are uniform in symlog space.

    A scalar target is encoded as weights on its two neighbouring bins (in symlog
    space); the prediction is ``symexp`` of the expected bin.

    Args:
        num_bins: number of bins (255 in DreamerV3).
        low, high: bin range in symlog space (-20, 20 covers +-4.8e8).

    Shapes:
        encode: target [...] -> weights [..., K]; log_prob: logits [..., K], target [...] -> [...];
        mean: logits [..., K] -> [...]
    """

    def __init__(self, num_bins: int = 255, low: float = -20.0, high: float = 20.0) -> None:
        super().__init__()
        if num_bins < 2:
            raise ValueError(f"twohot needs at least 2 bins, got {num_bins}")
        self.num_bins = int(num_bins)
        self.register_buffer("bins", torch.linspace(low, high, num_bins), persistent=False)

    def neighbours(self, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two bins around each target and their weights.

        Shapes:
            target [...] -> index [..., 2] (long), weight [..., 2]
        """
        bins = self.bins
        x = symlog(target).clamp(bins[0], bins[-1]).contiguous()
        above = torch.searchsorted(bins, x).clamp(1, self.num_bins - 1)
        below = above - 1
        weight_above = (x - bins[below]) / (bins[above] - bins[below])
        return torch.stack([below, above], -1), torch.stack([1.0 - weight_above, weight_above], -1)

    def encode(self, target: torch.Tensor) -> torch.Tensor:
        index, weight = self.neighbours(target)
        weights = torch.zeros(*target.shape, self.num_bins, device=target.device, dtype=weight.dtype)
        return weights.scatter_add_(-1, index, weight)

    def log_prob(self, logits: torch.Tensor, target: torch.Tensor, normalized: bool = False) -> torch.Tensor:
        """Twohot log-likelihood of ``target``; ``normalized`` when ``logits`` are already
        log-softmaxed (so that one log-softmax serves several targets)."""
        log_probs = logits.float() if normalized else F.log_softmax(logits.float(), dim=-1)
        index, weight = self.neighbours(target)
        return (log_probs.gather(-1, index) * weight).sum(-1)

    def mean(self, logits: torch.Tensor, normalized: bool = False) -> torch.Tensor:
        probs = logits.float().exp() if normalized else torch.softmax(logits.float(), dim=-1)
        return symexp((probs * self.bins).sum(-1))  # not a matmul: float32 under bf16 autocast too


# -- categorical latents -----------------------------------------------------
def unimix_log_probs(logits: torch.Tensor, unimix: float) -> torch.Tensor:
    """Log-probabilities of ``(1 - unimix) softmax(logits) + unimix / classes`` over the last dim."""
    return unimix_probs(logits, unimix)[1]


def unimix_probs(logits: torch.Tensor, unimix: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities ``(1 - unimix) softmax(logits) + unimix / classes`` and their logs.

    Shapes:
        logits [..., C] -> probs [..., C], log_probs [..., C]
    """
    if unimix <= 0.0:
        log_probs = F.log_softmax(logits, dim=-1)
        return log_probs.exp(), log_probs
    probs = unimix_softmax(logits, unimix)
    return probs, probs.log()


def unimix_softmax(logits: torch.Tensor, unimix: float) -> torch.Tensor:
    """The probabilities of ``unimix_probs`` alone, the same numbers (a draw needs no log).

    Shapes:
        logits [..., C] -> probs [..., C]
    """
    if unimix <= 0.0:
        return F.log_softmax(logits, dim=-1).exp()
    return torch.softmax(logits, dim=-1) * (1.0 - unimix) + unimix / logits.shape[-1]


def sample_one_hot(log_probs: torch.Tensor | None, generator: torch.Generator | None, *,
                   probs: torch.Tensor | None = None, uniform: torch.Tensor | None = None) -> torch.Tensor:
    """A one-hot sample per row with a straight-through gradient to the probabilities.

    Inverse-CDF sampling: one uniform draw per row compared with the cumulative
    probabilities (several times cheaper on CPU than Gumbel-max or ``multinomial``, which
    draw one number per class). With neither ``generator`` nor ``uniform`` the mode is
    returned instead.

    Args:
        log_probs: log-probabilities over the last dim (None: ``probs`` alone, which must be given).
        generator: draws the uniforms when ``uniform`` is not given.
        probs: ``log_probs.exp()`` where the caller has it already.
        uniform: pre-drawn uniforms in [0, 1), shape ``[..., 1]`` (e.g. a whole sequence's at once).

    Shapes:
        log_probs [..., C] -> one-hot [..., C]
    """
    if probs is None:
        if log_probs is None:
            raise ValueError("sample_one_hot needs log_probs or probs")
        probs = log_probs.exp()
    classes = probs.shape[-1]
    if uniform is None and generator is not None:
        uniform = torch.rand((*probs.shape[:-1], 1), generator=generator, device=probs.device, dtype=probs.dtype)
    if uniform is None:
        index = (probs if log_probs is None else log_probs).argmax(-1, keepdim=True)
    else:
        # the count of cumulative probabilities below u is the drawn class; rounding can leave the
        # last cumulative value under 1, hence the clamp
        index = (probs.detach().cumsum(-1) < uniform).sum(-1, keepdim=True).clamp_max(classes - 1)
    one_hot = torch.zeros_like(probs).scatter_(-1, index, 1.0)
    if probs.requires_grad:
        one_hot = one_hot + (probs - probs.detach())  # exactly one-hot values, gradients of probs
    return one_hot


def categorical_kl(lhs_log_probs: torch.Tensor, rhs_log_probs: torch.Tensor) -> torch.Tensor:
    """KL(lhs || rhs) of independent categoricals, summed over the variables.

    Shapes:
        [..., S, C], [..., S, C] -> [...]
    """
    return (lhs_log_probs.exp() * (lhs_log_probs - rhs_log_probs)).sum((-2, -1))


# -- MLPs --------------------------------------------------------------------
def norm_mlp(in_dim: int, units: int, layers: int, out_dim: int | None = None,
             zero_output: bool = False) -> nn.Sequential:
    """``layers`` x (Linear, LayerNorm, SiLU), then an optional output Linear.

    Args:
        zero_output: zero-initialise the output layer (DreamerV3's reward head and critic,
            so early predictions are 0 rather than large random returns).

    Shapes:
        [..., in_dim] -> [..., out_dim] (or [..., units] without an output layer)
    """
    modules: list[nn.Module] = []
    last = in_dim
    for _ in range(layers):
        modules += [nn.Linear(last, units, bias=False), nn.LayerNorm(units, eps=1e-3), nn.SiLU()]
        last = units
    if out_dim is not None:
        out = FloatLinear(last, out_dim)
        if zero_output:
            nn.init.zeros_(out.weight)
            nn.init.zeros_(out.bias)
        modules.append(out)
    return nn.Sequential(*modules)


class VectorEncoder(nn.Module):
    """symlog(obs) -> LayerNorm MLP. Shapes: obs [..., O] -> embedding [..., units]"""

    def __init__(self, obs_dim: int, units: int, layers: int) -> None:
        super().__init__()
        self.net = norm_mlp(obs_dim, units, max(layers, 1))
        self.out_dim = units

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(symlog(obs.float()))  # any float dtype in (MuJoCo observations are float64)


class VectorDecoder(nn.Module):
    """Features -> predicted symlog(obs); trained with a squared error summed over dims.

    Shapes:
        features [..., F] -> prediction [..., O]; loss: features [..., F], obs [..., O] -> [...]
    """

    def __init__(self, feature_dim: int, obs_dim: int, units: int, layers: int) -> None:
        super().__init__()
        self.net = norm_mlp(feature_dim, units, layers, obs_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)

    def loss(self, features: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        return (self(features) - symlog(obs.float())).square().sum(-1)


# -- images ------------------------------------------------------------------
class ChannelNorm(nn.Module):
    """LayerNorm over the channels of each pixel. Shapes: [N, C, H, W] -> [N, C, H, W]"""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _image_stages(shape: Sequence[int], min_resolution: int) -> int:
    height, width, _ = shape
    stages = round(math.log2(height / min_resolution)) if height >= min_resolution else -1
    if height != width or stages < 1 or min_resolution * 2 ** stages != height:
        raise ValueError(f"image observations must be square with a side of {min_resolution} x 2^k "
                         f"(e.g. 64x64xC), got {tuple(shape)}")
    return stages


def image_to_unit(obs: torch.Tensor) -> torch.Tensor:
    """uint8 (or float 0..255) pixels -> floats in [-0.5, 0.5]."""
    return obs.float() / 255.0 - 0.5


class ConvEncoder(nn.Module):
    """HxWxC pixels -> stride-2 convolutions (channels depth x 1, 2, 4, ...) down to 4x4 -> flat.

    Shapes:
        obs [..., H, W, C] (uint8 or 0..255 floats) -> embedding [..., out_dim]
    """

    def __init__(self, shape: Sequence[int], depth: int, min_resolution: int = 4) -> None:
        super().__init__()
        stages = _image_stages(shape, min_resolution)
        layers: list[nn.Module] = []
        channels = shape[2]
        for i in range(stages):
            out = depth * 2 ** i
            layers += [nn.Conv2d(channels, out, 4, 2, 1, bias=False), ChannelNorm(out), nn.SiLU()]
            channels = out
        self.net = nn.Sequential(*layers)
        self.shape = tuple(shape)
        self.out_dim = channels * min_resolution * min_resolution

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        lead = obs.shape[:-3]
        x = image_to_unit(obs).reshape(-1, *self.shape).permute(0, 3, 1, 2)
        return self.net(x).reshape(*lead, self.out_dim)


class ConvDecoder(nn.Module):
    """Features -> 4x4 maps -> stride-2 transposed convolutions -> HxWxC image in [-0.5, 0.5].

    Shapes:
        features [..., F] -> image [..., H, W, C]; loss: features [..., F], obs [..., H, W, C] -> [...]
    """

    def __init__(self, feature_dim: int, shape: Sequence[int], depth: int, min_resolution: int = 4) -> None:
        super().__init__()
        stages = _image_stages(shape, min_resolution)
        self.shape = tuple(shape)
        self.min_resolution = min_resolution
        self.top_channels = depth * 2 ** (stages - 1)
        self.project = nn.Linear(feature_dim, self.top_channels * min_resolution ** 2)
        layers: list[nn.Module] = []
        channels = self.top_channels
        for i in reversed(range(stages)):
            if i == 0:
                layers.append(nn.ConvTranspose2d(channels, shape[2], 4, 2, 1))
            else:
                out = depth * 2 ** (i - 1)
                layers += [nn.ConvTranspose2d(channels, out, 4, 2, 1, bias=False), ChannelNorm(out), nn.SiLU()]
                channels = out
        self.net = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        lead = features.shape[:-1]
        x = self.project(features).reshape(-1, self.top_channels, self.min_resolution, self.min_resolution)
        return self.net(x).permute(0, 2, 3, 1).reshape(*lead, *self.shape)

    def loss(self, features: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        return (self(features).float() - image_to_unit(obs)).square().sum((-3, -2, -1))
