import csv
import json
from pathlib import Path

import pytest
import torch

from registry import WORLD_MODEL_REGISTRY
from tests.conftest import ToyDyna
from wm_app.experiment import compose_config
from workers.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from workers.learner import Learner
from workers.pipeline import SerialPipeline, serial_pipeline

WORLD_MODEL_REGISTRY.register("test_toy_dyna", ToyDyna, force=True)


def read_progress(run_dir):
    with open(f"{run_dir}/progress.csv") as handle:
        return list(csv.DictReader(handle))


def debug_cfg(*sets, seed=0):
    return compose_config("pendulum_sac", preset="debug", sets=sets, seed=seed)


def test_run_directory_contents(tmp_path):
    result = serial_pipeline(debug_cfg(), out_dir=tmp_path, show_progress=False)
    run_dir = tmp_path / "pendulum_sac"
    (run_path,) = run_dir.iterdir()
    assert str(run_path) == result["run_dir"]
    names = {p.name for p in run_path.iterdir()}
    assert {"config.json", "progress.csv", "checkpoint.pt"} <= names
    assert any(name.startswith("events.out.tfevents") for name in names)
    config = json.loads((run_path / "config.json").read_text())
    assert config["policy"]["type"] == "sac" and config["policy"]["gamma"] == 0.99  # resolved defaults
    rows = read_progress(run_path)
    assert {"env_step", "wall_time", "eval_return_mean", "eval_return_std"} <= set(rows[0])
    assert [int(r["env_step"]) for r in rows] == [0, 300, 600]
    assert int(rows[-1]["train_iter"]) == result["train_iter"] > 0


def test_same_seed_same_progress_different_seed_differs(tmp_path):
    def run(seed, out):
        result = serial_pipeline(debug_cfg(seed=seed), out_dir=tmp_path / out, show_progress=False)
        return [{k: v for k, v in row.items() if k != "wall_time"} for row in read_progress(result["run_dir"])]

    first, second, other = run(0, "a"), run(0, "b"), run(1, "c")
    assert first == second
    assert first != other


def test_checkpoint_restores_policy(tmp_path):
    pipeline = SerialPipeline(debug_cfg(), out_dir=tmp_path, show_progress=False)
    result = pipeline.run()
    state = load_checkpoint(f"{result['run_dir']}/checkpoint.pt")
    assert state["env_step"] == 600 and json.loads(state["config"])["exp_name"] == "pendulum_sac"
    fresh = SerialPipeline(debug_cfg(seed=5), out_dir=tmp_path, show_progress=False)
    fresh.policy.load_state_dict(state["policy"])
    obs = torch.randn(7, 3)
    assert torch.equal(fresh.policy.act(obs), pipeline.policy.act(obs))


