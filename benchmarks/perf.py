"""Performance suite: matmul peak, FLOP/s of the training steps against it, env steps/s per config.

    python benchmarks/perf.py [--threads N] [--configs a,b] [--env-steps N] [--skip-configs] [--out FILE.md]
                              [--steps N] [--warmup N] [--preset debug] [--matmul-sizes 256,1024]

Prints, from one process on this machine, a header (date, CPU, core count, torch,
load average at start and end: a load near the core count means the figures were
shared with other work) and three markdown tables:

1. ``torch.mm`` GFLOP/s in fp32 and bf16 at 256^3, 1024^3 and 2048^3, at one thread, at
   ``--threads`` and at every core: best (the peak) and median of timed runs after warm-up.
2. One training step each of a SAC update (``pendulum_sac``), an MBPO ensemble gradient
   step (``pendulum_mbpo``), a DreamerV3 world-model gradient step and a dreamer
   actor-critic update (``cartpole_dreamerv3``, size XS, imagination from every start),
   in fp32 and bf16 (the ``precision`` config keys): FLOPs of forward plus backward
   (``torch.utils.flop_counter.FlopCounterMode``: matmuls and convolutions only, so
   elementwise work is not counted), median wall time, GFLOP/s and percent of the
   matmul peak of the same precision at the thread count the steps ran with.
3. The first ``--env-steps`` env steps of each shipped config through the real serial
   pipeline (output to a temporary directory, no progress bar): wall seconds, env steps/s.

Every figure is measured when the script runs; the steps run with ``--threads`` torch
threads (default 1, as the configs do).
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))

MATMUL_SIZES = (256, 1024, 2048)
PRECISIONS = ("fp32", "bf16")
MATMUL_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
DREAMER_SETS = ("world_model.size=XS", "policy.imagine_starts=0")
SAC_BATCH = 256  # transitions per SAC update


# -- machine ----------------------------------------------------------------
def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else lscpu, else ``platform``."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def available_cores() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def header_lines(threads: int, start_load: str, end_load: str) -> list[str]:
    """Markdown lines describing the machine and how busy it was."""
    from wm_core.precision import cpu_has_native_bf16

    return [
        f"# worldmodels performance, {datetime.datetime.now().isoformat(timespec='seconds')}",
        "",
        f"- CPU: {cpu_model()} ({platform.machine()}), native bf16: {'yes' if cpu_has_native_bf16() else 'no'}",
        f"- cores: {available_cores()} available to this process, {os.cpu_count()} logical in all",
        f"- torch {torch.__version__}, python {platform.python_version()}; steps run with {threads} torch thread(s)",
        f"- load average (1/5/15 min) at start: {start_load}; at end: {end_load}",
    ]


# -- timing -----------------------------------------------------------------
def _sync(device: torch.device | None) -> None:
    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def step_seconds(step: Callable[[], Any], *, steps: int, warmup: int,
                 device: torch.device | None = None) -> list[float]:
    """Wall seconds of each of ``steps`` calls of ``step`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    _sync(device)
    seconds = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        _sync(device)
        seconds.append(time.perf_counter() - start)
    return seconds


def count_flops(step: Callable[[], Any]) -> int:
    """FLOPs of one call of ``step`` (forward and backward, as far as ``FlopCounterMode`` counts)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


# -- 1. matmul peak -----------------------------------------------------------
def matmul_gflops(size: int, dtype: torch.dtype, *, repeats: int, min_run_s: float) -> list[float]:
    """GFLOP/s of ``repeats`` timed runs of ``torch.mm`` at ``size``^3 with the current threads.

    Each run repeats the product enough times to last about ``min_run_s``, so that the
    timer's resolution does not matter at small sizes.
    """
    generator = torch.Generator().manual_seed(size)
    a = torch.randn(size, size, generator=generator).to(dtype)
    b = torch.randn(size, size, generator=generator).to(dtype)
    out = torch.empty(size, size, dtype=dtype)
    one = min(step_seconds(lambda: torch.mm(a, b, out=out), steps=2, warmup=2))
    calls = max(1, math.ceil(min_run_s / max(one, 1e-9)))

    def run() -> None:
        for _ in range(calls):
            torch.mm(a, b, out=out)

    flops = 2.0 * size**3 * calls
    return [flops / seconds / 1e9 for seconds in step_seconds(run, steps=repeats, warmup=0)]


def matmul_peaks(thread_counts: Iterable[int], sizes: Sequence[int] = MATMUL_SIZES,
                 precisions: Sequence[str] = PRECISIONS, *, repeats: int = 5,
                 min_run_s: float = 0.2) -> list[dict[str, Any]]:
    """One row per (precision, threads, size): ``best_gflops`` (the peak) and ``median_gflops``."""
    previous = torch.get_num_threads()
    rows = []
    try:
        for precision in precisions:
            for threads in thread_counts:
                torch.set_num_threads(threads)
                for size in sizes:
                    runs = matmul_gflops(size, MATMUL_DTYPES[precision], repeats=repeats, min_run_s=min_run_s)
                    rows.append({"precision": precision, "threads": threads, "size": size,
                                 "best_gflops": max(runs), "median_gflops": statistics.median(runs)})
    finally:
        torch.set_num_threads(previous)
    return rows


def peak_by_precision(rows: Iterable[dict[str, Any]], threads: int) -> dict[str, float]:
    """The best matmul GFLOP/s of each precision at ``threads`` threads, over all sizes."""
    peaks: dict[str, float] = {}
    for row in rows:
        if row["threads"] == threads:
            peaks[row["precision"]] = max(peaks.get(row["precision"], 0.0), row["best_gflops"])
    return peaks


# -- 2. training steps ----------------------------------------------------------
@dataclass
class Step:
    """One training step to measure: ``run`` does exactly one step on ``device``."""

    name: str
    precision: str
    run: Callable[[], Any]
    device: torch.device


def _compose(config: str, preset: str | None, sets: Iterable[str]) -> Any:
    from wm_app.experiment import compose_config

    return compose_config(config, preset=preset, sets=list(sets))


def sac_steps(precision: str, preset: str | None = None, batch_size: int = SAC_BATCH) -> list[Step]:
    """A SAC update of ``pendulum_sac`` on one random batch of ``batch_size`` transitions."""
    from registry import POLICY_REGISTRY
    from wm_envs.make import make_env

    cfg = _compose("pendulum_sac", preset, [f"policy.precision={precision}"])
    env = make_env(cfg["env"])
    policy = POLICY_REGISTRY.build(cfg["policy"], env, seed=0)
    obs_dim, action_dim = env.observation_space.shape[0], env.action_space.shape[0]
    env.close()
    generator = torch.Generator().manual_seed(0)
    obs = torch.randn(batch_size, obs_dim, generator=generator)
    batch = {"obs": obs, "action": torch.rand(batch_size, action_dim, generator=generator) * 4.0 - 2.0,
             "reward": torch.randn(batch_size, generator=generator), "next_obs": obs + 0.1,
             "terminated": torch.zeros(batch_size)}
    return [Step("SAC update", precision, lambda: policy.learn(batch), policy.device)]


def mbpo_steps(precision: str, preset: str | None = None, buffer_steps: int = 2000) -> list[Step]:
    """One ensemble gradient step of ``pendulum_mbpo`` at its model batch size.

    ``EnsembleTrainer`` has no single-step method (``_epoch`` loops over batches), so this is
    the loop's body: the loss, then the guard's backward and optimiser step. The loss runs
    under the model's ``autocast()`` so that ``world_model.precision`` decides its dtype.
    """
    from registry import WORLD_MODEL_REGISTRY
    from wm_envs.make import make_env
    from workers.buffer import random_buffer

    cfg = _compose("pendulum_mbpo", preset, [f"world_model.precision={precision}"])
    env = make_env(cfg["env"])
    model = WORLD_MODEL_REGISTRY.build(cfg["world_model"], env, None, seed=0)
    buffer = random_buffer(env, buffer_steps, seed=0)
    env.close()
    trainer = model.trainer
    data = model.dataset(buffer)
    model.ensemble.fit_input_normalizer(data.inputs)
    model.ensemble.fit_target_normalizer(data.targets)
    batch = data.subset(trainer.shuffled(trainer.member_indices(len(data)))[:, :trainer.cfg.batch_size])

    def step() -> None:
        with model.autocast():
            loss, _, _ = trainer.loss(batch)
        if trainer.guard is not None:
            trainer.guard.step("ensemble", loss, trainer.optimizer)
        else:
            trainer.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            trainer.optimizer.step()

    return [Step("MBPO ensemble step", precision, step, model.device)]


def dreamer_steps(precision: str, preset: str | None = None, sets: Iterable[str] = DREAMER_SETS,
                  buffer_steps: int = 2000) -> list[Step]:
    """A DreamerV3 world-model gradient step and a dreamer actor-critic update of ``cartpole_dreamerv3``.

    Both steps use one sequence batch (the same for every precision, as the buffer is seeded),
    so the FLOPs of a step do not depend on how many episode starts a sample happened to hold.
    The model takes one gradient step first, to give the policy its start states.
    """
    from dreamer_throughput import random_buffer

    from wm_envs.make import make_env
    from workers.run_config import build_components

    cfg = _compose("cartpole_dreamerv3", preset,
                   [*sets, f"world_model.precision={precision}", f"policy.precision={precision}"])
    env = make_env(cfg["env"])
    model, policy = build_components(cfg, env)
    buffer = random_buffer(env, max(buffer_steps, 2 * model.cfg.sequence_length), 0)
    env.close()
    batch = buffer.sample_sequences(model.cfg.batch_size, model.cfg.sequence_length, device=model.device)
    model.train_step(batch)
    return [Step("DreamerV3 world-model step", precision, lambda: model.train_step(batch), model.device),
            Step("dreamer actor-critic update", precision, lambda: policy.learn(model.imagination_starts()),
                 policy.device)]


def measure_step(step: Step, *, steps: int, warmup: int) -> dict[str, Any]:
    """FLOPs (counted on one extra step after the warm-up) and the median seconds of ``steps``."""
    seconds = step_seconds(step.run, steps=steps, warmup=warmup, device=step.device)
    flops = count_flops(step.run)
    median = statistics.median(seconds)
    return {"step": step.name, "precision": step.precision, "flops": flops, "median_s": median,
            "gflops": flops / median / 1e9}


def training_steps(precisions: Sequence[str] = PRECISIONS, *, steps: int = 20, warmup: int = 3,
                   preset: str | None = None, dreamer_sets: Iterable[str] = DREAMER_SETS,
                   buffer_steps: int = 2000) -> list[dict[str, Any]]:
    """One row per (step, precision): ``flops``, ``median_s``, ``gflops``; each built once per precision.

    Rows come step by step, each step's precisions together.
    """
    rows = []
    for precision in precisions:
        for step in (*sac_steps(precision, preset),
                     *mbpo_steps(precision, preset, buffer_steps),
                     *dreamer_steps(precision, preset, dreamer_sets, buffer_steps)):
            rows.append(measure_step(step, steps=steps, warmup=warmup))
    names = list(dict.fromkeys(row["step"] for row in rows))
    return sorted(rows, key=lambda row: (names.index(row["step"]), precisions.index(row["precision"])))


def add_peak_percent(rows: Iterable[dict[str, Any]], peaks: dict[str, float]) -> None:
    """``percent_of_peak``: each row's GFLOP/s against the matmul peak of its precision."""
    for row in rows:
        peak = peaks.get(row["precision"])
        row["percent_of_peak"] = 100.0 * row["gflops"] / peak if peak else math.nan


# -- 3. configs through the pipeline ----------------------------------------------
def config_run(config: str, env_steps: int, threads: int, preset: str | None = None) -> dict[str, Any]:
    """The first ``env_steps`` env steps of ``config`` through ``SerialPipeline`` (a temporary run dir)."""
    from wm_app.experiment import compose_config
    from workers.pipeline import SerialPipeline

    row: dict[str, Any] = {"config": config, "env_steps": 0, "wall_s": math.nan, "env_steps_per_s": math.nan,
                           "policy_updates": 0, "note": ""}
    try:
        cfg = compose_config(config, preset=preset, sets=[f"num_threads={threads}"], env_steps=env_steps)
        with tempfile.TemporaryDirectory() as out_dir:
            pipeline = SerialPipeline(cfg, out_dir=out_dir, show_progress=False)
            start = time.perf_counter()
            result = pipeline.run()
            wall = time.perf_counter() - start
    except Exception as err:  # one config that cannot run (a missing optional env) leaves the others
        row["note"] = f"failed: {type(err).__name__}: {err}".splitlines()[0][:200]
        return row
    row.update(env_steps=result["env_steps"], wall_s=wall, env_steps_per_s=result["env_steps"] / wall,
               policy_updates=result["train_iter"], note=result["failure"] or "")
    return row


def config_runs(configs: Iterable[str], env_steps: int, threads: int, preset: str | None = None
                ) -> list[dict[str, Any]]:
    rows = [config_run(config, env_steps, threads, preset) for config in configs]
    torch.set_num_threads(threads)  # a config may set its own num_threads
    return rows


# -- report -------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(_fmt(cell) for cell in row) + " |" for row in rows]
    return lines


def matmul_table(rows: Iterable[dict[str, Any]]) -> list[str]:
    return ["## torch.mm GFLOP/s (best and median of timed runs)", "", *markdown_table(
        ["precision", "threads", "size", "best GFLOP/s", "median GFLOP/s"],
        [(r["precision"], r["threads"], f"{r['size']}^3", r["best_gflops"], r["median_gflops"]) for r in rows])]


def steps_table(rows: Iterable[dict[str, Any]], threads: int) -> list[str]:
    return [f"## Training steps ({threads} thread(s); FLOPs of forward + backward, matmuls and convolutions)",
            "", *markdown_table(
                ["step", "precision", "MFLOP/step", "median ms/step", "GFLOP/s", "% of peak"],
                [(r["step"], r["precision"], r["flops"] / 1e6, 1e3 * r["median_s"], r["gflops"],
                  r["percent_of_peak"]) for r in rows])]


def configs_table(rows: Iterable[dict[str, Any]], threads: int) -> list[str]:
    return [f"## Configs through the serial pipeline ({threads} thread(s))", "", *markdown_table(
        ["config", "env steps", "wall s", "env steps/s", "policy updates", "note"],
        [(r["config"], r["env_steps"], r["wall_s"], r["env_steps_per_s"], r["policy_updates"], r["note"])
         for r in rows])]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the steps and configs")
    parser.add_argument("--configs", default=None, help="comma-separated configs (default: every shipped one)")
    parser.add_argument("--env-steps", type=int, default=2000, help="env steps per config")
    parser.add_argument("--skip-configs", action="store_true", help="no pipeline runs")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps (after --warmup)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed training steps first")
    parser.add_argument("--preset", default=None, help="a preset of every config (e.g. debug: tiny and fast)")
    parser.add_argument("--matmul-sizes", default=",".join(map(str, MATMUL_SIZES)),
                        help="comma-separated n of the n^3 products")
    parser.add_argument("--matmul-seconds", type=float, default=0.2, help="length of one timed matmul run")
    parser.add_argument("--out", default=None, help="also write the markdown to this file")
    args = parser.parse_args(argv)
    args.matmul_sizes = [int(n) for n in args.matmul_sizes.split(",") if n]
    if args.threads < 1 or args.env_steps < 1 or args.steps < 1 or args.warmup < 0 or not args.matmul_sizes:
        parser.error("--threads, --env-steps and --steps must be >= 1, --warmup >= 0, --matmul-sizes not empty")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    from wm_app.experiment import shipped_config_names

    args = parse_args(argv)
    configs = shipped_config_names() if args.configs is None else [c for c in args.configs.split(",") if c]
    start_load = load_average()
    torch.set_num_threads(args.threads)
    matmul = matmul_peaks(sorted({1, args.threads, available_cores()}), args.matmul_sizes,
                          min_run_s=args.matmul_seconds)
    steps = training_steps(steps=args.steps, warmup=args.warmup, preset=args.preset)
    add_peak_percent(steps, peak_by_precision(matmul, args.threads))
    runs = [] if args.skip_configs else config_runs(configs, args.env_steps, args.threads, args.preset)
    lines = [*header_lines(args.threads, start_load, load_average()), "", *matmul_table(matmul), "",
             *steps_table(steps, args.threads)]
    if runs:
        lines += ["", *configs_table(runs, args.threads)]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
