"""The model and training path on JAX, on a machine without TensorFlow (many GPU boxes)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import cifar_kedro.layers  # noqa: F401  (registers the custom layers, as KerasModelDataset does)

from tests.conftest import versions

BLOCK_TENSORFLOW = textwrap.dedent('''
    import sys

    class NoTensorFlow:
        """Makes `import tensorflow` fail, as on a machine where it is not installed."""

        def find_spec(self, name, path=None, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
            return None

    sys.meta_path.insert(0, NoTensorFlow())
''')

FAST = ",".join([
    "transfer_training.head_epochs=1", "transfer_training.fine_tune_epochs=1",
    "cnn_training.resnet9.epochs=1",
])


def test_demo_training_runs_on_jax_without_tensorflow(project):
    pytest.importorskip("jax")
    blocker = project / "no_tensorflow"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_TENSORFLOW)
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(blocker), "DO_NOT_TRACK": "1",
           "KEDRO_DISABLE_TELEMETRY": "true"}
    probe = subprocess.run([sys.executable, "-c", "import tensorflow"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "blocked by the test" in probe.stderr  # the blocker works

    demo_catalog = project / "conf/demo/catalog.yml"  # half the demo's images: JAX on a CPU is slow
    demo_catalog.write_text(demo_catalog.read_text().replace("images_per_batch: 800", "images_per_batch: 400"))
    command = [sys.executable, "-m", "kedro", "run", "--env", "demo",
               "--pipelines", "data_processing,transfer_training,cnn_training", "--params", FAST]
    result = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for name in ("transfer", "cnn"):
        assert len(versions(project, f"data/06_models/{name}_model.keras")) == 1
        assert len(versions(project, f"data/07_model_output/{name}_validation_metrics.json")) == 1

    # The .keras files written on JAX load here (TensorFlow backend) and predict sensibly.
    with np.load(versions(project, "data/05_model_input/test_split.npz")[-1]) as split:
        images, labels = split["images"][:200], split["labels"][:200]
    for name in ("transfer", "cnn"):
        model = keras.saving.load_model(versions(project, f"data/06_models/{name}_model.keras")[-1], safe_mode=True)
        assert model.predict(images, verbose=0).shape == (200, 10)
    assert np.mean(model.predict(images, verbose=0).argmax(1) == labels) > 0.3
