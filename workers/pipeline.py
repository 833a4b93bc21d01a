"""The serial pipeline: one loop for model-free, Dyna, Dream and Hybrid agents."""
from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from registry import BUFFER_REGISTRY, POLICY_REGISTRY, WORLD_MODEL_REGISTRY
from worldmodels.base import DynaWorldModel
from worldmodels.config import to_plain
from worldmodels.envs import make_env
from worldmodels.experiment import resolve_config
from workers.checkpoint import CHECKPOINT_NAME, save_checkpoint
from workers.collector import SerialCollector
from workers.evaluator import Evaluator
from workers.learner import Learner
from workers.logger import RunLogger


def space_storage(space: Any) -> tuple[tuple, Any]:
    """Per-transition shape and numpy dtype used to store values of a gymnasium space."""
    if hasattr(space, "n"):
        return (), np.int64
    dtype = np.uint8 if space.dtype == np.uint8 else np.float32
    return tuple(space.shape), dtype


def make_run_dir(out_dir: str | Path, exp_name: str, seed: int) -> Path:
    """A new, unique ``<out>/<exp_name>/<stamp>_s<seed>`` directory."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(out_dir) / exp_name
    base.mkdir(parents=True, exist_ok=True)
    for attempt in range(1000):
        suffix = "" if attempt == 0 else f"-{attempt}"
        run_dir = base / f"{stamp}_s{seed}{suffix}"
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
    raise RuntimeError(f"could not create a run directory under {base}")


class SerialPipeline:
    """Builds every component from a resolved config and runs the training loop.

    Each loop iteration: one collector step; world-model training and
    evaluation when due; for a Dyna model, refilling the imagination buffer
    when due; the policy updates owed; evaluation and checkpoint when due.
    """

    def __init__(self, cfg: Mapping, out_dir: str | Path = "runs", show_progress: bool = True) -> None:
        self.cfg = cfg = resolve_config(cfg)
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        torch.manual_seed(cfg.seed)
        self.out_dir = Path(out_dir)
        self.logger = RunLogger(cfg.env_steps, show_progress)
        self.evaluator = Evaluator(cfg.evaluator, cfg.env, seed=cfg.seed + 10_000)
        env_spec = self.evaluator.env
        self.world_model = None
        if cfg.world_model is not None:
            self.world_model = WORLD_MODEL_REGISTRY.build(cfg.world_model, env_spec, self.logger, seed=cfg.seed)
        self.policy = POLICY_REGISTRY.build(cfg.policy, env_spec, world_model=self.world_model, seed=cfg.seed,
                                            logger=self.logger)
        self.env_buffer = self._make_env_buffer(env_spec)
        self.img_buffer = None
        if isinstance(self.world_model, DynaWorldModel):
            self.img_buffer = self.world_model.make_img_buffer(0)
        self.collector = SerialCollector(cfg.collector, cfg.env, self.policy, self.env_buffer, seed=cfg.seed)
        self.learner = Learner(cfg.learner, self.policy, self.world_model, self.env_buffer, self.img_buffer,
                               self.logger, start_step=cfg.collector.warmup_steps)
        self.next_eval_step = 0
        self.next_checkpoint_step = cfg.checkpoint_every or None
        self.run_dir: Path | None = None
        self.last_eval: dict[str, float] = {}

    def _make_env_buffer(self, env_spec: Any) -> Any:
        obs_shape, obs_dtype = space_storage(env_spec.observation_space)
        action_shape, action_dtype = space_storage(env_spec.action_space)
        env_num = self.cfg.collector.env_num
        capacity = max(env_num, self.cfg.buffer.capacity // env_num * env_num)
        return BUFFER_REGISTRY.build(self.cfg.buffer, capacity=capacity, obs_shape=obs_shape,
                                     action_shape=action_shape, obs_dtype=obs_dtype,
                                     action_dtype=action_dtype, seed=self.cfg.seed)

    # -- the loop -------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Train for ``env_steps`` env steps; returns a summary of the run."""
        self.run_dir = make_run_dir(self.out_dir, self.cfg.exp_name, self.cfg.seed)
        with open(self.run_dir / "config.json", "w") as handle:
            json.dump(to_plain(self.cfg), handle, indent=2)
        self.logger.open(self.run_dir, start_step=self.collector.envstep)
        self.logger.message(f"run directory: {self.run_dir}")
        start = time.perf_counter()
        try:
            while self.collector.envstep < self.cfg.env_steps:
                self.iteration()
            if not self.last_eval or self.last_eval["env_step"] != self.collector.envstep:
                self.evaluate()
            self.save()
        finally:
            self.logger.close()
            self.collector.close()
            self.evaluator.close()
        wall = time.perf_counter() - start
        return {"run_dir": str(self.run_dir), "env_steps": self.collector.envstep, "wall_time": wall,
                "env_steps_per_s": self.collector.envstep / max(wall, 1e-9), "train_iter": self.learner.train_iter,
                "eval_return_mean": self.last_eval["eval_return_mean"],
                "eval_return_std": self.last_eval["eval_return_std"],
                "eval_episodes": self.cfg.evaluator.n_episodes}

    def iteration(self) -> None:
        if self.collector.envstep >= self.next_eval_step:
            self.evaluate()
        new_steps = self.collector.step()
        envstep = self.collector.envstep
        if self.world_model is not None:
            self.world_model_step(envstep)
        self.learner.train(envstep, new_steps)
        self.logger.advance(envstep)
        if self.next_checkpoint_step is not None and envstep >= self.next_checkpoint_step:
            self.save()
            self.next_checkpoint_step += self.cfg.checkpoint_every

    def world_model_step(self, envstep: int) -> None:
        """Let the world model train, evaluate and (Dyna) imagine as its schedule says."""
        model = self.world_model
        train_iter = self.learner.train_iter
        if len(self.env_buffer) >= self.cfg.learner.batch_size and model.should_train(envstep):
            model.log("world_model", model.train(self.env_buffer, envstep, train_iter), envstep)
        if model.should_eval(envstep):
            model.log("world_model", model.eval(self.env_buffer, envstep, train_iter), envstep)
        if isinstance(model, DynaWorldModel) and model.should_fill(envstep):
            metrics = model.fill_img_buffer(self.policy, self.env_buffer, self.img_buffer, envstep, train_iter)
            model.log("imagination", metrics, envstep)

    def evaluate(self) -> dict[str, float]:
        envstep = self.collector.envstep
        mean, std, _ = self.evaluator.evaluate(self.policy)
        self.learner.flush(envstep)
        self.logger.log_scalars("collect", self.collector.pop_episode_stats(), envstep)
        self.last_eval = self.logger.log_evaluation(envstep, self.learner.train_iter, mean, std)
        self.next_eval_step = envstep + self.cfg.evaluator.eval_freq
        return self.last_eval

    # -- state ----------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "format": 1,
            "config": json.dumps(to_plain(self.cfg)),
            "env_step": self.collector.envstep,
            "learner": self.learner.state_dict(),
            "policy": self.policy.state_dict(),
            "world_model": None if self.world_model is None else self.world_model.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }

    def save(self) -> Path:
        return save_checkpoint(self.state_dict(), self.run_dir / CHECKPOINT_NAME)


def serial_pipeline(cfg: Mapping, out_dir: str | Path = "runs", show_progress: bool = True) -> dict[str, Any]:
    """Build every component from ``cfg`` and train; returns the run's summary.

    The run writes ``<out_dir>/<exp_name>/<stamp>_s<seed>/`` with ``config.json``,
    TensorBoard events, ``progress.csv`` and ``checkpoint.pt``.
    """
    return SerialPipeline(cfg, out_dir, show_progress).run()
