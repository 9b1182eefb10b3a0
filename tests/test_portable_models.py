"""A delivered model is portable: plain ``keras.saving.load_model(path)`` in a Python where this
project is not installed (only Keras and its backend) loads it and predicts the same."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from tests.conftest import versions

NO_PROJECT = textwrap.dedent('''
    import sys

    class NoProject:
        """Makes `import cifar_kedro` fail, as in a Python where the project is not installed."""

        def find_spec(self, name, path=None, target=None):
            if name == "cifar_kedro" or name.startswith("cifar_kedro."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
            return None

    sys.meta_path.insert(0, NoProject())
''')

LOAD_AND_PREDICT = textwrap.dedent('''
    import sys
    import keras
    import numpy as np

    model = keras.saving.load_model(sys.argv[1])  # plain Keras: safe_mode on, no custom objects
    np.save(sys.argv[3], model.predict(np.load(sys.argv[2]), verbose=0))
    try:
        import cifar_kedro  # noqa: F401
    except ModuleNotFoundError:
        print("project not importable")
''')


def predict_elsewhere(model_path, images: np.ndarray, tmp_path) -> np.ndarray:
    blocker = tmp_path / "no_project"
    blocker.mkdir(exist_ok=True)
    (blocker / "sitecustomize.py").write_text(NO_PROJECT)
    np.save(tmp_path / "images.npy", images)
    env = {**os.environ, "PYTHONPATH": str(blocker)}
    result = subprocess.run(
        [sys.executable, "-c", LOAD_AND_PREDICT, str(model_path), str(tmp_path / "images.npy"),
         str(tmp_path / "predictions.npy")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "project not importable" in result.stdout  # the blocker held
    return np.load(tmp_path / "predictions.npy")


@pytest.mark.slow  # reads the demo run
@pytest.mark.parametrize("model_name", ["transfer", "cnn"])
def test_delivered_models_load_and_predict_without_the_project(demo_project, tmp_path, model_name):
    path = versions(demo_project, f"data/06_models/{model_name}_model.keras")[-1]
    with np.load(versions(demo_project, "data/05_model_input/test_split.npz")[-1]) as split:
        images = split["images"][:64]
    here = keras.saving.load_model(path, safe_mode=True).predict(images, verbose=0)
    np.testing.assert_allclose(predict_elsewhere(path, images, tmp_path), here, atol=1e-6)


def test_test_time_augmentation_travels_with_the_model(tmp_path):
    from cifar_kedro import models

    model = models.with_tta(models.build_seed_cnn(num_classes=10), flip=True, translate=1)
    path = tmp_path / "tta.keras"
    model.save(path)
    images = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_allclose(predict_elsewhere(path, images, tmp_path), model.predict(images, verbose=0), atol=1e-6)
