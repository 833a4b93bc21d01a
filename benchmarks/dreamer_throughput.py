"""Throughput of the ``dreamerv3`` world model and the ``dreamer`` policy, with a breakdown.

``dreamer_throughput(cfg)`` takes a resolved experiment config (``compose_config``) whose
``world_model.type`` is ``dreamerv3`` and returns a dict of figures; run this file
directly to print them for a shipped config::

    python benchmarks/dreamer_throughput.py cartpole_dreamerv3 [--set world_model.size=S] [--threads 1]

Torch runs with the config's ``num_threads`` ("auto" by default: every core; with another
job on the machine pass ``--threads 1``, as oversubscribed threads slowed a step tenfold).
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from wm_envs.make import make_env
from workers.buffer import ReplayBuffer, random_buffer
from workers.run_config import build_components, resolve_threads


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Clock:
    """Sums of wall-clock per named section (device-synchronised)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.totals: dict[str, float] = {}
        self._start = 0.0

    def start(self) -> None:
        _sync(self.device)
        self._start = time.perf_counter()

    def lap(self, name: str) -> None:
        _sync(self.device)
        now = time.perf_counter()
        self.totals[name] = self.totals.get(name, 0.0) + now - self._start
        self._start = now


def _world_model_step(model: Any, buffer: ReplayBuffer, clock: _Clock) -> None:
    """``model.train_step`` split into timed sections."""
    cfg = model.cfg
    clock.start()
    batch = buffer.sample_sequences(cfg.batch_size, cfg.sequence_length, device=model.device)
    clock.lap("wm_sample")
    with model.autocast():
        loss, _, observed = model.loss(batch)
    clock.lap("wm_forward")
    optimizer = model.optimizers["model"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    clock.lap("wm_backward")
    nn.utils.clip_grad_norm_(model.nets.parameters(), cfg.grad_clip)
    optimizer.step()
    model.starts = observed.features.detach().flatten(0, 1)
    model.start_continues = (1.0 - batch["terminated"].float()).flatten()
    clock.lap("wm_optimizer")


def dreamer_throughput(cfg: Mapping, *, buffer_steps: int = 2000, steps: int = 30, warmup: int = 3,
                       acting_steps: int = 300) -> dict[str, float]:
    """Measure the ``dreamerv3`` model and ``dreamer`` policy of ``cfg`` on random data of its env.

    Args:
        cfg: a resolved experiment config with a ``dreamerv3`` world model and ``dreamer`` policy.
        buffer_steps: random transitions to sample sequences from.
        steps: world-model gradient steps and policy updates timed (after ``warmup`` untimed).
        acting_steps: env steps timed with ``policy.collect`` acting.

    Returns:
        ``world_model_steps_per_s`` (gradient steps), ``policy_updates_per_s``,
        ``imagined_steps_per_s`` (imagined states per second of whole actor-critic updates:
        start states x horizon), ``imagination_only_steps_per_s`` (the rollout alone),
        ``acting_env_steps_per_s`` (env steps with the policy acting, no training),
        ``env_steps_per_s`` (the training rate these imply: acting plus
        ``replay_ratio`` gradient steps and ``updates_per_step`` policy updates per env step),
        the breakdown of a training step in ms (``ms_wm_sample``, ``ms_wm_forward``,
        ``ms_wm_backward``, ``ms_wm_optimizer``, ``ms_policy_imagination``,
        ``ms_policy_rest``), parameter counts, ``threads``, ``peak_rss_mb`` and, on CUDA,
        ``peak_cuda_mb``.
    """
    wm_cfg = cfg["world_model"]
    if wm_cfg is None or wm_cfg["type"] != "dreamerv3":
        raise ValueError("dreamer_throughput needs a config whose world_model.type is 'dreamerv3'")
    if cfg.get("num_threads"):
        torch.set_num_threads(resolve_threads(cfg["num_threads"]))
    seed = int(cfg.get("seed", 0))
    env = make_env(cfg["env"])
    model, policy = build_components({**cfg, "seed": seed}, env)
    buffer = random_buffer(env, max(buffer_steps, 2 * model.cfg.sequence_length), seed)
    device = model.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    clock = _Clock(device)
    for i in range(warmup + steps):
        if i == warmup:
            clock.totals = {}
        _world_model_step(model, buffer, clock)
        clock.start()
        data = model.imagination_starts()
        with policy.autocast():
            starts, _ = policy.pick_starts(data)
            policy.imagine(model, starts, data.envstep)
        clock.lap("policy_imagination")
        policy.learn(data)
        clock.lap("policy_learn")
    per_step = {name: seconds / steps for name, seconds in clock.totals.items()}
    wm_seconds = sum(v for k, v in per_step.items() if k.startswith("wm_"))
    # ``learn`` imagines again itself: its time minus a rollout's is the rest of the update
    learn_seconds = per_step["policy_learn"]
    imagination_seconds = per_step["policy_imagination"]
    imagined = starts.shape[0] * model.rollout_length(model.envstep)

    acting_seconds = _acting_seconds(env, policy, acting_steps, seed)
    env.close()
    replay_ratio = float(model.cfg.replay_ratio)
    updates_per_step = float(cfg["learner"]["updates_per_step"])
    seconds_per_env_step = acting_seconds + replay_ratio * wm_seconds + updates_per_step * learn_seconds
    figures = {
        "world_model_steps_per_s": 1.0 / wm_seconds,
        "policy_updates_per_s": 1.0 / learn_seconds,
        "imagined_steps_per_s": imagined / learn_seconds,
        "imagination_only_steps_per_s": imagined / imagination_seconds,
        "acting_env_steps_per_s": 1.0 / acting_seconds,
        "env_steps_per_s": 1.0 / seconds_per_env_step,
        "ms_wm_sample": 1e3 * per_step["wm_sample"],
        "ms_wm_forward": 1e3 * per_step["wm_forward"],
        "ms_wm_backward": 1e3 * per_step["wm_backward"],
        "ms_wm_optimizer": 1e3 * per_step["wm_optimizer"],
        "ms_policy_imagination": 1e3 * imagination_seconds,
        "ms_policy_rest": 1e3 * (learn_seconds - imagination_seconds),
        "world_model_parameters": float(model.parameter_count()),
        "policy_parameters": float(sum(p.numel() for p in policy.actor.parameters())
                                   + sum(p.numel() for p in policy.critic.parameters())),
        "threads": float(torch.get_num_threads()),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }
    if device.type == "cuda":
        figures["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return figures


def _acting_seconds(env: Any, policy: Any, steps: int, seed: int) -> float:
    """Seconds per env step with ``policy.collect`` choosing the actions."""
    obs, _ = env.reset(seed=seed)
    policy.reset()
    start = time.perf_counter()
    for _ in range(steps):
        obs_tensor = torch.as_tensor(np.asarray(obs)[None], dtype=torch.float32, device=policy.device)
        action = policy.collect(obs_tensor)[0].cpu().numpy()
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            obs, _ = env.reset()
            policy.reset()
    return (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> int:
    from wm_app.experiment import compose_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--preset", default=None)
    parser.add_argument("--steps", type=int, default=30, help="timed gradient steps and policy updates")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: the config's)")
    args = parser.parse_args(argv)
    sets = list(args.sets) + ([f"num_threads={args.threads}"] if args.threads else [])
    cfg = compose_config(args.config, preset=args.preset, sets=sets)
    print(f"{args.config}: size {cfg.world_model.size}, device {cfg.device}, torch {torch.__version__}")
    for key, value in dreamer_throughput(cfg, steps=args.steps).items():
        print(f"{key:34s} {value:14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
