"""Experiment tracking (``cifar_kedro.tracking``) hook by hook, against a real MLflow store in a
temporary folder: what the project's catalog saves becomes metrics, artifacts and models of the
active run, parameters arrive flattened, and a run an interrupted session left open is closed.
The demo run as a whole in MLflow is tests/test_tracking.py (slow)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import keras
import numpy as np
import pytest
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog
from pydantic import BaseModel

from tests.conftest import PROJECT_ROOT

mlflow = pytest.importorskip("mlflow", reason="experiment tracking is the `mlflow` extra: pip install -e '.[mlflow]'")
pytest.importorskip("kedro_mlflow", reason="experiment tracking is the `mlflow` extra: pip install -e '.[mlflow]'")

from cifar_kedro import tracking  # noqa: E402  (its hooks exist only with the extra)

VERSION = "2026-01-01T00.00.00.000Z"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A fresh SQLite tracking store, current for this module's tests (the one before restored)."""
    before = mlflow.get_tracking_uri()
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("tracking-hooks")
    yield mlflow.MlflowClient(uri)
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(before)


@pytest.fixture
def run(store):
    with mlflow.start_run() as active:
        yield active.info.run_id
    assert mlflow.active_run() is None


def project_catalog(root: Path) -> DataCatalog:
    """conf/base's catalog (globals resolved), every path moved under ``root``, saving ``VERSION``."""
    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), base_env="base", default_run_env="base")
    config = loader["catalog"]
    for entry in config.values():
        if isinstance(entry, dict) and "filepath" in entry:
            entry["filepath"] = str(root / entry["filepath"])
    return DataCatalog.from_config(config, loader["credentials"], save_version=VERSION)


def save(hooks: tracking.RunArtifacts, catalog: DataCatalog, name: str, data) -> None:
    """What Kedro does for a node's output: save it, then call the hook."""
    catalog.save(name, data)
    hooks.after_dataset_saved(dataset_name=name, data=data, node=None)


HISTORY = {
    "epochs": [
        {"epoch": 1, "stage": "head", "loss": 2.0, "accuracy": 0.3, "val_loss": 1.9, "val_accuracy": 0.35,
         "learning_rate": 0.01, "seconds": 1.5, "images_per_second": 400.0},
        {"epoch": 2, "stage": "fine_tune", "loss": 1.5, "accuracy": 0.5, "val_loss": math.nan, "val_accuracy": 0.45,
         "learning_rate": 0.001, "seconds": 2.5, "images_per_second": 300.0},
    ],
    "experiments": [{"name": "at100_lr0.001", "epochs": [
        {"epoch": 1, "loss": 1.7, "accuracy": 0.4, "val_loss": 1.8, "val_accuracy": 0.42, "learning_rate": 0.001},
        {"epoch": 2, "loss": 1.5, "accuracy": 0.5, "val_loss": 1.7, "val_accuracy": 0.45, "learning_rate": 0.0}]}],
    "train_seconds": 4.0, "params_total": 1234,
}


