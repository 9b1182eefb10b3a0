"""The model and training path on JAX, on a machine without TensorFlow (many GPU boxes) — and
without the optional `mlflow` extra: the demo data-parallel over two (virtual CPU) devices, and the
README's GPU command with the `gpu` env."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import yaml

import cifar_kedro.layers  # noqa: F401  (registers the custom layers, as KerasModelDataset does)

from cifar_kedro.study import MODELS
from tests.conftest import deep_merge, versions
from cifar_kedro.hidden_packages import write_blocker

# Both are `kedro run` in a subprocess on JAX (minutes); the everyday suite checks JAX in
# tests/test_runtime_data_parallel.py and tests/test_blocks.py::test_the_optimizer_ingredients_hold_on_jax.
pytestmark = pytest.mark.slow

FAST = ",".join([
    "transfer_training.head.epochs=1", "transfer_training.fine_tune.epochs=1",
    "cnn_training.airbench94_muon.epochs=1", "runtime.distribution=data_parallel",
])


def test_demo_training_runs_data_parallel_on_jax_without_tensorflow_or_mlflow(project):
    pytest.importorskip("jax")
    # TensorFlow, MLflow and kedro-mlflow as if not installed (no plugin entry points either).
    blocker = write_blocker(project / "no_tensorflow", ("tensorflow", "mlflow", "kedro_mlflow"), ("kedro_mlflow",))
    store = project / "mlflow.db"
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(blocker), "DO_NOT_TRACK": "1",
           "KEDRO_DISABLE_TELEMETRY": "true", "MLFLOW_TRACKING_URI": f"sqlite:///{store}",
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "COLUMNS": "200"}
    for module in ("tensorflow", "mlflow"):
        probe = subprocess.run([sys.executable, "-c", f"import {module}"], env=env, capture_output=True, text=True)
        assert probe.returncode != 0 and "blocked by the test" in probe.stderr  # the blocker works

    demo_catalog = project / "conf/demo/catalog.yml"  # half the demo's images: JAX on a CPU is slow
    demo_catalog.write_text(demo_catalog.read_text().replace("images_per_batch: 800", "images_per_batch: 400"))
    command = [sys.executable, "-m", "kedro", "run", "--env", "demo",
               "--pipelines", "data_processing,transfer_training,cnn_training", "--params", FAST]
    result = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # Set once for the whole run, before any node (RuntimeHooks), not by each pipeline.
    assert (result.stdout + result.stderr).count("Data-parallel training on 2 devices: cpu:0, cpu:1") == 1
    for name in MODELS:
        assert len(versions(project, f"data/06_models/{name}_model.keras")) == 1
        assert len(versions(project, f"data/07_model_output/{name}_validation_metrics.json")) == 1
    assert not store.exists() and not (project / "mlruns").exists()  # untracked, and nothing asked for it

    # The .keras files written on JAX load here (TensorFlow backend) and predict sensibly.
    with np.load(versions(project, "data/05_model_input/test_split.npz")[-1]) as split:
        images, labels = split["images"][:200], split["labels"][:200]
    for name in MODELS:
        model = keras.saving.load_model(versions(project, f"data/06_models/{name}_model.keras")[-1], safe_mode=True)
        assert model.predict(images, verbose=0).shape == (200, 10)
    assert np.mean(model.predict(images, verbose=0).argmax(1) == labels) > 0.3


# The `gpu` env at a tiny size: what differs is only how big things are.
TINY_GPU = {
    "parameters_transfer_training.yml": {"transfer_training": {
        "image_size": 32, "alpha": 0.35, "weights": "none", "head": {"epochs": 1, "batch_size": 64},
        "fine_tune": {"epochs": 1, "batch_size": 64}, "fine_tune_experiments": [{"at": 100}]}},
    "parameters_cnn_training.yml": {"cnn_training": {
        "airbench96": {"network": {"widths": [16, 32, 32]}, "epochs": 2, "batch_size": 64}}},
}


def test_the_readme_gpu_command_runs_every_pipeline_on_jax_without_tensorflow(project):
    """`KERAS_BACKEND=jax kedro run --env gpu`, as the README gives it for a GPU machine (JAX, no
    TensorFlow, no MLflow), on generated data in the real batches' place: every pipeline, with the
    gpu env's blocks (airbench96 with mixed bfloat16 and XLA) at a tiny size."""
    pytest.importorskip("jax")
    from cifar_kedro.sources import synthetic

    synthetic.write_synthetic_cifar10(project / "data/01_raw/cifar-10-batches-py", images_per_batch=100,
                                      test_images=200, seed=5)
    for name, changes in TINY_GPU.items():
        path = project / "conf/gpu" / name
        path.write_text(yaml.safe_dump(deep_merge(yaml.safe_load(path.read_text()), changes)))
    blocker = write_blocker(project / "no_tensorflow", ("tensorflow", "mlflow", "kedro_mlflow"), ("kedro_mlflow",))
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(blocker), "COLUMNS": "200"}
    result = subprocess.run([sys.executable, "-m", "kedro", "run", "--env", "gpu"], cwd=project, env=env,
                            capture_output=True, text=True, timeout=900)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    assert "Pipeline execution completed successfully" in log
    for name in MODELS:
        assert len(versions(project, f"data/06_models/{name}_model.keras")) == 1
    [report] = versions(project, "data/08_reporting/comparison_report.md")
    text = report.read_text()
    assert "**jax** backend" in text and "airbench96" in text
    [history] = versions(project, "data/07_model_output/cnn_history.json")
    assert json.loads(history.read_text())["architecture"] == "airbench96"