def test_corrupt_checkpoint_is_named(tmp_path):
    path = save_checkpoint({"format": 1, "x": torch.ones(1000)}, tmp_path / "checkpoint.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="checkpoint.pt"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_dyna_iteration_through_the_pipeline(tmp_path):
    cfg = debug_cfg("world_model={'type': 'test_toy_dyna', 'train_freq': 100, 'rollout_freq': 100, "
                    "'rollout_batch_size': 32}")
    pipeline = SerialPipeline(cfg, out_dir=tmp_path, show_progress=False)
    pipeline.run()
    assert pipeline.world_model.last_train_envstep == 600
    assert len(pipeline.img_buffer) == pipeline.img_buffer.capacity == 32 * 1 * 4
    assert pipeline.learner.train_iter > 0


def test_updates_per_step_fraction_carries_over(tmp_path):
    pipeline = SerialPipeline(debug_cfg("learner.updates_per_step=0.5"), out_dir=tmp_path, show_progress=False)
    pipeline.run()
    assert pipeline.learner.train_iter == (600 - 200) // 2


def test_async_vector_env_collects_and_resumes_exactly(tmp_path):
    sets = ["collector.vector='async'", "collector.env_num=2"]
    full = serial_pipeline(debug_cfg(*sets), out_dir=tmp_path / "a", show_progress=False)
    cfg = compose_config("pendulum_sac", "debug", sets, env_steps=250)
    first = serial_pipeline(cfg, out_dir=tmp_path / "b", show_progress=False)
    resumed = SerialPipeline.resume(first["run_dir"], env_steps=600, show_progress=False).run()
    assert full["env_steps"] == resumed["env_steps"] == 600

    def rows(run_dir):
        return [{k: v for k, v in r.items() if k != "wall_time"} for r in read_progress(run_dir)]

    assert rows(resumed["run_dir"]) == rows(full["run_dir"])


class FullBuffer:
    """A buffer with enough transitions whose batches are empty (the fake policies ignore them)."""

    def __len__(self):
        return 100

    def sample(self, size, device=None):
        return {}


def test_train_iter_counts_only_updates_that_changed_the_policy():
    class Policy:
        def __init__(self):
            self.calls = 0

        def learn(self, batch):
            self.calls += 1
            return {} if self.calls <= 3 else {"loss": 1.0}

    policy = Policy()
    policy.device = "cpu"
    learner = Learner({"batch_size": 4, "updates_per_step": 1.0, "log_every": 100}, policy, None, FullBuffer(), None,
                      start_step=0)
    assert learner.train(10, 5) == 2
    assert policy.calls == 5 and learner.train_iter == 2


@pytest.mark.parametrize("during_warmup", [False, True])
def test_no_model_training_or_evaluation_of_the_untouched_policy_during_warmup(tmp_path, during_warmup):
    cfg = compose_config("pendulum_mbpo", preset="debug",
                         sets=["evaluator.eval_freq=100", f"world_model.train_during_warmup={during_warmup}"])
    pipeline = SerialPipeline(cfg, out_dir=tmp_path, show_progress=False)
    trained_at, real_train = [], pipeline.world_model.train

    def recording_train(env_buffer, envstep, train_iter):
        trained_at.append(envstep)
        return real_train(env_buffer, envstep, train_iter)

    pipeline.world_model.train = recording_train
    result = pipeline.run()
    assert cfg.collector.warmup_steps == 200 and cfg.world_model.train_freq == 100
    with open(Path(result["run_dir"]) / "progress.csv") as handle:
        evaluated = [int(row["env_step"]) for row in csv.DictReader(handle)]
    if during_warmup:  # asked for: the model fits from its first batch on, and each fit is evaluated
        assert trained_at[:2] == [100, 200] and evaluated == [0, 100, 200, 300, 400]
    else:  # the first fit is at the end of warm-up, and the random policy is evaluated once, at 0
        assert trained_at[:2] == [200, 300] and evaluated == [0, 200, 300, 400]


def test_progress_bar_shows_the_models_loss_beside_the_return(tmp_path, capsys):
    cfg = compose_config("pendulum_mbpo", preset="debug")
    pipeline = SerialPipeline(cfg, out_dir=tmp_path, show_progress=True)
    assert pipeline.logger.progress_metric == "world_model/holdout_mse"
    pipeline.run()
    last_error = pipeline.logger.latest["world_model/holdout_mse"]
    final = capsys.readouterr().out.split("\r")[-1]  # the bar's last refresh
    assert (f"eval return {pipeline.last_eval['eval_return_mean']:.1f} ± {pipeline.last_eval['eval_return_std']:.1f}, "
            f"model holdout_mse {last_error:.3g}]") in final


def test_learner_flush_averages_metrics_that_first_appear_mid_window():
    class Logger:
        def __init__(self):
            self.logged = {}

        def log_scalars(self, prefix, metrics, step):
            self.logged.update({f"{prefix}/{k}": v for k, v in metrics.items()})

    class Policy:
        device = "cpu"

        def __init__(self):
            self.calls = 0

        def learn(self, batch):
            self.calls += 1
            return {"loss": 1.0} if self.calls < 3 else {"loss": 3.0, "expansion": 2.0 * self.calls}

    logger = Logger()
    learner = Learner({"batch_size": 4, "updates_per_step": 1.0, "log_every": 100}, Policy(), None, FullBuffer(),
                      logger, start_step=0)
    learner.train(10, 4)
    learner.flush(10)
    assert logger.logged == {"policy/loss": 2.0, "policy/expansion": 7.0}  # (6 + 8) / 2 over the two that had it


def rollout_lengths(tmp_path, name, *sets):
    cfg = compose_config(name, preset="debug", sets=list(sets))
    result = serial_pipeline(cfg, out_dir=tmp_path, show_progress=False)
    with open(Path(result["run_dir"]) / "progress.csv") as handle:
        return [float(row["rollout_length"]) for row in csv.DictReader(handle) if row.get("rollout_length")]


def test_the_rollout_length_schedule_drives_dream_training_and_is_in_progress(tmp_path):
    schedule = ("world_model.rollout_length_scheduler={'type': 'linear', 'rollout_start_step': 0, "
                "'rollout_end_step': 400, 'rollout_length_min': 1, 'rollout_length_max': 10}")
    lengths = rollout_lengths(tmp_path, "pendulum_dreamerv3", schedule, "env_steps=400", "evaluator.eval_freq=50")
    assert lengths[0] < lengths[-1] == 10.0 and lengths == sorted(lengths)
    assert len(set(lengths)) >= 4


@pytest.mark.parametrize("name", ["pendulum_mbpo", "pendulum_steve"])
def test_dyna_and_hybrid_runs_have_the_rollout_length_column(tmp_path, name):
    assert rollout_lengths(tmp_path, name)


@pytest.mark.parametrize("name", ["pendulum_pets", "pendulum_tdmpc"])
def test_a_planner_run_logs_its_planning_horizon_as_the_rollout_length(tmp_path, name):
    """The model's schedule (0 for pets' unused imagination buffer, 15 for the latent model's
    Dream rollouts) is not what a planner imagines: its horizon is."""
    cfg = compose_config(name, preset="debug")
    lengths = rollout_lengths(tmp_path, name)
    assert lengths and set(lengths) == {float(cfg.policy.horizon)}
    assert cfg.policy.horizon != cfg.world_model.rollout_length_scheduler.rollout_length


def test_a_run_saved_with_the_old_dreamer_horizon_resumes(tmp_path, capsys):
    from wm_app.cli import main
    from workers.checkpoint import config_fingerprint, upgrade_config

    assert main(["train", "pendulum_dreamerv3", "--preset", "debug", "--no-progress", "--out", str(tmp_path),
                 "--env-steps", "200"]) == 0
    run_dir = next((tmp_path / "pendulum_dreamerv3").iterdir())
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    cfg = json.loads(state["config"])  # as an older version wrote it: the horizon on the policy
    cfg["policy"]["horizon"] = cfg["world_model"].pop("rollout_length_scheduler")["rollout_length"]
    state["config"] = json.dumps(cfg)
    state["fingerprint"] = config_fingerprint(state["config"])
    torch.save(state, run_dir / "checkpoint.pt")
    (run_dir / "config.json").write_text(json.dumps(cfg, indent=2))
    capsys.readouterr()
    assert main(["train", "--resume", str(run_dir), "--env-steps", "300"]) == 0
    out = capsys.readouterr().out
    assert "policy.horizon 5 is now world_model.rollout_length_scheduler (constant 5)" in out
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["world_model"]["rollout_length_scheduler"] == {"type": "constant", "rollout_length": 5}
    assert "horizon" not in saved["policy"]
    assert upgrade_config(saved) == []  # an up-to-date config is left as it is


def test_a_start_that_fails_after_the_run_directory_is_made_removes_it(tmp_path, monkeypatch):
    import workers.pipeline

    def broken_collector(*args, **kwargs):
        raise RuntimeError("env factory failed")

    monkeypatch.setattr(workers.pipeline, "SerialCollector", broken_collector)
    with pytest.raises(RuntimeError, match="env factory failed"):
        SerialPipeline(compose_config("pendulum_sac", preset="debug"), out_dir=tmp_path, show_progress=False)
    assert not any(tmp_path.rglob("*"))


@pytest.mark.parametrize("name", ["pendulum_tdmpc", "pendulum_sac"])
def test_how_often_evaluation_runs_does_not_change_training(tmp_path, name):
    """Evaluations use their own env seeds, generators and planner state: evaluating every 50 or
    every 100 env steps gives the same returns at the steps both evaluate, and the same policy."""
    def run(eval_freq):
        cfg = compose_config(name, preset="debug", sets=[f"evaluator.eval_freq={eval_freq}"], env_steps=300)
        result = serial_pipeline(cfg, out_dir=tmp_path / str(eval_freq), show_progress=False)
        rows = {int(r["env_step"]): r["eval_return_mean"] for r in read_progress(result["run_dir"])}
        state = load_checkpoint(Path(result["run_dir"]) / "checkpoint.pt")["policy"]
        return rows, state

    (often, often_state), (seldom, seldom_state) = run(50), run(100)
    assert len(often) > len(seldom) >= 3
    assert all(often[step] == value for step, value in seldom.items())
    torch.testing.assert_close(often_state, seldom_state, rtol=0, atol=0)
