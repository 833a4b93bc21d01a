import numpy as np
import pytest
import torch

from workers.buffer import ReplayBuffer
from workers.collector import SerialCollector


def push_steps(buffer, steps, width=1, start=0, terminal_at=()):
    for t in range(start, start + steps):
        obs = np.full((width, 2), t, np.float32)
        term = np.array([t in terminal_at] * width)
        buffer.push(obs, np.zeros((width, 1)), np.full(width, t), obs + 0.5, term, np.zeros(width, bool))


def test_ring_buffer_overwrites_oldest():
    buffer = ReplayBuffer(5, (2,), (1,))
    push_steps(buffer, 8)
    assert len(buffer) == 5
    assert sorted(buffer.data["reward"].tolist()) == [3, 4, 5, 6, 7]


def test_sample_returns_tensors_with_float_flags():
    buffer = ReplayBuffer(10, (2,), (1,), seed=1)
    push_steps(buffer, 10, terminal_at=(3,))
    batch = buffer.sample(32)
    assert batch["obs"].shape == (32, 2) and batch["action"].shape == (32, 1)
    assert batch["terminated"].dtype == torch.float32 and batch["reward"].shape == (32,)
    assert torch.allclose(batch["next_obs"], batch["obs"] + 0.5)


def test_sample_draws_only_written_rows_uniformly():
    buffer = ReplayBuffer(100, (2,), (1,), seed=2)
    push_steps(buffer, 4)  # rewards 0..3 in a buffer of 100 rows
    rewards = buffer.sample(4000)["reward"]
    counts = torch.bincount(rewards.long(), minlength=4)
    assert counts.sum() == 4000 and counts.shape == (4,)  # no unwritten (zero) rows beyond the four
    assert (counts > 900).all() and (counts < 1100).all()  # about 1000 each


def test_same_seed_same_samples():
    a, b = ReplayBuffer(10, (2,), (1,), seed=3), ReplayBuffer(10, (2,), (1,), seed=3)
    push_steps(a, 10)
    push_steps(b, 10)
    assert torch.equal(a.sample(16)["obs"], b.sample(16)["obs"])


def test_push_checks_shapes():
    buffer = ReplayBuffer(10, (2,), (1,))
    with pytest.raises(ValueError, match="'obs' must have shape"):
        buffer.push(np.zeros((2, 3)), np.zeros((2, 1)), np.zeros(2), np.zeros((2, 2)), np.zeros(2), np.zeros(2))


def test_sequences_time_major_with_episode_starts():
    buffer = ReplayBuffer(40, (2,), (1,), seed=0)
    push_steps(buffer, 30, width=2, terminal_at=(9, 19))
    seq = buffer.sample_sequences(8, 6)
    assert seq["obs"].shape == (6, 8, 2) and seq["is_first"].shape == (6, 8)
    # consecutive steps of one env slot
    assert torch.all(seq["obs"][1:, :, 0] - seq["obs"][:-1, :, 0] == 1)
    assert torch.all(seq["is_first"][0] == 1)
    starts = seq["obs"][:, :, 0]
    expected = (starts == 10) | (starts == 20)
    assert torch.equal(seq["is_first"][1:].bool(), expected[1:])


def test_is_first_follows_a_truncated_step_as_well_as_a_terminated_one():
    buffer = ReplayBuffer(20, (2,), (1,), seed=0)
    for t in range(12):
        obs = np.full((1, 2), t, np.float32)
        # step 4 ends at the time limit only, step 8 terminates
        buffer.push(obs, np.zeros((1, 1)), np.full(1, t), obs + 0.5, np.array([t == 8]), np.array([t == 4]))
    seq = buffer.sample_sequences(4, 12)  # the whole stored run, from step 0
    assert torch.all(seq["obs"][:, :, 0] == torch.arange(12.0).unsqueeze(1))
    expected = torch.zeros(12)
    expected[[0, 5, 9]] = 1.0  # the sequence start, after the truncation, after the termination
    assert torch.equal(seq["is_first"], expected.unsqueeze(1).expand(12, 4))


def test_sequences_do_not_cross_the_write_position():
    buffer = ReplayBuffer(20, (2,), (1,), seed=0)
    push_steps(buffer, 37, width=2)  # wrapped: steps 27..36 are stored
    seq = buffer.sample_sequences(64, 10)
    assert torch.all(seq["obs"][0, :, 0] == 27) and torch.all(seq["obs"][-1, :, 0] == 36)


def test_set_capacity_keeps_newest():
    buffer = ReplayBuffer(10, (2,), (1,))
    push_steps(buffer, 10)
    buffer.set_capacity(4)
    assert sorted(buffer.data["reward"][:4].tolist()) == [6, 7, 8, 9]
    push_steps(buffer, 1, start=10)
    assert len(buffer) == 4 and 10 in buffer.data["reward"]


def test_save_load_and_state_dict_round_trip(tmp_path):
    buffer = ReplayBuffer(10, (2,), (1,), seed=5)
    push_steps(buffer, 13, terminal_at=(4,))
    buffer.save(tmp_path / "buffer.npz")
    other = ReplayBuffer(1, (2,), (1,))
    other.load(tmp_path / "buffer.npz")
    assert len(other) == 10 and other.pos == buffer.pos
    for key in buffer.data:
        assert np.array_equal(other.data[key], buffer.data[key])
    third = ReplayBuffer(1, (2,), (1,))
    third.load_state_dict(buffer.state_dict())
    assert torch.equal(third.sample(8)["obs"], buffer.sample(8)["obs"])


