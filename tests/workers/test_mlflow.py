"""logger.backends: an MLflow run beside TensorBoard and progress.csv, read back through MLflow's own
client; a resume continues it; compare puts every pair in one experiment; without "mlflow" nothing
of MLflow is written."""
import csv
import json
import sys

import pytest
from mlflow.tracking import MlflowClient

from wm_app.cli import main
from wm_app.compare import compare
from workers.logger import MLFLOW_RUN_FILE, local_mlflow_store, read_progress

# MLflow's SQL store uses loader options that SQLAlchemy 2.1 deprecates
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

WITH_MLFLOW = "logger.backends=['tensorboard','csv','mlflow']"


def train(out, *args):
    return main(["train", "pendulum_sac", "--preset", "debug", "--no-progress", "--out", str(out), *args])


def client_of(out):
    return MlflowClient(tracking_uri=local_mlflow_store(out / "mlruns")[0])


def test_a_run_is_an_mlflow_run_and_its_resume_continues_it(tmp_path):
    out = tmp_path / "runs"
    assert train(out, "--env-steps", "300", "--set", WITH_MLFLOW) == 0
    (run_dir,) = (out / "pendulum_sac").iterdir()
    client = client_of(out)
    experiment = client.get_experiment_by_name("pendulum_sac")  # the config's exp_name
    (run,) = client.search_runs([experiment.experiment_id])
    run_id = run.info.run_id
    assert json.loads((run_dir / MLFLOW_RUN_FILE).read_text())["run_id"] == run_id
    assert run.info.status == "FINISHED" and run.info.run_name == run_dir.name
    params = run.data.params
    assert params["policy.type"] == "sac" and params["env.id"] == "Pendulum-v1"
    assert params["env_steps"] == "300" and params["collector.warmup_steps"] == "200"
    assert params["logger.backends"] == "['tensorboard', 'csv', 'mlflow']"
    rows = read_progress(run_dir)
    history = client.get_metric_history(run_id, "eval/return_mean")
    assert [m.step for m in history] == [row["env_step"] for row in rows] == [0, 300]  # env steps
    assert [m.value for m in history] == pytest.approx([row["eval_return_mean"] for row in rows])
    assert client.get_metric_history(run_id, "policy/critic_loss")  # the TensorBoard scalars, same names
    assert {a.path for a in client.list_artifacts(run_id)} == {"checkpoint.pt", "progress.csv"}
    assert list(run_dir.glob("events.out.tfevents.*"))  # TensorBoard too

    assert main(["train", "--resume", str(run_dir), "--env-steps", "600", "--no-progress"]) == 0
    (resumed,) = client.search_runs([experiment.experiment_id])
    assert resumed.info.run_id == run_id and resumed.info.status == "FINISHED"
    assert resumed.data.params["env_steps"] == "300"  # a param keeps its first value; the new budget is a tag
    assert resumed.data.tags["resumed.env_steps"] == "600"
    rows = read_progress(run_dir)
    history = client.get_metric_history(run_id, "eval/return_mean")
    assert [m.step for m in history] == [row["env_step"] for row in rows] == [0, 300, 600]
    assert history[-1].value == pytest.approx(rows[-1]["eval_return_mean"])
    artifact = client.download_artifacts(run_id, "progress.csv", str(tmp_path))
    assert open(artifact).read() == (run_dir / "progress.csv").read_text()  # the final one


def test_without_mlflow_nothing_of_mlflow_is_written_and_tensorboard_can_be_off(tmp_path):
    assert train(tmp_path / "default", "--env-steps", "250") == 0
    (run_dir,) = (tmp_path / "default" / "pendulum_sac").iterdir()
    assert not (tmp_path / "default" / "mlruns").exists() and not (run_dir / MLFLOW_RUN_FILE).exists()
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    assert train(tmp_path / "csv", "--env-steps", "250", "--set", "logger.backends=['csv']") == 0
    (csv_dir,) = (tmp_path / "csv" / "pendulum_sac").iterdir()
    assert {p.name for p in csv_dir.iterdir()} == {"config.json", "progress.csv", "checkpoint.pt"}
    drop_wall = [{k: v for k, v in row.items() if k != "wall_time"} for row in read_progress(run_dir)]
    assert [{k: v for k, v in row.items() if k != "wall_time"} for row in read_progress(csv_dir)] == drop_wall


@pytest.mark.parametrize("backends, message", [
    ("['tensorboard','csv','mlfow']", "config key 'logger.backends' has an unknown backend 'mlfow'; did you mean "
                                      "'mlflow'? (valid backends: tensorboard, csv, mlflow)"),
    ("['tensorboard','mlflow']", "config key 'logger.backends' must include 'csv'"),
    ("'mlflow'", "config key 'logger.backends' expects a list"),
])
def test_a_bad_backend_is_one_line(tmp_path, capsys, backends, message):
    assert train(tmp_path, "--set", f"logger.backends={backends}") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_mlflow_not_installed_is_one_line_naming_the_extra(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    assert main(["config", "pendulum_sac", "--set", WITH_MLFLOW]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install "worldmodels[mlflow]"' in err
    assert main(["config", "pendulum_sac"]) == 0  # a config without mlflow does not need it


def test_compare_records_every_pair_in_one_experiment(tmp_path):
    out = tmp_path / "smoke"
    compare(["pendulum_sac", "pendulum_sac:policy.gamma=0.9"], 2, preset="debug", env_steps=250, out=out,
            workers=2, sets=[WITH_MLFLOW])
    client = client_of(out / "runs")
    experiment = client.get_experiment_by_name("smoke")  # named after the compare's out folder
    runs = client.search_runs([experiment.experiment_id])
    rows = {run.data.tags["row"] for run in runs}
    assert len(rows) == 2 and {(run.data.tags["row"], run.data.tags["seed"]) for run in runs} == {
        (row, seed) for row in rows for seed in ("0", "1")}
    with open(out / "results.csv") as handle:
        assert rows == {result["config"] for result in csv.DictReader(handle)}  # the rows of the summary
    assert all(run.info.status == "FINISHED" for run in runs)
    assert client.get_experiment_by_name("pendulum_sac") is None  # not the configs' own exp_name
