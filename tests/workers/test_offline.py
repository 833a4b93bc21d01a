"""Offline training: datasets (.npz, run directories, Minari files), export, the offline run
(no env steps, exact resume) and MOPO's reward penalty."""
import copy
import csv
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from wm_app.cli import main
from wm_app.experiment import compose_config
from workers.buffer import random_buffer
from workers.checkpoint import load_checkpoint
from workers.dataset import KEYS, DatasetError, dataset_buffer, read_dataset
from workers.pipeline import SerialPipeline
from worldmodels.mbpo import MbpoWorldModel


def progress(run_dir):
    with open(Path(run_dir) / "progress.csv") as handle:
        return [{k: v for k, v in row.items() if k != "wall_time" and not k.endswith("_seconds")}
                for row in csv.DictReader(handle)]


def write_dataset(path, steps=300, seed=0):
    """``steps`` random-policy Pendulum transitions as an .npz in the documented format."""
    buffer = random_buffer(gym.make("Pendulum-v1"), steps, seed=seed)
    arrays = buffer.transitions(keys=KEYS)
    np.savez(path, **arrays)
    return arrays


def offline_cfg(config, dataset, updates, *sets):
    return compose_config(config, preset="debug", sets=[f"offline.dataset={str(dataset)!r}",
                                                          f"offline.updates={updates}", "num_threads=1", *sets])


def test_an_offline_run_trains_on_the_dataset_and_takes_no_env_step(tmp_path):
    data = write_dataset(tmp_path / "d.npz")
    pipeline = SerialPipeline(offline_cfg("pendulum_sac", tmp_path / "d.npz", 60, "evaluator.eval_freq=30"),
                              out_dir=tmp_path / "runs", show_progress=False)
    result = pipeline.run()
    assert result["failure"] is None and result["offline"]
    assert result["env_steps"] == 60 and result["train_iter"] == 60  # one SAC update per update step
    assert [int(row["env_step"]) for row in progress(result["run_dir"])] == [0, 30, 60]
    assert len(pipeline.env_buffer) == len(data["reward"])  # nothing was added to the dataset
    np.testing.assert_array_equal(pipeline.env_buffer.transitions(keys=KEYS)["obs"], data["obs"])


def test_an_offline_run_resumes_exactly(tmp_path):
    write_dataset(tmp_path / "d.npz")
    cfg = offline_cfg("pendulum_mbpo", tmp_path / "d.npz", 120, "evaluator.eval_freq=40",
                      "world_model.reward_penalty=1.0", "world_model.train_freq=50", "world_model.rollout_freq=50")
    pipeline = SerialPipeline(cfg, out_dir=tmp_path / "full", show_progress=False)
    full = pipeline.run()
    rows = progress(full["run_dir"])
    assert pipeline.logger.latest["imagination/reward_penalty_mean"] > 0  # MOPO's penalty was applied
    stopped = copy.deepcopy(cfg)
    stopped.offline.updates = 47
    first = SerialPipeline(stopped, out_dir=tmp_path / "part", show_progress=False).run()
    resumed = SerialPipeline.resume(first["run_dir"], env_steps=120, show_progress=False).run()
    assert resumed["env_steps"] == 120
    assert progress(resumed["run_dir"]) == rows


def test_export_writes_the_runs_buffer_oldest_first_and_it_reads_back(tmp_path):
    cfg = compose_config("pendulum_sac", preset="debug", env_steps=150,
                         sets=["buffer.capacity=100", "learner.batch_size=16", "collector.warmup_steps=150",
                               "num_threads=1"])
    run = SerialPipeline(cfg, out_dir=tmp_path, show_progress=False).run()
    assert main(["export", run["run_dir"], "--out", str(tmp_path / "data.npz")]) == 0
    data = read_dataset(tmp_path / "data.npz")
    assert len(data["reward"]) == 100 and int(data["row_width"]) == 1
    buffer = load_checkpoint(Path(run["run_dir"]) / "checkpoint.pt")["env_buffer"]
    pos = int(buffer["pos"])  # the ring wrapped: its oldest row sits at pos
    np.testing.assert_array_equal(data["obs"], np.roll(buffer["data"]["obs"].numpy(), -pos, axis=0))
    ends = data["terminated"] | data["truncated"]
    np.testing.assert_array_equal(data["next_obs"][:-1][~ends[:-1]], data["obs"][1:][~ends[:-1]])  # in time order
    np.testing.assert_array_equal(read_dataset(run["run_dir"])["obs"], data["obs"])  # the run directory itself