class RandomPolicy:
    device = torch.device("cpu")

    def collect(self, obs):
        return torch.zeros(obs.shape[0], 1)

    def reset(self, mask=None, *, evaluation=False):
        pass


def test_collector_stores_true_final_observation_of_truncated_episodes():
    buffer = ReplayBuffer(100, (3,), (1,))
    env_cfg = dict(id="Pendulum-v1", kwargs={}, max_episode_steps=5, wrappers=[])
    collector = SerialCollector(dict(env_num=2, vector="sync", warmup_steps=0), env_cfg, RandomPolicy(),
                                buffer, seed=0)
    for _ in range(12):
        collector.step()
    n = len(buffer)
    truncated = buffer.data["truncated"][:n]
    assert truncated.sum() == 4 and not buffer.data["terminated"][:n].any()
    obs, next_obs = buffer.data["obs"][:n], buffer.data["next_obs"][:n]
    # Pendulum obs are (cos, sin, velocity): the final obs continues the episode, it is not a reset obs.
    for row in np.flatnonzero(truncated):
        assert np.abs(next_obs[row, :2] - obs[row, :2]).max() < 0.5
        following = row + 2  # same env slot, next step: a fresh episode starts from the reset obs
        assert not np.allclose(obs[following], next_obs[row])
    # within an episode, next_obs of a step is the obs of the slot's next step
    assert np.allclose(next_obs[0], obs[2]) and np.allclose(next_obs[1], obs[3])
    assert collector.envstep == 24
    collector.close()


def test_collector_stores_terminated_apart_from_truncated():
    buffer = ReplayBuffer(500, (4,), ())
    policy = RandomPolicy()
    collector = SerialCollector(dict(env_num=1, vector="sync", warmup_steps=10**6),
                                dict(id="CartPole-v1", kwargs={}, max_episode_steps=None, wrappers=[]),
                                policy, buffer, seed=0)
    for _ in range(200):
        collector.step()
    n = len(buffer)
    assert buffer.data["terminated"][:n].any() and not buffer.data["truncated"][:n].any()
    collector.close()


def test_disk_buffer_matches_memory_buffer_and_cleans_up(tmp_path):
    memory = ReplayBuffer(12, (2,), (1,), seed=4)
    disk = ReplayBuffer(12, (2,), (1,), seed=4, storage="disk", directory=tmp_path)
    for buffer in (memory, disk):
        push_steps(buffer, 17, width=2, terminal_at=(5,))
    assert isinstance(disk.data["obs"], np.memmap)
    for key in memory.data:
        assert np.array_equal(memory.data[key], disk.data[key])
    assert torch.equal(memory.sample(9)["obs"], disk.sample(9)["obs"])
    assert torch.equal(memory.sample_sequences(3, 4)["obs"], disk.sample_sequences(3, 4)["obs"])
    disk.set_capacity(8)
    assert len(disk) == 8 and len(list(disk.directory.iterdir())) == 6  # the old files are gone
    restored = ReplayBuffer(1, (2,), (1,), storage="disk", directory=tmp_path)
    restored.load_state_dict(disk.state_dict())
    assert torch.equal(restored.sample(5)["obs"], disk.sample(5)["obs"])
    folder = disk.directory
    disk.close()
    assert not folder.exists()


def test_disk_buffer_through_the_pipeline_resumes_exactly(tmp_path):
    from tests.workers.test_resume import progress_without_wall_time
    from wm_app.experiment import compose_config
    from workers.pipeline import SerialPipeline

    sets = ["buffer.storage='disk'", f"buffer.directory='{tmp_path / 'replay'}'"]
    full = SerialPipeline(compose_config("pendulum_sac", "debug", sets), out_dir=tmp_path / "a",
                          show_progress=False).run()
    first = SerialPipeline(compose_config("pendulum_sac", "debug", sets, env_steps=250), out_dir=tmp_path / "b",
                           show_progress=False).run()
    resumed = SerialPipeline.resume(first["run_dir"], env_steps=600, show_progress=False).run()
    assert progress_without_wall_time(resumed["run_dir"]) == progress_without_wall_time(full["run_dir"])
    assert list((tmp_path / "replay").iterdir()) == []  # every run removed its buffer files


def test_the_read_api_world_models_use_gives_stored_rows_and_the_newest_in_order():
    from wm_core.protocols import TransitionBuffer

    buffer = ReplayBuffer(5, (1,), (1,))
    assert isinstance(buffer, TransitionBuffer)
    for step in range(7):  # wraps: rows hold steps 5, 6, 2, 3, 4
        buffer.push(np.full((1, 1), step), np.zeros((1, 1)), np.array([step]), np.full((1, 1), step + 1),
                    np.array([False]), np.array([False]))
    assert sorted(buffer.transitions()["reward"].tolist()) == [2, 3, 4, 5, 6]
    assert buffer.transitions(buffer.newest(3))["reward"].tolist() == [4, 5, 6]
    assert buffer.transitions(buffer.newest(99), keys=("obs",))["obs"][:, 0].tolist() == [2, 3, 4, 5, 6]
    assert set(buffer.transitions(np.array([0]))) == {"obs", "action", "reward", "next_obs", "terminated"}
