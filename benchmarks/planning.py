"""Cost of one planning call: milliseconds per ``policy.act`` of a planner config, and the share
of that time spent in matrix multiplies (from the PyTorch profiler).

    python benchmarks/planning.py dmc_walker_walk_tdmpc          # TD-MPC2's planner size
    python benchmarks/planning.py pendulum_pets --calls 20 [--set policy.candidates=300]
    python benchmarks/planning.py dmc_walker_walk_tdmpc --set policy.compile=True --set policy.precision=bf16
    python benchmarks/planning.py dmc_walker_walk_tdmpc --updates 20 [--set world_model.precision=bf16]

With ``policy.compile`` the two warm-up calls compile the planning loop (not timed); the profiled
share then counts the fused element-wise loops as "CompiledFxGraph" and the matmuls the
compiled code calls as matmul ops.

The world model is built untrained (planning cost does not depend on the weights) and the
planner plans from real observations of the config's env. Torch runs on ``--threads``
threads (1 by default, as every run here).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence

import torch

MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear")


def build(config: str, sets: Sequence[str], preset: str | None = None) -> tuple:
    from wm_app.experiment import compose_config
    from wm_envs.make import make_env
    from workers.run_config import build_components

    cfg = compose_config(config, preset, list(sets), 0, None)
    env = make_env(cfg.env)
    model, policy = build_components(cfg, env)
    observations = []
    obs, _ = env.reset(seed=0)
    for _ in range(16):
        observations.append(torch.as_tensor(obs, dtype=torch.float32)[None])
        obs, *_ = env.step(env.action_space.sample())
    env.close()
    return cfg, policy, observations


def time_calls(policy, observations: list[torch.Tensor], calls: int) -> list[float]:
    """Seconds of each of ``calls`` planning calls (after two warm-up calls)."""
    for obs in observations[:2]:
        policy.act(obs)
    seconds = []
    for i in range(calls):
        start = time.perf_counter()
        policy.act(observations[i % len(observations)])
        seconds.append(time.perf_counter() - start)
    return seconds


def time_updates(cfg, policy, updates: int) -> list[float]:
    """Seconds of each of ``updates`` model updates of a latent model (``train_step``) on one batch
    sampled as training samples it, from a buffer of random-action transitions of the config's env
    (after two warm-up updates)."""
    from wm_envs.make import make_env
    from workers.buffer import random_buffer

    model = policy.model
    env = make_env(cfg.env)
    buffer = random_buffer(env, max(1000, 4 * int(model.sequence_length)), int(cfg.seed))
    env.close()
    batch = model.sample_batch(buffer)
    for _ in range(2):
        model.train_step(batch)
    seconds = []
    for _ in range(updates):
        start = time.perf_counter()
        model.train_step(batch)
        seconds.append(time.perf_counter() - start)
    return seconds


def matmul_share(policy, observations: list[torch.Tensor], calls: int) -> tuple[float, list[tuple[str, float]]]:
    """Share of the profiled self CPU time spent in matmul ops, and the five costliest ops."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(calls):
            policy.act(observations[i % len(observations)])
    totals: dict[str, float] = {}
    for event in prof.key_averages():
        totals[event.key] = totals.get(event.key, 0.0) + event.self_cpu_time_total
    overall = sum(totals.values()) or 1.0
    matmul = sum(value for key, value in totals.items() if key in MATMUL_OPS)
    top = sorted(totals.items(), key=lambda item: -item[1])[:5]
    return matmul / overall, [(key, value / overall) for key, value in top]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--preset", default=None)
    parser.add_argument("--calls", type=int, default=30, help="timed planning calls")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--updates", type=int, default=0,
                        help="also time this many model updates (a latent model's train_step)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg, policy, observations = build(args.config, args.sets, args.preset)
    seconds = time_calls(policy, observations, args.calls)
    share, top = matmul_share(policy, observations, max(3, args.calls // 3))
    p = cfg.policy
    print(f"{args.config}: {p.type}, {p.candidates} candidates, {p.iterations} iterations, horizon {p.horizon}, "
          f"{p.elites} elites, {p.get('prior_candidates', 0)} prior candidates; {args.threads} thread(s)")
    print(f"ms per planning call: median {1000 * statistics.median(seconds):.1f}, "
          f"min {1000 * min(seconds):.1f}, max {1000 * max(seconds):.1f} over {len(seconds)} calls")
    print(f"matmul share of the profiled time: {100 * share:.0f}%; costliest ops: "
          + ", ".join(f"{key} {100 * value:.0f}%" for key, value in top))
    if args.updates:
        if not hasattr(policy.model, "train_step") or not hasattr(policy.model, "sequence_length"):
            print(f"--updates: world model '{policy.model.cfg.type}' has no latent train_step to time")
            return 2
        updates = time_updates(cfg, policy, args.updates)
        print(f"ms per model update ({policy.model.precision} precision, batch {policy.model.cfg.batch_size} x "
              f"{policy.model.sequence_length} steps): median {1000 * statistics.median(updates):.1f}, "
              f"min {1000 * min(updates):.1f} over {len(updates)} updates")
    return 0


if __name__ == "__main__":
    sys.exit(main())