def test_a_minari_dataset_directory_is_read_episode_by_episode(tmp_path):
    h5py = pytest.importorskip("h5py")
    folder = tmp_path / "pendulum-random-v0" / "data"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    episodes = []
    with h5py.File(folder / "main_data.hdf5", "w") as handle:
        for k, steps in ((1, 4), (0, 3)):  # written out of order: read back by episode id
            obs = rng.normal(size=(steps + 1, 3)).astype(np.float32)
            group = handle.create_group(f"episode_{k}")
            group["observations"], group["actions"] = obs, rng.normal(size=(steps, 1)).astype(np.float32)
            group["rewards"] = rng.normal(size=steps)
            group["terminations"], group["truncations"] = np.zeros(steps, bool), np.arange(steps) == steps - 1
            episodes.append((k, obs))
    data = read_dataset(tmp_path / "pendulum-random-v0")
    first, second = sorted(episodes, key=lambda e: e[0])
    np.testing.assert_array_equal(data["obs"], np.concatenate([first[1][:-1], second[1][:-1]]))
    np.testing.assert_array_equal(data["next_obs"], np.concatenate([first[1][1:], second[1][1:]]))
    assert data["truncated"].sum() == 2 and len(data["reward"]) == 7
    buffer = dataset_buffer(data, gym.make("Pendulum-v1"), seed=0)
    assert len(buffer) == 7


def test_bad_datasets_get_one_clear_error(tmp_path):
    env = gym.make("Pendulum-v1")
    data = write_dataset(tmp_path / "d.npz", steps=20)
    np.savez(tmp_path / "no_reward.npz", **{k: v for k, v in data.items() if k != "reward"})
    with pytest.raises(DatasetError, match="lacks reward"):
        read_dataset(tmp_path / "no_reward.npz")
    np.savez(tmp_path / "short.npz", **dict(data, terminated=data["terminated"][:5]))
    with pytest.raises(DatasetError, match="'terminated' has shape"):
        read_dataset(tmp_path / "short.npz")
    np.savez(tmp_path / "wide.npz", **dict(data, obs=np.zeros((20, 4)), next_obs=np.zeros((20, 4))))
    with pytest.raises(DatasetError, match="'obs' rows have shape \\(4,\\).*observation space has shape \\(3,\\)"):
        dataset_buffer(read_dataset(tmp_path / "wide.npz"), env, seed=0)
    np.savez(tmp_path / "nan.npz", **dict(data, reward=np.full(20, np.nan)))
    with pytest.raises(DatasetError, match="'reward' holds non-finite"):
        read_dataset(tmp_path / "nan.npz")
    with pytest.raises(DatasetError, match="does not exist"):
        read_dataset(tmp_path / "missing.npz")
    with pytest.raises(DatasetError, match="neither a checkpoint.pt"):
        read_dataset(tmp_path)


