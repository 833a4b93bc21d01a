"""Whole-pipeline throughput of a config: env steps/s, policy updates/s, where the time goes.

    python benchmarks/throughput.py pendulum_sac [--env-steps 3000] [--set key=value ...]

Runs the real serial pipeline (collection, world-model training, imagination,
policy updates, evaluation) and reports rates after the collector's random
warm-up, a breakdown of wall-clock by component, and peak resident memory.
For an ``mbpo`` world model it also reports ensemble training samples/s and
imagined transitions/s; for ``dreamerv3``, world-model gradient steps/s,
imagined steps/s and the breakdown of a training step
(``dreamer_throughput.py``).
"""
from __future__ import annotations

import argparse
import functools
import resource
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def timed(totals: dict, name: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[name] += time.perf_counter() - start
    return wrapper


def pipeline_throughput(cfg, out_dir: str) -> dict[str, float]:
    """Run ``cfg`` through the serial pipeline with timers on each component."""
    from workers.pipeline import SerialPipeline

    pipeline = SerialPipeline(cfg, out_dir=out_dir, show_progress=False)
    totals: dict[str, float] = defaultdict(float)
    pipeline.collector.step = timed(totals, "collect", pipeline.collector.step)
    pipeline.learner.train = timed(totals, "policy updates", pipeline.learner.train)
    pipeline.evaluate = timed(totals, "evaluation", pipeline.evaluate)
    if pipeline.world_model is not None:
        model = pipeline.world_model
        model.train = timed(totals, "world-model training", model.train)
        if hasattr(model, "fill_img_buffer"):
            model.fill_img_buffer = timed(totals, "imagination", model.fill_img_buffer)
    warmup_end: dict[str, float] = {}
    original_train = pipeline.learner.train

    def train(envstep, new_steps):
        if not warmup_end and envstep >= pipeline.learner.start_step:
            warmup_end.update(time=time.perf_counter(), step=envstep, iters=pipeline.learner.train_iter)
        return original_train(envstep, new_steps)

    pipeline.learner.train = train
    start = time.perf_counter()
    result = pipeline.run()
    end = time.perf_counter()
    after = end - warmup_end.get("time", start)
    steps_after = result["env_steps"] - warmup_end.get("step", 0)
    figures = {
        "env_steps": result["env_steps"],
        "wall_time_s": end - start,
        "env_steps_per_s": result["env_steps"] / (end - start),
        "env_steps_per_s_after_warmup": steps_after / max(after, 1e-9),
        "policy_updates_per_s": (result["train_iter"] - warmup_end.get("iters", 0)) / max(after, 1e-9),
        "policy_updates": result["train_iter"],
        "final_eval_return": result["eval_return_mean"],
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }
    for name, seconds in totals.items():
        figures[f"time_{name}_s"] = seconds
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--env-steps", type=int, default=3000)
    parser.add_argument("--preset", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="sets", action="append", default=[])
    args = parser.parse_args(argv)

    import torch

    from wm_app.experiment import compose_config

    cfg = compose_config(args.config, args.preset, args.sets, args.seed, args.env_steps)
    print(f"{args.config}: {args.env_steps} env steps, torch {torch.__version__}, "
          f"{cfg.num_threads or torch.get_num_threads()} thread(s), device {cfg.device}")
    with tempfile.TemporaryDirectory() as out_dir:
        figures = pipeline_throughput(cfg, out_dir)
    wall = figures["wall_time_s"]
    print(f"  wall-clock                   {wall:8.1f} s")
    print(f"  env steps/s (whole run)      {figures['env_steps_per_s']:8.1f}")
    print(f"  env steps/s (after warm-up)  {figures['env_steps_per_s_after_warmup']:8.1f}")
    print(f"  policy updates/s             {figures['policy_updates_per_s']:8.1f}  "
          f"({figures['policy_updates']} updates)")
    print(f"  peak RSS                     {figures['peak_rss_mb']:8.0f} MiB")
    print(f"  final eval return            {figures['final_eval_return']:8.1f}")
    print("  where the time went:")
    accounted = 0.0
    for key, seconds in sorted(figures.items(), key=lambda kv: -kv[1] if kv[0].startswith("time_") else 0):
        if key.startswith("time_"):
            accounted += seconds
            print(f"    {key[5:-2]:<24} {seconds:8.1f} s  {100 * seconds / wall:5.1f}%")
    print(f"    {'other':<24} {wall - accounted:8.1f} s  {100 * (wall - accounted) / wall:5.1f}%")

    if cfg.world_model is not None and cfg.world_model.type == "mbpo":
        from mbpo_throughput import mbpo_throughput

        print("  mbpo world model:")
        for key, value in mbpo_throughput(cfg).items():
            print(f"    {key:<40} {value:12.1f}")
    if cfg.world_model is not None and cfg.world_model.type == "dreamerv3":
        from dreamer_throughput import dreamer_throughput

        print("  dreamerv3 world model and dreamer policy:")
        for key, value in dreamer_throughput(cfg).items():
            print(f"    {key:<40} {value:12.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
