"""The serial pipeline: one loop for model-free, Dyna, Dream and Hybrid agents."""
from __future__ import annotations

import contextlib
import json
import shutil
import signal
import time
from collections.abc import Collection, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from registry import BUFFER_REGISTRY, require_trust
from wm_core.config import ConfigError, to_plain
from wm_core.guards import NonFiniteError, NonFiniteStateError
from wm_envs.make import EnvError
from workers.buffer import space_buffer, space_storage
from workers.checkpoint import FORMAT as CHECKPOINT_FORMAT
from workers.checkpoint import (
    CheckpointError,
    RunOutputError,
    check_identity,
    config_fingerprint,
    finish_interrupted_write,
    first_usable_checkpoint,
    load_checkpoint,
    misfit_error,
    read_run_config,
    rotate_and_save,
    upgrade_config,
    validate_checkpoint,
)
from workers.collector import SerialCollector
from workers.dataset import OfflineClock, dataset_buffer, read_dataset
from workers.evaluator import Evaluator
from workers.learner import Learner
from workers.logger import MlflowTarget, RunLogger, flatten_params, local_mlflow_store, read_progress
from workers.run_config import build_components, resolve_config, resolve_threads


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

    With "mlflow" in ``logger.backends`` the run is also an MLflow run, in experiment
    ``mlflow_experiment`` (default: the config's ``exp_name``) with ``mlflow_tags`` added to its own
    (run name, exp_name, seed, run directory).
    """

    def __init__(self, cfg: Mapping, out_dir: str | Path = "runs", show_progress: bool = True,
                 run_dir: str | Path | None = None, mlflow_experiment: str | None = None,
                 mlflow_tags: Mapping[str, str] | None = None, *, restoring: bool = False) -> None:
        """``restoring``: a checkpoint's state follows (``resume``), so an offline run's dataset is
        not read: the checkpoint holds it."""
        self.cfg = cfg = resolve_config(cfg)
        self.threads = resolve_threads(cfg.num_threads)
        if self.threads:
            torch.set_num_threads(self.threads)
        torch.manual_seed(cfg.seed)
        self.out_dir = Path(out_dir)
        self.offline = cfg.offline.dataset is not None
        self.logger = RunLogger(self.budget, show_progress, tensorboard="tensorboard" in cfg.logger.backends,
                                unit="update steps" if self.offline else "env steps")
        self.mlflow_experiment = mlflow_experiment
        self.mlflow_tags = dict(mlflow_tags or {})
        self.evaluator = Evaluator(cfg.evaluator, cfg.env, seed=cfg.seed + 10_000)
        env_spec = self.evaluator.env
        self.world_model, self.policy = build_components(cfg, env_spec, self.logger)
        if self.world_model is not None:
            self.logger.progress_metric = f"world_model/{self.world_model.progress_metric}"
        self.run_dir = Path(run_dir) if run_dir is not None else make_run_dir(out_dir, cfg.exp_name, cfg.seed)
        try:
            if self.offline and restoring:
                self.env_buffer = space_buffer(env_spec, 1, cfg.seed)  # the checkpoint's state fills it
                self.collector: SerialCollector | OfflineClock = OfflineClock()
            elif self.offline:
                self.env_buffer = dataset_buffer(read_dataset(cfg.offline.dataset), env_spec, seed=cfg.seed)
                if len(self.env_buffer) < cfg.learner.batch_size:
                    raise ConfigError(f"offline dataset '{cfg.offline.dataset}' holds {len(self.env_buffer)} "
                                      f"transitions, fewer than learner.batch_size ({cfg.learner.batch_size})")
                self.collector = OfflineClock()
            else:
                self.env_buffer = self._make_env_buffer(env_spec)
                self.collector = SerialCollector(cfg.collector, cfg.env, self.policy, self.env_buffer, seed=cfg.seed)
        except BaseException:
            if run_dir is None:  # a failed start leaves no run directory behind
                shutil.rmtree(self.run_dir, ignore_errors=True)
                with contextlib.suppress(OSError):
                    self.run_dir.parent.rmdir()  # the experiment's folder, when this was its only run
            self.evaluator.close()
            raise
        self.learner = Learner(cfg.learner, self.policy, self.world_model, self.env_buffer, self.logger,
                               start_step=self.collector.warmup_steps)
        self.next_eval_step = 0
        self.next_checkpoint_step = cfg.checkpoint_every or None
        self.last_eval: dict[str, float] = {}
        self.off_schedule_eval = False  # the last evaluation was the budget's, not the schedule's
        self.stop_signal: int | None = None
        self.wall_offset = 0.0  # training time before a resume
        self.last_saved_step: int | None = None
        self.clock = time.monotonic  # seconds, for checkpoint_minutes
        self.last_save_time = 0.0

    @property
    def budget(self) -> int:
        """Where the run stops: ``env_steps`` env steps, or ``offline.updates`` update steps offline."""
        return int(self.cfg.offline.updates if self.cfg.offline.dataset is not None else self.cfg.env_steps)

    @property
    def img_buffer(self) -> Any:
        """The world model's imagination buffer (a Dyna model's; None for other kinds)."""
        return None if self.world_model is None else self.world_model.img_buffer

    def _make_env_buffer(self, env_spec: Any) -> Any:
        """The env replay buffer; a disk buffer with no ``directory`` of its own keeps its files
        in the run directory's ``replay/``, where a later resume removes what a killed run left."""
        obs_shape, obs_dtype = space_storage(env_spec.observation_space)
        action_shape, action_dtype = space_storage(env_spec.action_space)
        env_num = self.cfg.collector.env_num
        capacity = max(env_num, self.cfg.buffer.capacity // env_num * env_num)
        buffer_cfg = self.cfg.buffer
        if buffer_cfg.get("storage") == "disk" and buffer_cfg.get("directory") is None:
            replay = self.run_dir / "replay"
            shutil.rmtree(replay, ignore_errors=True)  # files of a run that was killed
            replay.mkdir()
            buffer_cfg = dict(buffer_cfg, directory=str(replay))
        return BUFFER_REGISTRY.build(buffer_cfg, capacity=capacity, obs_shape=obs_shape,
                                     action_shape=action_shape, obs_dtype=obs_dtype,
                                     action_dtype=action_dtype, seed=self.cfg.seed)

    # -- the loop -------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Train until ``env_steps`` env steps or SIGINT/SIGTERM; returns a summary of the run
        (``wall_time`` and ``env_steps_per_s`` of this call, which started at ``start_env_step``).

        A signal lets the current iteration finish, then writes a checkpoint.
        """
        start, start_step = time.perf_counter(), self.collector.envstep
        previous_handlers = self._install_signal_handlers()
        self.last_save_time = self.clock()
        failure, completed = None, False
        try:
            self._open_run_dir()
            while self.collector.envstep < self.budget and self.stop_signal is None:
                self.iteration()
            if self.stop_signal is None:
                self.final_evaluation()
            if self.last_saved_step != self.collector.envstep:
                self.save()
            completed = True
        except NonFiniteError as err:  # parameters are intact: the bad updates were skipped
            failure = str(err)
            try:
                self.save()
            except NonFiniteStateError as state_err:
                failure = f"{failure}; {state_err}"
        except (EnvError, NonFiniteStateError, RunOutputError) as err:
            # the envs or the nets are not sound, or the disk is full: keep the last checkpoint
            failure = str(err)
        finally:
            self._restore_signal_handlers(previous_handlers)
            close_error = self.logger.close(self._session_status(completed and failure is None),
                                            artifacts=(self.run_dir / "checkpoint.pt", self.run_dir / "progress.csv"))
            self.collector.close()
            self.evaluator.close()
            for buffer in (self.env_buffer, self.img_buffer):
                if buffer is not None and getattr(buffer, "storage", "memory") == "disk":
                    buffer.close()
        if close_error is not None and failure is None:  # the last events could not be written
            failure = str(close_error)
        wall = time.perf_counter() - start
        session_steps = self.collector.envstep - start_step
        return {"run_dir": str(self.run_dir), "env_steps": self.collector.envstep, "wall_time": wall,
                "offline": self.offline,
                "start_env_step": start_step, "env_steps_per_s": session_steps / max(wall, 1e-9),
                "train_iter": self.learner.train_iter,
                "eval_return_mean": self.last_eval.get("eval_return_mean", float("nan")),
                "eval_return_std": self.last_eval.get("eval_return_std", float("nan")),
                "eval_episodes": self.cfg.evaluator.n_episodes,
                "parameters": self.parameter_count(),
                "stopped_by": None if self.stop_signal is None else signal.Signals(self.stop_signal).name,
                "failure": failure, "checkpoint_step": self.last_saved_step}

    def _session_status(self, completed: bool) -> str:
        """How this session ended, as an MLflow run status: KILLED when a signal stopped it (it can
        be resumed), FINISHED when it ran to its end, FAILED otherwise."""
        if self.stop_signal is not None:
            return "KILLED"
        return "FINISHED" if completed else "FAILED"

    def parameter_count(self) -> int:
        """Trainable and target parameters of the policy and the world model."""
        count = self.policy.parameter_count()
        return count + (self.world_model.parameter_count() if self.world_model is not None else 0)

    def _open_run_dir(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / "config.json", "w") as handle:
            json.dump(to_plain(self.cfg), handle, indent=2)
        mlflow = self.mlflow_target()
        self.logger.open(self.run_dir, start_step=self.collector.envstep, wall_offset=self.wall_offset,
                         mlflow=mlflow)
        self.logger.message(f"run directory: {self.run_dir}")
        if self.offline:
            episodes = self.cfg.evaluator.n_episodes
            self.logger.message(
                f"offline: training on the {len(self.env_buffer)} transitions of '{self.cfg.offline.dataset}' "
                f"for {self.budget} update steps, taking no env step; the evaluator still runs {episodes} "
                f"episode{'s' if episodes != 1 else ''} on {self.cfg.env.id} every "
                f"{self.cfg.evaluator.eval_freq} update steps (progress.csv's env_step counts update steps)")
        if mlflow is not None:
            self.logger.message(f"MLflow run {self.logger.mlflow.run_id} in experiment '{mlflow.experiment}' "
                                f"of {mlflow.tracking_uri}")
        model = "" if self.world_model is None else f"world model {self.world_model.precision}, "
        self.logger.message(f"torch threads: {self.threads}; precision: {model}policy {self.policy.precision}")

    def mlflow_target(self) -> MlflowTarget | None:
        """Where this run is recorded in MLflow; None without "mlflow" in ``logger.backends``.

        The store is ``logger.mlflow_tracking_uri``, by default a local one in ``mlruns/`` two
        levels above the run directory (``<out>/mlruns`` beside ``<out>/<exp_name>/``, for this run
        and for its resumes alike). Params: the resolved config as dotted keys.
        """
        settings = self.cfg.logger
        if "mlflow" not in settings.backends:
            return None
        uri, artifact_location = settings.mlflow_tracking_uri, None
        if uri is None:
            uri, artifact_location = local_mlflow_store(self.run_dir.parent.parent / "mlruns")
        tags = {"mlflow.runName": self.run_dir.name, "exp_name": self.cfg.exp_name, "seed": str(self.cfg.seed),
                "run_dir": str(self.run_dir.resolve()), **self.mlflow_tags}
        return MlflowTarget(uri, self.mlflow_experiment or self.cfg.exp_name, artifact_location,
                            flatten_params(to_plain(self.cfg)), tags)

    def request_stop(self, signum: int, source: str = "") -> None:
        """Finish the current iteration, save and return from ``run`` (what SIGINT/SIGTERM do).
        A request after the first changes nothing: a comparison that forwards a signal its
        workers also received directly must not stop them at once."""
        if self.stop_signal is not None:
            return
        self.stop_signal = signum
        self.logger.message(f"{signal.Signals(signum).name} received{source}: finishing this step and saving",
                            always=True)

    def _install_signal_handlers(self) -> dict:
        signalled = []

        def request_stop(signum: int, frame: Any) -> None:
            if signalled:  # a second signal stops at once (a request_stop call before it is no signal)
                raise KeyboardInterrupt
            signalled.append(signum)
            self.request_stop(signum)

        handlers = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                handlers[signum] = signal.signal(signum, request_stop)
            except ValueError:  # not the main thread: signals stay with the caller
                pass
        return handlers

    @staticmethod
    def _restore_signal_handlers(handlers: dict) -> None:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)

    def in_warmup(self, envstep: int) -> bool:
        """Whether ``envstep`` is in the random warm-up with nothing learning yet: no world-model
        training or imagination, and no evaluation of the untouched policy after step 0."""
        if envstep >= self.collector.warmup_steps:
            return False
        return self.world_model is None or not self.world_model.cfg.train_during_warmup

    def iteration(self) -> None:
        envstep = self.collector.envstep
        if envstep >= self.next_eval_step:
            if envstep == 0 or not self.in_warmup(envstep):
                self.evaluate()
            else:  # the same untouched policy as at step 0: no new measurement to make
                self.next_eval_step = envstep + self.cfg.evaluator.eval_freq
        new_steps = self.collector.step()
        envstep = self.collector.envstep
        if self.world_model is not None and not self.in_warmup(envstep):
            self.world_model.update(envstep, self.env_buffer, self.policy, self.learner.train_iter)
        self.learner.train(envstep, new_steps)
        self.logger.advance(envstep)
        by_steps = self.next_checkpoint_step is not None and envstep >= self.next_checkpoint_step
        if by_steps:
            self.next_checkpoint_step += self.cfg.checkpoint_every  # before saving: the checkpoint holds it
        minutes = self.cfg.checkpoint_minutes
        if by_steps or (minutes and self.clock() - self.last_save_time >= 60.0 * minutes):
            self.save()

    def evaluate(self, on_schedule: bool = True) -> dict[str, float]:
        envstep = self.collector.envstep
        mean, std, _ = self.evaluator.evaluate(self.policy)
        self.learner.flush(envstep)
        self.logger.log_scalars("collect", self.collector.pop_episode_stats(), envstep)
        self.last_eval = self.logger.log_evaluation(envstep, self.learner.train_iter, mean, std)
        self.off_schedule_eval = not on_schedule
        if on_schedule:
            self.next_eval_step = envstep + self.cfg.evaluator.eval_freq
        return self.last_eval

    def final_evaluation(self) -> None:
        """Evaluate at the end of the budget unless that step was just evaluated.

        The evaluation counts as on schedule when a longer run would also
        evaluate at this step; otherwise a resumed run drops its row, so that a
        run continued with ``--resume`` matches an uninterrupted one.
        """
        envstep = self.collector.envstep
        if self.last_eval and self.last_eval["env_step"] == envstep:
            return
        self.evaluate(on_schedule=envstep >= self.next_eval_step)

    # -- state ----------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything that determines the rest of the run (tensors and plain values only)."""
        save_buffers = self.cfg.save_buffer
        config_json = json.dumps(to_plain(self.cfg))
        return {
            "format": CHECKPOINT_FORMAT,
            "config": config_json,
            "fingerprint": config_fingerprint(config_json),
            "env_step": self.collector.envstep,
            "pipeline": {"next_eval_step": self.next_eval_step, "next_checkpoint_step": self.next_checkpoint_step,
                         "off_schedule_eval": self.off_schedule_eval, "last_eval": dict(self.last_eval),
                         "wall_time": self.logger.wall_time()},
            "logger_latest": dict(self.logger.latest),
            "learner": self.learner.state_dict(),
            "policy": self.policy.state_dict(),
            "world_model": None if self.world_model is None else self.world_model.state_dict(),
            "collector": self.collector.state_dict(),
            "env_buffer": self.env_buffer.state_dict() if save_buffers else None,
            "img_buffer": self.img_buffer.state_dict() if save_buffers and self.img_buffer is not None else None,
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: Mapping) -> None:
        """Restore a ``state_dict``; the run continues exactly where it stopped."""
        if state["env_buffer"] is None:
            raise CheckpointError("this checkpoint was saved with save_buffer=False: the replay buffer is "
                                  "missing, so the run cannot resume")
        pipeline = state["pipeline"]
        self.next_eval_step = int(pipeline["next_eval_step"])
        self.next_checkpoint_step = pipeline["next_checkpoint_step"]
        self.last_eval = dict(pipeline["last_eval"])
        self.wall_offset = float(pipeline["wall_time"])
        if pipeline["off_schedule_eval"]:
            self.last_eval = {}
        self.logger.latest = dict(state["logger_latest"])
        self.learner.load_state_dict(state["learner"])
        self.policy.load_state_dict(state["policy"])
        if self.world_model is not None:
            self.world_model.load_state_dict(state["world_model"])
        self.collector.load_state_dict(state["collector"])
        self.env_buffer.load_state_dict(state["env_buffer"])
        if self.img_buffer is not None and state["img_buffer"] is not None:
            self.img_buffer.load_state_dict(state["img_buffer"])
        torch.set_rng_state(state["torch_rng"])
        self.off_schedule_eval = False

    def check_state(self) -> None:
        """Raise NonFiniteStateError naming the first non-finite parameter or optimiser state of
        the policy, then of the world model."""
        for component in (self.policy, self.world_model):
            if component is not None:
                component.check_state()

    def save(self) -> Path:
        """Write ``checkpoint.pt`` atomically, keeping the previous ones in ``checkpoints/``.

        Raises:
            NonFiniteStateError: a parameter or optimiser state is non-finite; nothing is written.
        """
        self.check_state()
        path = rotate_and_save(self.state_dict(), self.run_dir, self.cfg.keep_checkpoints)
        self.last_saved_step = self.collector.envstep
        self.last_save_time = self.clock()
        return path

    @classmethod
    def resume(cls, run_dir: str | Path, env_steps: int | None = None, show_progress: bool = True,
               trust_plugins: bool | Collection[str] = False, mlflow_experiment: str | None = None,
               mlflow_tags: Mapping[str, str] | None = None) -> SerialPipeline:
        """A pipeline restored from the newest loadable checkpoint of ``run_dir``; with "mlflow" in
        its ``logger.backends`` it continues the MLflow run that the run directory names.

        Args:
            env_steps: a new total budget (None: the run's own); of update steps for an offline run.
            trust_plugins: True to import any plugin code the run's config names, or the
                names that may be imported; by default a run that names plugins is refused.
            mlflow_experiment, mlflow_tags: as for the constructor (the experiment is used only
                when the MLflow run is no longer in its store and a new one is started).

        Raises:
            CheckpointError: no run directory or no loadable checkpoint.
            UntrustedPluginError: the run names plugin code that is not trusted.
        """
        run_dir = Path(run_dir)
        run_config = read_run_config(run_dir)
        keep = run_config.get("keep_checkpoints", 1)
        finish_interrupted_write(run_dir, keep if isinstance(keep, int) else 1)
        return first_usable_checkpoint(  # a damaged, foreign or ill-fitting checkpoint: an older one may do
            run_dir, lambda path: cls._resume_from(path, run_dir, run_config, env_steps, show_progress,
                                                   trust_plugins, mlflow_experiment, mlflow_tags))

    @classmethod
    def _resume_from(cls, path: Path, run_dir: Path, run_config: Any, env_steps: int | None, show_progress: bool,
                     trust_plugins: bool | Collection[str], mlflow_experiment: str | None = None,
                     mlflow_tags: Mapping[str, str] | None = None) -> SerialPipeline:
        """A pipeline restored from the checkpoint at ``path`` (see ``resume``)."""
        state = load_checkpoint(path)
        validate_checkpoint(state, path)
        cfg = json.loads(state["config"])
        require_trust(cfg, f"the run in '{run_dir}'", trust_plugins)
        check_identity(state, path, run_config)
        upgrades = upgrade_config(cfg)
        # the budget of an offline run is its update steps (offline.updates), else its env steps
        offline = (cfg.get("offline") or {}).get("dataset") is not None
        section, key, unit = (cfg["offline"], "updates", "update step") if offline else (cfg, "env_steps", "env step")
        if env_steps is not None:  # a new total
            section[key] = int(env_steps)
        if section[key] <= state["env_step"]:
            raise ConfigError(f"the run in '{run_dir}' stopped at {unit} {state['env_step']}, at or past its "
                              f"budget of {section[key]}; pass --{key.replace('_', '-')} with a larger total "
                              "to continue")
        pipeline = cls(cfg, out_dir=run_dir.parent.parent, show_progress=show_progress, run_dir=run_dir,
                       mlflow_experiment=mlflow_experiment, mlflow_tags=mlflow_tags, restoring=True)
        try:
            pipeline.load_state_dict(state)
            pipeline.check_state()  # an inf in the optimiser state would silently stall learning
        except ConfigError:
            raise
        except NonFiniteStateError as err:
            pipeline.collector.close()
            pipeline.evaluator.close()
            raise CheckpointError(f"checkpoint '{path}' holds non-finite values: {err}") from None
        except Exception as err:  # shapes or contents that do not fit: this checkpoint cannot be used
            pipeline.collector.close()
            pipeline.evaluator.close()
            raise misfit_error(path, err) from None
        step = int(state["env_step"])
        pipeline.last_saved_step = step  # that checkpoint is on disk
        # The checkpoint at a step is written before that step's evaluation runs (an
        # iteration ends with the save, the next begins with the evaluation): a row at
        # the checkpoint's step that the resumed run will evaluate again is dropped, as
        # is an off-schedule final evaluation that a longer run would not have made.
        redo = int(state["pipeline"]["next_eval_step"]) <= step or bool(state["pipeline"]["off_schedule_eval"])
        pipeline.logger.rows = read_progress_rows(run_dir, step, drop_last=redo)
        for note in upgrades:
            pipeline.logger.message(f"config of an older version: {note}")
        pipeline.logger.message(f"resuming from {path} at env step {state['env_step']}")
        return pipeline


def read_progress_rows(run_dir: Path, up_to_step: int, drop_last: bool) -> list[dict]:
    """progress.csv rows written up to ``up_to_step`` (values as numbers); with ``drop_last``,
    those before it."""
    rows = [row for row in read_progress(run_dir) if row["env_step"] <= up_to_step]
    if drop_last:
        rows = [row for row in rows if row["env_step"] < up_to_step]
    return rows


def serial_pipeline(cfg: Mapping, out_dir: str | Path = "runs", show_progress: bool = True) -> dict[str, Any]:
    """Build every component from ``cfg`` and train; returns the run's summary.

    The run writes ``<out_dir>/<exp_name>/<stamp>_s<seed>/`` with ``config.json``,
    TensorBoard events, ``progress.csv`` and ``checkpoint.pt`` (``logger.backends`` adds an
    MLflow run, by default in ``<out_dir>/mlruns/``, or drops the TensorBoard events).
    """
    return SerialPipeline(cfg, out_dir, show_progress).run()
