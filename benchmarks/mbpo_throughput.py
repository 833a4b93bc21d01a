"""Throughput of the ``mbpo`` world model: ensemble training, imagination, peak memory.

``mbpo_throughput(cfg)`` takes a resolved experiment config (``compose_config``)
whose ``world_model.type`` is ``mbpo`` and returns a dict of figures; run this
file directly to print them for a shipped config::

    python benchmarks/mbpo_throughput.py pendulum_mbpo [--set world_model.ensemble_size=5]
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Mapping
from typing import Any

import torch

from wm_envs.make import make_env
from workers.buffer import ReplayBuffer, random_buffer
from workers.run_config import build_components


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def mbpo_throughput(cfg: Mapping, *, buffer_steps: int = 5000, train_steps: int = 100, fills: int = 3,
                    envstep: int | None = None) -> dict[str, float]:
    """Measure the ``mbpo`` model of ``cfg`` on random data of its env.

    Args:
        cfg: a resolved experiment config with an ``mbpo`` world model.
        buffer_steps: random transitions to train on.
        train_steps: ensemble gradient steps timed (after 5 untimed ones).
        fills: ``fill_img_buffer`` calls timed (after 1 untimed).
        envstep: env step whose rollout length is used; ``cfg.env_steps`` when None.

    Returns:
        ``ensemble_train_rows_per_s`` (batch rows per member per second, i.e.
        transitions a member trains on), ``ensemble_train_member_samples_per_s``
        (the same times the ensemble size), ``ensemble_step_ms``,
        ``full_train_s`` (one ``train`` call with early stopping on the buffer)
        and its ``full_train_epochs``, ``imagined_transitions_per_s`` (whole fills,
        policy included), ``model_step_rows_per_s`` (``step`` alone, on
        ``rollout_batch_size`` rows), ``rollout_length``, ``peak_rss_mb`` and, on
        CUDA, ``peak_cuda_mb``.
    """
    wm_cfg = cfg["world_model"]
    if wm_cfg is None or wm_cfg["type"] != "mbpo":
        raise ValueError("mbpo_throughput needs a config whose world_model.type is 'mbpo'")
    seed = int(cfg.get("seed", 0))
    env = make_env(cfg["env"])
    model, policy = build_components({**cfg, "seed": seed}, env)
    buffer = random_buffer(env, buffer_steps, seed)
    env.close()
    device = model.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    figures: dict[str, float] = {}
    figures.update(_train_figures(model, buffer, train_steps))
    figures.update(_imagination_figures(model, policy, buffer, fills,
                                        int(cfg.get("env_steps", 0)) if envstep is None else envstep))
    figures["peak_rss_mb"] = peak_rss_mb()
    if device.type == "cuda":
        figures["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return figures


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _train_figures(model: Any, buffer: ReplayBuffer, train_steps: int) -> dict[str, float]:
    trainer, ensemble = model.trainer, model.ensemble
    data = model.dataset(buffer)
    ensemble.fit_input_normalizer(data.inputs)
    order = trainer.shuffled(trainer.member_indices(len(data)))
    rows_needed = (train_steps + 5) * trainer.cfg.batch_size
    while order.shape[1] < rows_needed:
        order = torch.cat([order, trainer.shuffled(order)], dim=1)
    batches = [data.subset(order[:, i * trainer.cfg.batch_size:(i + 1) * trainer.cfg.batch_size])
               for i in range(train_steps + 5)]

    def gradient_step(batch: Any) -> None:
        with trainer.autocast():  # the model's precision, as its fits run
            loss, _, _ = trainer.loss(batch)
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trainer.optimizer.step()

    for batch in batches[:5]:
        gradient_step(batch)
    _sync(model.device)
    start = time.perf_counter()
    for batch in batches[5:]:
        gradient_step(batch)
    _sync(model.device)
    seconds = time.perf_counter() - start
    rows = train_steps * trainer.cfg.batch_size
    start = time.perf_counter()
    metrics = model.train(buffer, envstep=len(buffer), train_iter=0)
    _sync(model.device)
    return {"ensemble_train_rows_per_s": rows / seconds,
            "ensemble_train_member_samples_per_s": rows * ensemble.ensemble_size / seconds,
            "ensemble_step_ms": 1e3 * seconds / train_steps,
            "full_train_s": time.perf_counter() - start,
            "full_train_epochs": metrics["epochs"]}


def _imagination_figures(model: Any, policy: Any, buffer: ReplayBuffer, fills: int, envstep: int
                         ) -> dict[str, float]:
    img_buffer = model.make_img_buffer(envstep)
    model.fill_img_buffer(policy, buffer, img_buffer, envstep, 0)
    _sync(model.device)
    pushed = 0.0
    start = time.perf_counter()
    for _ in range(fills):
        pushed += model.fill_img_buffer(policy, buffer, img_buffer, envstep, 0)["img_transitions_pushed"]
    _sync(model.device)
    fill_seconds = time.perf_counter() - start
    batch = buffer.sample(model.cfg.rollout_batch_size, device=model.device)
    model.step(batch["obs"], batch["action"])
    _sync(model.device)
    start = time.perf_counter()
    for _ in range(fills):
        model.step(batch["obs"], batch["action"])
    _sync(model.device)
    step_seconds = time.perf_counter() - start
    return {"imagined_transitions_per_s": pushed / fill_seconds,
            "model_step_rows_per_s": fills * model.cfg.rollout_batch_size / step_seconds,
            "rollout_length": float(model.rollout_length(envstep))}


def main(argv: list[str] | None = None) -> int:
    from wm_app.experiment import compose_config

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--preset", default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = compose_config(args.config, preset=args.preset, sets=args.sets)
    for key, value in mbpo_throughput(cfg).items():
        print(f"{key:40s} {value:14.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
