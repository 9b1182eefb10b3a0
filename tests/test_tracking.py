"""Experiment tracking (the optional `mlflow` extra): the demo run as one MLflow run in a real
local SQLite tracking store — its parameters, per-epoch and test metrics, artifacts and models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import environment, run_session, tracking_uri

mlflow = pytest.importorskip("mlflow", reason="experiment tracking is the `mlflow` extra: pip install -e '.[mlflow]'")
pytest.importorskip("kedro_mlflow", reason="experiment tracking is the `mlflow` extra: pip install -e '.[mlflow]'")

MODELS = ("transfer", "cnn")
EXPERIMENT = "cifar-kedro"


def of_run(project, run, relative):
    """The version of a versioned file that ``run`` wrote (other tests add versions of their own)."""
    return project / relative / run.data.tags["run_id"] / Path(relative).name


# The tests of the demo run read it as one MLflow run (slow); the hooks on their own, in the
# everyday suite: tests/test_tracking_hooks.py.
@pytest.fixture(scope="module")
def demo_run(demo_project):
    client = mlflow.MlflowClient(tracking_uri(demo_project))
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, "the demo run is one MLflow run"
    return client, experiment, runs[0]


@pytest.mark.slow
def test_the_run_records_the_kedro_run_and_its_flattened_parameters(demo_project, demo_run):
    _, _, run = demo_run
    assert run.info.status == "FINISHED"
    # Kedro's session id is the save version every output of the run carries.
    assert of_run(demo_project, run, "data/08_reporting/model_comparison.csv").exists()
    assert run.data.tags["env"] == "demo"
    params = run.data.params
    # Values as the demo environment merged them over base (soft merge), one key per leaf.
    assert params["transfer_training.head.epochs"] == "5"
    assert params["runtime.seed"] == "42"
    assert params["transfer_training.image_size"] == "32"
    assert params["cnn_training.architecture"] == "airbench94_muon"
    assert params["cnn_training.airbench94_muon.epochs"] == "4"
    assert params["cnn_training.airbench94_muon.network.widths"] == "[32, 64, 64]"
    assert params["data_processing.validation_fraction"] == "0.2"


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_every_epoch_of_every_stage_is_a_metric_step(demo_project, demo_run, model):
    client, _, run = demo_run
    history = json.loads(of_run(demo_project, run, f"data/07_model_output/{model}_history.json").read_text())
    series = [(model, history["epochs"])]
    series += [(f"{model}/{experiment['name']}", experiment["epochs"]) for experiment in history["experiments"]]
    assert len(series) == (2 if model == "transfer" else 1)  # the demo has one fine-tuning experiment
    for prefix, epochs in series:
        for key in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "images_per_second"):
            logged = client.get_metric_history(run.info.run_id, f"{prefix}/{key}")
            assert [m.step for m in logged] == [e["epoch"] for e in epochs], f"{prefix}/{key}"
            assert [m.value for m in logged] == pytest.approx([e[key] for e in epochs], rel=1e-6), f"{prefix}/{key}"
    # The transfer series runs on across its stages: head epochs, then the chosen fine-tuning.
    stages = [e["stage"] for e in history["epochs"]]
    assert model != "transfer" or (stages[0], stages[-1]) == ("head", "fine_tune")


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_test_and_validation_metrics_are_the_reported_ones(demo_project, demo_run, model):
    _, _, run = demo_run
    comparison = pd.read_csv(of_run(demo_project, run, "data/08_reporting/model_comparison.csv")).set_index("model")
    validation = json.loads(of_run(demo_project, run, f"data/07_model_output/{model}_validation_metrics.json").read_text())
    metrics = run.data.metrics
    assert metrics[f"{model}/test/accuracy"] == pytest.approx(comparison.loc[model, "test_accuracy"], abs=1e-12)
    assert metrics[f"{model}/test/loss"] == pytest.approx(comparison.loc[model, "test_loss"], rel=1e-9)
    assert metrics[f"{model}/validation/accuracy"] == pytest.approx(validation["val_accuracy"], abs=1e-12)
    assert metrics[f"{model}/params_total"] == comparison.loc[model, "params_total"]


@pytest.mark.slow
def test_report_plots_and_tables_are_artifacts_as_saved(demo_project, demo_run, tmp_path):
    client, _, run = demo_run
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "reporting")}
    stamp = run.data.tags["run_id"]  # the version of this run's files (other tests add runs of their own)
    written = {f"reporting/{path.name}" for path in (demo_project / "data/08_reporting").glob(f"*/{stamp}/*")}
    assert written and written <= logged  # every reporting file of the run: report, plots, tables
    assert {"reporting/comparison_report.md", "reporting/comparison_report.html",
            "reporting/transfer_confusion_matrix.png", "reporting/cnn_training_curves.png"} <= logged
    history = {a.path for a in client.list_artifacts(run.info.run_id, "model_output")}
    assert {"model_output/transfer_history.json", "model_output/cnn_history.json"} <= history
    for name in ("comparison_report.md", "transfer_confusion_matrix.png"):
        downloaded = client.download_artifacts(run.info.run_id, f"reporting/{name}", str(tmp_path))
        assert open(downloaded, "rb").read() == of_run(demo_project, run, f"data/08_reporting/{name}").read_bytes()


@pytest.mark.slow
def test_both_models_are_logged_and_predict_like_the_versioned_files(demo_project, demo_run):
    import keras

    client, experiment, run = demo_run
    logged = {m.name: m for m in client.search_logged_models([experiment.experiment_id])}
    assert set(logged) == {"transfer_model", "cnn_model"}
    with np.load(of_run(demo_project, run, "data/05_model_input/test_split.npz")) as split:
        images = split["images"][:64]
    for model in MODELS:
        assert logged[f"{model}_model"].source_run_id == run.info.run_id
        # From the store's own location (the process's current tracking URI may be another test's).
        tracked = mlflow.keras.load_model(logged[f"{model}_model"].artifact_location)
        versioned = keras.saving.load_model(of_run(demo_project, run, f"data/06_models/{model}_model.keras"), safe_mode=True)
        np.testing.assert_allclose(tracked.predict(images, verbose=0), versioned.predict(images, verbose=0), atol=1e-6)


def test_a_bad_parameter_stops_before_any_mlflow_run(project):
    from kedro.validation import ParameterValidationError

    uri = tracking_uri(project)
    with environment(MLFLOW_TRACKING_URI=uri), pytest.raises(ParameterValidationError):
        run_session(project, "demo", {"cnn_training": {"epochs": 1}}, pipeline_names=["cnn_training"])
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is None  # the check runs before kedro-mlflow sets anything up


@pytest.mark.slow  # three sessions; the hook on its own: tests/test_tracking_hooks.py
def test_sessions_in_one_process_get_runs_of_their_own_even_after_an_interrupted_one(project, monkeypatch):
    from cifar_kedro.pipelines.data_processing import nodes

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C: Kedro calls no on_pipeline_error hook for it

    uri = tracking_uri(project)
    with environment(MLFLOW_TRACKING_URI=uri):
        run_session(project, "demo", pipeline_names=["data_processing"])
        with monkeypatch.context() as patch:
            patch.setattr(nodes.assemble_splits, "__code__", interrupted.__code__)
            with pytest.raises(KeyboardInterrupt):
                run_session(project, "demo", pipeline_names=["data_processing"])
        run_session(project, "demo", {"data_processing": {"seed": 1}}, pipeline_names=["data_processing"])
    assert mlflow.active_run() is None
    client = mlflow.MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id], order_by=["start_time ASC"])
    assert [run.info.status for run in runs] == ["FINISHED", "KILLED", "FINISHED"]
    assert [run.data.params["data_processing.seed"] for run in runs] == ["42", "42", "1"]
