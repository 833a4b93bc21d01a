"""A disk that fills during a run: every message is one line naming the file and the reason,
no partial file stays behind, and what was complete before is kept."""
import builtins
import struct

import pytest
import tensorboardX.record_writer
from tensorboardX.proto import event_pb2

import workers.checkpoint
import workers.logger
from wm_app.cli import main
from workers.checkpoint import load_checkpoint

NO_SPACE = OSError(28, "No space left on device")


class FillingFile:
    """A writable binary file that takes ``room`` bytes, then fails as a full disk does."""

    def __init__(self, handle, room):
        self.handle, self.room = handle, room

    def write(self, data):
        size = len(data) if isinstance(data, str) else len(memoryview(data).cast("B"))
        if size > self.room:
            raise NO_SPACE
        self.room -= size
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


def fill_on_open(monkeypatch, module, suffix, room):
    """Files whose names end with ``suffix`` opened by ``module`` take ``room`` bytes, then fail."""
    real_open = builtins.open

    def filling_open(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        return FillingFile(handle, room) if str(path).endswith(suffix) else handle

    monkeypatch.setattr(module, "open", filling_open, raising=False)


def train(tmp_path, *extra):
    return main(["train", "pendulum_sac", "--preset", "debug", "--no-progress", "--out", str(tmp_path), *extra])


def run_dir_of(tmp_path):
    return next((tmp_path / "pendulum_sac").iterdir())


def read_scalars(path):
    """(tag, step, value) of every scalar in a TensorBoard event file (TFRecord framing)."""
    data, scalars, pos = path.read_bytes(), [], 0
    while pos + 12 <= len(data):
        (length,) = struct.unpack("<Q", data[pos:pos + 8])
        event = event_pb2.Event.FromString(data[pos + 12:pos + 12 + length])
        pos += 12 + length + 4
        scalars.extend((v.tag, event.step, v.simple_value) for v in event.summary.value)
    return scalars


def test_events_are_written_and_readable(tmp_path, capsys):
    assert train(tmp_path) == 0
    run_dir = run_dir_of(tmp_path)
    scalars = read_scalars(next(run_dir.glob("events.out.tfevents.*")))
    evals = [(step, value) for tag, step, value in scalars if tag == "eval/return_mean"]
    rows = (run_dir / "progress.csv").read_text().splitlines()[1:]
    assert [step for step, _ in evals] == [int(row.split(",")[0]) for row in rows]
    assert evals[-1][1] == pytest.approx(float(rows[-1].split(",")[3]), rel=1e-6)
    assert any(tag.startswith("policy/") for tag, _, _ in scalars)


@pytest.mark.parametrize("room", [0, 3])  # full from the event file's first record, or from its fourth
def test_a_full_disk_while_writing_events_is_one_line_and_keeps_the_checkpoint(room, tmp_path, capsys, monkeypatch):
    assert train(tmp_path, "--env-steps", "300", "--set", "checkpoint_every=100") == 0
    run_dir = run_dir_of(tmp_path)
    saved = load_checkpoint(run_dir / "checkpoint.pt")["env_step"]
    capsys.readouterr()
    real_write, records = tensorboardX.record_writer.RecordWriter.write, []

    def full(self, data):
        records.append(data)
        if len(records) > room:
            raise NO_SPACE
        return real_write(self, data)

    monkeypatch.setattr(tensorboardX.record_writer.RecordWriter, "write", full)
    assert main(["train", "--resume", str(run_dir), "--env-steps", "600", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "cannot write" in err and "events.out.tfevents" in err and "No space left on device" in err
    assert f"its checkpoint at env step {saved} can be resumed" in err
    assert load_checkpoint(run_dir / "checkpoint.pt")["env_step"] == saved
    assert not list(run_dir.rglob("*.tmp"))


def test_a_full_disk_while_writing_progress_keeps_the_previous_file(tmp_path, capsys, monkeypatch):
    assert train(tmp_path, "--env-steps", "300") == 0
    run_dir = run_dir_of(tmp_path)
    before = (run_dir / "progress.csv").read_text()
    capsys.readouterr()
    fill_on_open(monkeypatch, workers.logger, ".csv.tmp", 10)
    assert main(["train", "--resume", str(run_dir), "--env-steps", "600", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "progress.csv': No space left on device" in err
    assert (run_dir / "progress.csv").read_text() == before
    assert not list(run_dir.rglob("*.tmp"))


def test_a_full_disk_inside_torch_save_names_the_reason_not_a_zip_error(tmp_path, capsys, monkeypatch):
    assert train(tmp_path, "--env-steps", "200") == 0
    run_dir = run_dir_of(tmp_path)
    capsys.readouterr()
    fill_on_open(monkeypatch, workers.checkpoint, ".tmp", 5000)
    assert main(["train", "--resume", str(run_dir), "--env-steps", "300", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "No space left on device; the previous checkpoint is kept" in err and "enforce" not in err
    assert not list(run_dir.rglob("*.tmp")) and not (run_dir / ".checkpoint.pt.new").exists()
    assert load_checkpoint(run_dir / "checkpoint.pt")["env_step"] == 200
