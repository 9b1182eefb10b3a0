"""The demo environment end to end, as a newcomer runs it: all four pipelines, the report, the
notebook, kedro-viz — offline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, log_loss

from tests.conftest import PROJECT_ROOT, newest_version, run_session, versions

from cifar_kedro.study import MODELS  # noqa: E402

# Every test here reads the demo run (`demo_project`: the whole default pipeline, minutes).
pytestmark = pytest.mark.slow


def test_every_pipeline_wrote_its_versioned_outputs(demo_project):
    expected = [
        "data/01_raw/raw_batches.npz", "data/03_primary/class_names.json", "data/05_model_input/data_manifest.json",
        "data/05_model_input/train_split.npz", "data/05_model_input/validation_split.npz",
        "data/05_model_input/test_split.npz", "data/08_reporting/data_report.csv",
        "data/08_reporting/sample_images.png", "data/08_reporting/model_comparison.csv",
        "data/08_reporting/comparison_report.md", "data/08_reporting/comparison_report.html",
    ]
    for model in MODELS:
        expected += [f"data/06_models/{model}_model.keras", f"data/07_model_output/{model}_history.json",
                     f"data/07_model_output/{model}_validation_metrics.json",
                     f"data/08_reporting/{model}_confusion_matrix.png",
                     f"data/08_reporting/{model}_training_curves.png",
                     f"data/08_reporting/{model}_sample_predictions.png",
                     f"data/08_reporting/{model}_augmentation_examples.png",
                     f"data/08_reporting/{model}_classification_report.csv"]
    missing = [path for path in expected if not versions(demo_project, path)]
    assert missing == []
    # One run, one version stamp shared by all its outputs.
    stamps = {path.parent.name for path in (newest_version(demo_project, p) for p in expected)}
    assert len(stamps) == 1
    assert not (demo_project / "data/06_models/checkpoints").exists() or not any(
        (demo_project / "data/06_models/checkpoints").rglob("done.json"))


@pytest.mark.parametrize("model_name", MODELS)
def test_reported_numbers_equal_scikit_learn_on_the_saved_models(demo_project, model_name):
    with np.load(newest_version(demo_project, "data/05_model_input/test_split.npz")) as split:
        images, labels = split["images"], split["labels"]
    model = keras.saving.load_model(newest_version(demo_project, f"data/06_models/{model_name}_model.keras"), safe_mode=True)
    probabilities = model.predict(images, batch_size=256, verbose=0)
    comparison = pd.read_csv(newest_version(demo_project, "data/08_reporting/model_comparison.csv")).set_index("model")
    row = comparison.loc[model_name]
    assert row["test_accuracy"] == pytest.approx(accuracy_score(labels, probabilities.argmax(1)), abs=1e-12)
    assert row["test_loss"] == pytest.approx(log_loss(labels, probabilities, labels=range(10)), rel=1e-4)
    history = json.loads(newest_version(demo_project, f"data/07_model_output/{model_name}_history.json").read_text())
    # With test-time augmentation the delivered model wraps the trained network (plus a fixed,
    # non-trainable mirror matrix): the parameters reported are the network's.
    network = next(layer for layer in model.layers if isinstance(layer, keras.Model)) if history["tta_flip"] else model
    assert row["params_total"] == history["params_total"] == network.count_params()
    assert row["epochs"] == len(history["epochs"])
    assert row["test_accuracy"] > 0.3  # demo data are learnable; chance is 0.1


def test_report_has_each_model_and_says_demo_numbers_are_not_cifar10(demo_project):
    report = newest_version(demo_project, "data/08_reporting/comparison_report.md").read_text()
    comparison = pd.read_csv(newest_version(demo_project, "data/08_reporting/model_comparison.csv"))
    for _, row in comparison.iterrows():
        assert f"| {row['model']} | {row['architecture']} | {100 * row['test_accuracy']:.2f}% |" in report
    assert "not CIFAR-10 numbers" in report
    html = newest_version(demo_project, "data/08_reporting/comparison_report.html").read_text()
    assert html.count("data:image/png;base64,") >= 8  # plots embedded


def test_reporting_rebuilds_the_same_report_for_earlier_versions(demo_project):
    first = newest_version(demo_project, "data/08_reporting/model_comparison.csv")
    stamp = first.parent.name
    inputs = ["transfer_model", "cnn_model", "transfer_history", "cnn_history", "test_split", "class_names",
              "data_manifest", "transfer_validation_metrics", "cnn_validation_metrics", "validation_split"]
    run_session(demo_project, "demo", pipeline_names=["reporting"], load_versions={name: stamp for name in inputs})
    again = newest_version(demo_project, "data/08_reporting/model_comparison.csv")
    assert again != first
    columns = ["model", "test_accuracy", "best_val_accuracy", "overfit_gap", "params_total", "epochs"]
    pd.testing.assert_frame_equal(pd.read_csv(again)[columns], pd.read_csv(first)[columns])


def test_the_tour_notebook_runs_against_the_demo_run(demo_project):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    notebook_dir = demo_project / "notebooks"
    notebook_dir.mkdir(exist_ok=True)
    shutil.copy(PROJECT_ROOT / "notebooks/cifar_kedro_tour.ipynb", notebook_dir)
    notebook = nbformat.read(notebook_dir / "cifar_kedro_tour.ipynb", as_version=4)
    os.environ["KEDRO_ENV"] = "demo"
    try:
        nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(notebook_dir)}}).execute()
    finally:
        del os.environ["KEDRO_ENV"]
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 8


def test_kedro_viz_builds_offline(demo_project):
    env = {**os.environ, "DO_NOT_TRACK": "1", "KEDRO_DISABLE_TELEMETRY": "true"}
    kedro = shutil.which("kedro", path=os.path.dirname(sys.executable)) or "kedro"
    result = subprocess.run([kedro, "viz", "build", "--include-previews"], cwd=demo_project, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    main = json.loads((demo_project / "build/api/main").read_text())
    layers = main["layers"]
    assert layers[:5] == ["raw", "intermediate", "primary", "model_input", "models"] and layers[-1] == "reporting"
    node_names = {node["name"] for node in main["nodes"]}
    assert {"split_train_validation", "train_transfer_head", "train_cnn_model"} <= node_names
    untagged = [n["name"] for n in main["nodes"] if n["type"] == "data" and not n.get("layer")]
    assert untagged == []


def test_a_pipeline_run_alone_trains_exactly_as_inside_the_full_run(demo_project, tmp_path):
    """`kedro run --pipelines cnn_training` after the full demo run: the same seed gives the same
    network and the same numbers, epoch by epoch, though in the full run the transfer model's
    stages ran between the CNN's build and its training (RuntimeHooks, runtime.seed_stage)."""
    project = shutil.copytree(demo_project, tmp_path / "project")
    full = json.loads(newest_version(project, "data/07_model_output/cnn_history.json").read_text())
    run_session(project, "demo", pipeline_names=["cnn_training"])
    alone = json.loads(newest_version(project, "data/07_model_output/cnn_history.json").read_text())
    metrics = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")
    assert [[r[k] for k in metrics] for r in alone["epochs"]] == [[r[k] for k in metrics] for r in full["epochs"]]
