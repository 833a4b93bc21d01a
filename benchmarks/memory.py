"""Resident memory over a long run: does it stay flat once the replay buffer is full?

    python benchmarks/memory.py pendulum_sac --env-steps 100000 --set buffer.capacity=20000

Samples the process's resident set size (VmRSS) every ``--every`` env steps
during a real pipeline run and prints it at each 10% of the run, with the
spread between 20% and 100% (the part after the buffer has filled, when its
capacity is at most 20% of the run).
"""
from __future__ import annotations

import argparse
import sys
import tempfile


def rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("VmRSS not found in /proc/self/status")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--env-steps", type=int, default=100_000)
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--every", type=int, default=1000, help="env steps between two samples")
    args = parser.parse_args(argv)

    from wm_app.experiment import compose_config
    from workers.pipeline import SerialPipeline

    cfg = compose_config(args.config, None, args.sets, None, args.env_steps)
    samples: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory() as out_dir:
        pipeline = SerialPipeline(cfg, out_dir=out_dir, show_progress=False)
        iteration = pipeline.iteration

        def sampled_iteration() -> None:
            iteration()
            step = pipeline.collector.envstep
            if not samples or step - samples[-1][0] >= args.every:
                samples.append((step, rss_mib()))

        pipeline.iteration = sampled_iteration
        result = pipeline.run()

    total = args.env_steps
    print(f"{args.config}: {result['env_steps']} env steps, buffer capacity {cfg.buffer.capacity}, "
          f"final eval return {result['eval_return_mean']:.1f}, {result['wall_time']:.0f} s")
    print(f"{'% of run':>9} {'env_step':>9} {'RSS MiB':>9}")
    for tenth in range(1, 11):
        step, rss = min(samples, key=lambda s: abs(s[0] - tenth * total / 10))
        print(f"{tenth * 10:>8}% {step:>9} {rss:>9.1f}")
    late = [rss for step, rss in samples if step >= 0.2 * total]
    spread = (max(late) - min(late)) / min(late)
    print(f"RSS from 20% to 100% of the run: min {min(late):.1f} MiB, max {max(late):.1f} MiB, "
          f"spread {100 * spread:.1f}% of the minimum")
    return 0


if __name__ == "__main__":
    sys.exit(main())