def test_the_command_line_refuses_mixed_budgets_and_bad_datasets(tmp_path, capsys):
    assert main(["train", "pendulum_sac", "--updates", "10"]) == 2
    assert "--updates is the budget of an offline run" in capsys.readouterr().err
    assert main(["train", "pendulum_sac", "--offline", "x.npz", "--env-steps", "10"]) == 2
    assert "give its budget as --updates" in capsys.readouterr().err
    assert main(["train", "pendulum_sac", "--preset", "debug", "--offline", str(tmp_path / "none.npz"),
                 "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "none.npz' does not exist" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs" / "pendulum_sac").exists()  # a failed start leaves no run directory
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "x.npz")]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_mopo_penalty_subtracts_the_elites_uncertainty_from_imagined_rewards():
    env = gym.make("Pendulum-v1")
    cfg = dict(ensemble_size=3, elite_size=2, hidden_sizes=[16, 16], weight_decays=[1e-4] * 3, max_epochs=2,
               rollout_batch_size=32, rollout_length_scheduler=dict(type="constant", rollout_length=2),
               env_id="Pendulum-v1")

    class Zero:  # a policy that always pushes zero torque
        def collect(self, obs):
            return torch.zeros(obs.shape[0], 1)

    fills = {}
    for penalty in (0.0, 2.0):
        buffer = random_buffer(env, 300, seed=0)  # its sampling generator starts afresh
        model = MbpoWorldModel(dict(cfg, reward_penalty=penalty), env, seed=0)
        model.train(buffer, 300, 0)
        model.last_train_envstep = 300
        img = model.make_img_buffer(300)
        metrics = model.fill_img_buffer(Zero(), buffer, img, 300, 0)
        fills[penalty] = (model, img.transitions(keys=("obs", "action", "reward")), metrics)
    model, with_penalty, metrics = fills[2.0]
    _, without, _ = fills[0.0]
    np.testing.assert_array_equal(with_penalty["obs"], without["obs"])  # the same rollouts
    u = model.uncertainty(torch.as_tensor(without["obs"]), torch.as_tensor(without["action"])).numpy()
    np.testing.assert_allclose(with_penalty["reward"], without["reward"] - 2.0 * u, rtol=1e-5, atol=1e-5)
    assert metrics["reward_penalty_mean"] == pytest.approx(2.0 * u.mean(), rel=1e-4)
    obs, action = torch.as_tensor(without["obs"][:5]), torch.as_tensor(without["action"][:5])
    mean, logvar, _ = model.ensemble(torch.cat([obs, action], -1), model.ensemble.elites)
    expected = torch.exp(0.5 * logvar).norm(dim=-1).max(dim=0).values
    torch.testing.assert_close(model.uncertainty(obs, action), expected)
    model.cfg.uncertainty = "disagreement"
    torch.testing.assert_close(model.uncertainty(obs, action), mean.std(dim=0, unbiased=False).norm(dim=-1))


def test_mopo_settings_are_checked():
    from wm_core.config import ConfigError

    env = gym.make("Pendulum-v1")
    with pytest.raises(ConfigError, match="'world_model.uncertainty' must be one of max_std, disagreement"):
        MbpoWorldModel(dict(uncertainty="variance", hidden_sizes=[8]), env)
    with pytest.raises(ConfigError, match="world_model.reward_penalty must be >= 0"):
        MbpoWorldModel(dict(reward_penalty=-1.0, hidden_sizes=[8]), env)


@pytest.mark.parametrize("config,sets", [("pendulum_dreamerv3", []), ("pendulum_tdmpc", []),
                                         ("pendulum_steve", ["world_model.train_freq=20"])])
def test_dream_plan_and_hybrid_configs_train_offline(config, sets, tmp_path):
    """Learning starts at once offline (a model's learning_starts counts collected env steps)."""
    write_dataset(tmp_path / "d.npz", steps=400)
    pipeline = SerialPipeline(offline_cfg(config, tmp_path / "d.npz", 40, "evaluator.eval_freq=40",
                                          "evaluator.n_episodes=1", "env.max_episode_steps=50", *sets),
                              out_dir=tmp_path / "runs", show_progress=False)
    before = {k: v.detach().clone() for k, v in pipeline.world_model.nets.state_dict().items()}
    result = pipeline.run()
    assert result["failure"] is None and result["env_steps"] == 40 and len(pipeline.env_buffer) == 400
    after = pipeline.world_model.nets.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # the world model learned from the dataset


def test_resuming_an_offline_run_needs_no_dataset_and_extends_with_updates(tmp_path, capsys):
    write_dataset(tmp_path / "d.npz")
    first = SerialPipeline(offline_cfg("pendulum_sac", tmp_path / "d.npz", 30, "evaluator.eval_freq=30"),
                           out_dir=tmp_path / "runs", show_progress=False).run()
    (tmp_path / "d.npz").unlink()  # the checkpoint holds the dataset
    assert main(["train", "--resume", first["run_dir"], "--updates", "50", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "finished offline at update step 50" in out
    assert [int(row["env_step"]) for row in progress(first["run_dir"])] == [0, 30, 50]
    assert main(["train", "--resume", first["run_dir"], "--updates", "40"]) == 2
    assert "stopped at update step 50, at or past its budget of 40; pass --updates" in capsys.readouterr().err
