"""Truncated backpropagation through time for ``dreamerv3`` (``world_model.tbptt``): buffer streams
of consecutive chunks, the posterior state carried from one batch to the next, resets at episode
starts, checkpoint state and a short training run."""
import io
import math

import numpy as np
import pytest
import torch

from tests.workers.test_resume import progress_without_wall_time, run
from tests.worldmodels.test_dreamerv3 import VectorSpec, make, random_buffer
from wm_core.config import ConfigError
from workers.buffer import ReplayBuffer
from workers.pipeline import SerialPipeline

LENGTH = 8


def step_buffer(steps, width=1, capacity=1000, terminal_every=None):
    """A buffer whose obs of slot s at step t is ``[t, s]`` (next_obs ``[t + 1, s]``)."""
    buffer = ReplayBuffer(capacity, (2,), (1,), seed=3)
    push_steps(buffer, 0, steps, width, terminal_every)
    return buffer


def push_steps(buffer, first, steps, width=1, terminal_every=None):
    slots = np.arange(width, dtype=np.float32)
    for t in range(first, first + steps):
        obs = np.stack([np.full(width, t, np.float32), slots], -1)
        next_obs = obs + np.array([1.0, 0.0], np.float32)
        ended = np.full(width, terminal_every is not None and t % terminal_every == terminal_every - 1)
        truncated = ended & (t // terminal_every % 2 == 1) if terminal_every else ended  # both end episodes
        buffer.push(obs, np.zeros((width, 1)), np.zeros(width), next_obs, ended & ~truncated, truncated)


def chunk_positions(batch):
    """Each row's (first step, slot), read off the encoded observations."""
    first = batch["obs"][0]
    return first[:, 0].long().tolist(), first[:, 1].long().tolist()


def test_streams_return_consecutive_chunks_and_start_over_at_the_newest_step():
    buffer = step_buffer(60, width=2, terminal_every=11)
    streams = None
    previous = None
    restarts = 0
    for _ in range(40):
        batch, streams = buffer.sample_sequence_streams(streams, 4, LENGTH)
        steps, slots = chunk_positions(batch)
        # every chunk is LENGTH consecutive steps of one slot
        expected = torch.tensor(steps).float() + torch.arange(LENGTH).float()[:, None]
        assert torch.equal(batch["obs"][..., 0], expected)
        assert torch.equal(batch["obs"][..., 1], torch.tensor(slots).float().expand(LENGTH, -1))
        ends = (batch["obs"][..., 0] % 11 == 0).float()  # the step after a terminal one starts an episode
        assert torch.equal(batch["is_first"][1:], ends[1:])
        assert torch.equal(streams["step"], torch.tensor(steps) + LENGTH)
        if previous is not None:
            for row in range(4):
                if steps[row] == previous[0][row] + LENGTH and slots[row] == previous[1][row]:
                    assert batch["is_first"][0, row] == ends[0, row]  # a continued row resets only at an episode start
                else:
                    assert previous[0][row] + 2 * LENGTH > 60  # it started over only where it ran out of data
                    assert batch["is_first"][0, row] == 1
                    restarts += 1
        previous = (steps, slots)
    assert restarts > 0


def test_streams_start_over_where_their_data_were_overwritten():
    buffer = step_buffer(30, capacity=30)
    streams = {"slot": torch.tensor([0]), "step": torch.tensor([3])}
    batch, after = buffer.sample_sequence_streams(streams, 1, LENGTH)
    assert chunk_positions(batch)[0] == [3] and batch["is_first"][0, 0] == 0
    push_steps(buffer, 30, 5)  # steps 0-4 are overwritten: step 2 (before the stream's next step) is gone
    batch, _ = buffer.sample_sequence_streams(streams, 1, LENGTH)
    assert batch["is_first"][0, 0] == 1 and 5 <= chunk_positions(batch)[0][0] <= 35 - LENGTH
    batch, _ = buffer.sample_sequence_streams(after, 1, LENGTH)  # steps 10-18 are still stored
    assert chunk_positions(batch)[0] == [11] and batch["is_first"][0, 0] == 0


def test_stream_positions_survive_the_buffer_state_dict():
    buffer = step_buffer(50)
    _, streams = buffer.sample_sequence_streams(None, 3, LENGTH)
    other = ReplayBuffer(1, (2,), (1,))
    other.load_state_dict(buffer.state_dict())
    first, _ = buffer.sample_sequence_streams(streams, 3, LENGTH)
    second, _ = other.sample_sequence_streams(streams, 3, LENGTH)
    assert torch.equal(first["obs"], second["obs"]) and torch.equal(first["is_first"], second["is_first"])


def deterministic(monkeypatch, model):
    """Posterior modes instead of draws, so that chunked and one-pass filtering are comparable."""
    monkeypatch.setattr(model, "generator", None)
    return model


def concat(first, second):
    return {key: torch.cat([first[key], second[key]]) for key in first}


def continued_rows(before, after):
    return ((after["step"] - LENGTH == before["step"]) & (after["slot"] == before["slot"])).nonzero().flatten()


def test_carried_state_is_the_state_of_one_pass_over_both_chunks(monkeypatch):
    model = deterministic(monkeypatch, make(tbptt=True, lr=0.0, precision="fp32", sequence_length=LENGTH))
    buffer = random_buffer(VectorSpec, steps=400, episode=1000)  # no episode start inside
    first = model.sample_batch(buffer)
    streams_first = dict(model.streams)
    model.train_step(first)
    carried = model.carried
    second = model.sample_batch(buffer)
    rows = continued_rows(streams_first, model.streams)
    assert len(rows) == 3 and not second["is_first"][0].any()
    _, _, whole = model.loss(concat(first, second))
    assert torch.allclose(carried[0], whole.deter[LENGTH - 1], atol=1e-5)
    assert torch.equal(carried[1], whole.stoch[LENGTH - 1])
    _, _, chunk = model.loss(second, carried)
    assert torch.allclose(chunk.deter, whole.deter[LENGTH:], atol=1e-5)
    assert torch.equal(chunk.stoch, whole.stoch[LENGTH:])
    model.train_step(second)  # lr 0: the networks are those of the one-pass filtering
    assert torch.allclose(model.carried[0], whole.deter[-1], atol=1e-5)
    # gradients stop at the batch boundary
    assert not model.carried[0].requires_grad and not model.carried[1].requires_grad


def test_an_episode_start_inside_the_second_chunk_resets_as_within_a_sequence(monkeypatch):
    model = deterministic(monkeypatch, make(tbptt=True, lr=0.0, precision="fp32", sequence_length=LENGTH))
    buffer = random_buffer(VectorSpec, steps=400, episode=13)
    found = 0
    first, first_start = model.sample_batch(buffer), None
    for _ in range(10):
        streams_first = dict(model.streams)
        model.train_step(first)
        carried = model.carried
        second = model.sample_batch(buffer)
        rows = continued_rows(streams_first, model.streams)
        _, _, whole = model.loss(concat(first, second), first_start)
        _, _, chunk = model.loss(second, carried)
        other_start = (torch.randn_like(carried[0]), carried[1].roll(1, dims=-1))
        _, _, other = model.loss(second, other_start)
        for row in rows.tolist():
            assert torch.allclose(chunk.deter[:, row], whole.deter[LENGTH:, row], atol=1e-5)
            starts = second["is_first"][:, row].nonzero().flatten().tolist()
            if starts:  # from the episode start on, the carried state no longer matters
                assert torch.equal(chunk.deter[starts[0]:, row], other.deter[starts[0]:, row])
            if starts and starts[0] > 0:  # before it, the row goes on from the carried state
                assert not torch.allclose(chunk.deter[0, row], other.deter[0, row])
                found += 1
        first, first_start = second, carried
    assert found > 0


def checkpoint(state):
    handle = io.BytesIO()
    torch.save(state, handle)
    handle.seek(0)
    return torch.load(handle, weights_only=True)


def test_tbptt_state_round_trips_through_state_dict():
    model = make(tbptt=True, sequence_length=LENGTH)
    buffer = random_buffer(VectorSpec, steps=200, episode=13)
    for _ in range(3):
        model.train_step(model.sample_batch(buffer))
    saved, saved_buffer = checkpoint(model.state_dict()), checkpoint(buffer.state_dict())
    assert saved["tbptt_streams"] is not None and saved["tbptt_state"]["deter"].shape == (3, 16)
    losses = [model.train_step(model.sample_batch(buffer))["loss"] for _ in range(3)]
    restored, restored_buffer = make(tbptt=True, sequence_length=LENGTH, seed=5), random_buffer(VectorSpec, steps=1)
    restored.load_state_dict(saved)
    restored_buffer.load_state_dict(saved_buffer)
    assert torch.equal(restored.carried[0], saved["tbptt_state"]["deter"])
    assert torch.equal(restored.streams["step"], saved["tbptt_streams"]["step"])
    assert [restored.train_step(restored.sample_batch(restored_buffer))["loss"] for _ in range(3)] == losses
    assert torch.equal(restored.carried[0], model.carried[0])


def test_tbptt_off_keeps_no_stream_state():
    model = make(sequence_length=LENGTH)
    model.train_step(model.sample_batch(random_buffer(VectorSpec)))
    state = model.state_dict()
    assert model.carried is None and state["tbptt_streams"] is None and state["tbptt_state"] is None


def test_bad_tbptt_values_are_named():
    with pytest.raises(ConfigError, match="'world_model.tbptt' expects a bool"):
        make(tbptt="yes")

    class SequencesOnly:
        row_width = 1

        def sample_sequences(self, *args, **kwargs):
            raise AssertionError("not reached")

    with pytest.raises(ConfigError, match="world_model.tbptt needs a buffer with sample_sequence_streams"):
        make(tbptt=True).sample_batch(SequencesOnly())


def test_debug_run_with_tbptt_trains_with_finite_losses_and_resumes_exactly(tmp_path):
    sets = ["world_model.tbptt=True"]
    full = run("cartpole_dreamerv3", tmp_path / "full", env_steps=200, sets=sets)
    reference = progress_without_wall_time(full["run_dir"])
    trained = [row for row in reference if row["world_model/loss"]]
    assert trained and all(math.isfinite(float(row["world_model/loss"])) for row in trained)
    assert float(trained[-1]["world_model/carried_rows"]) > 0.5  # most rows go on from the previous batch
    first = run("cartpole_dreamerv3", tmp_path / "stop", env_steps=163, sets=sets)
    resumed = SerialPipeline.resume(first["run_dir"], env_steps=200, show_progress=False).run()
    assert progress_without_wall_time(resumed["run_dir"]) == reference