def series(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


def test_saved_histories_metrics_and_report_files_become_metrics_and_artifacts(store, run, tmp_path):
    catalog = project_catalog(tmp_path)
    hooks = tracking.RunArtifacts()
    hooks.after_catalog_created(catalog=catalog, save_version=VERSION)

    save(hooks, catalog, "transfer_history", HISTORY)
    save(hooks, catalog, "cnn_validation_metrics", {"val_loss": 0.9, "val_accuracy": 0.7, "n_images": 20})
    save(hooks, catalog, "cnn_test_metrics", {"test_loss": 1.1, "test_accuracy": 0.65, "note": "text", "flag": True})
    save(hooks, catalog, "comparison_report", "# Report\n")
    save(hooks, catalog, "train_split", {"images": np.zeros((2, 4, 4, 3), "uint8"), "labels": np.array([0, 1])})
    save(hooks, catalog, "transfer_head_history", HISTORY)  # in memory: not an output of the run

    data = store.get_run(run).data
    # Every epoch a step; the NaN is left out rather than logged.
    assert series(store, run, "transfer/val_accuracy") == [(1, 0.35), (2, 0.45)]
    assert series(store, run, "transfer/learning_rate") == [(1, 0.01), (2, 0.001)]
    assert series(store, run, "transfer/val_loss") == [(1, 1.9)]
    assert series(store, run, "transfer/at100_lr0.001/val_accuracy") == [(1, 0.42), (2, 0.45)]
    assert data.metrics["transfer/train_seconds"] == 4.0 and data.metrics["transfer/params_total"] == 1234
    # Flat metrics under model/split, the split's prefix dropped from the key; text and flags not logged.
    assert {k: v for k, v in data.metrics.items() if k.startswith("cnn/")} == {
        "cnn/validation/loss": 0.9, "cnn/validation/accuracy": 0.7, "cnn/validation/n_images": 20,
        "cnn/test/loss": 1.1, "cnn/test/accuracy": 0.65}
    # The files of the model_output and reporting layers, as saved (this run's version of them).
    logged = {a.path for layer in ("model_output", "reporting") for a in store.list_artifacts(run, layer)}
    assert logged == {"model_output/transfer_history.json", "model_output/cnn_validation_metrics.json",
                      "reporting/cnn_test_metrics.json", "reporting/comparison_report.md"}
    downloaded = store.download_artifacts(run, "model_output/transfer_history.json", str(tmp_path / "back"))
    assert Path(downloaded).read_bytes() == (
        tmp_path / f"data/07_model_output/transfer_history.json/{VERSION}/transfer_history.json").read_bytes()
    assert json.loads(Path(downloaded).read_text())["params_total"] == 1234


def test_a_delivered_model_is_logged_as_an_mlflow_model_that_predicts_the_same(store, run, tmp_path):
    catalog = project_catalog(tmp_path)
    hooks = tracking.RunArtifacts()
    hooks.after_catalog_created(catalog=catalog, save_version=VERSION)
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 3), dtype="uint8")
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(
        keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))))
    save(hooks, catalog, "cnn_model", model)

    [logged] = store.search_logged_models([store.get_run(run).info.experiment_id],
                                          filter_string=f"source_run_id = '{run}'")
    assert logged.name == "cnn_model"
    images = np.random.default_rng(0).integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    np.testing.assert_allclose(mlflow.keras.load_model(logged.artifact_location).predict(images, verbose=0),
                               model.predict(images, verbose=0), atol=1e-6)


def test_without_an_active_run_nothing_is_logged(store, tmp_path):
    catalog = project_catalog(tmp_path)
    hooks = tracking.RunArtifacts()
    hooks.after_catalog_created(catalog=catalog, save_version=VERSION)
    experiment = store.get_experiment_by_name("tracking-hooks")
    before = len(store.search_runs([experiment.experiment_id]))
    save(hooks, catalog, "cnn_history", HISTORY)  # tracking off for this pipeline (mlflow.yml)
    assert mlflow.active_run() is None
    assert len(store.search_runs([experiment.experiment_id])) == before


class Inner(BaseModel):
    epochs: int
    rates: list[float]


class Block(BaseModel):
    name: str
    stage: Inner


def test_typed_parameters_are_logged_flattened_one_key_per_leaf(store, run):
    hook = tracking.MlflowParamsHook()
    hook.flatten, hook.recursive, hook.sep, hook.long_params_strategy = True, True, ".", "tag"
    inputs = {"params:block": Block(name="b", stage=Inner(epochs=3, rates=[0.1, 0.01])), "params:seed": 7,
              "train_split": {"images": "not a parameter"}}
    hook.before_node_run(node=None, catalog=None, inputs=inputs, is_async=False)
    assert store.get_run(run).data.params == {"block.name": "b", "block.stage.epochs": "3",
                                              "block.stage.rates": "[0.1, 0.01]", "seed": "7"}


def test_a_run_left_open_by_an_interrupted_session_is_closed_as_killed(store, monkeypatch):
    """Ctrl-C reaches no ``on_pipeline_error``: the next session in the process closes the hook's
    own stale run before starting (a run someone else started is theirs, and is kept)."""
    monkeypatch.setattr(tracking._PluginHook, "after_context_created", lambda self, context: None)
    hook = tracking.MlflowParamsHook()
    stale = mlflow.start_run()
    hook.run_id = stale.info.run_id
    hook.after_context_created(context=None)
    assert mlflow.active_run() is None
    assert store.get_run(stale.info.run_id).info.status == "KILLED"

    theirs = mlflow.start_run()  # an orchestrator's run, the session is to log into it
    try:
        hook.after_context_created(context=None)
        assert mlflow.active_run().info.run_id == theirs.info.run_id
    finally:
        mlflow.end_run()
    assert store.get_run(theirs.info.run_id).info.status == "FINISHED"


def test_hooks_are_registered_with_the_extra():
    names = [type(hook).__name__ for hook in tracking.hooks()]
    assert names == ["MlflowParamsHook", "RunArtifacts"]
