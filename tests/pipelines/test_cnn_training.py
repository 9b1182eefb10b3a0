"""cnn_training: both architectures, the ResNet-9 recipe as recorded, learning on demo data."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import yaml

from cifar_kedro.pipelines.cnn_training import nodes
from cifar_kedro.pipelines.cnn_training.schema import CNNTrainingParams
from tests.conftest import PROJECT_ROOT, runtime, synthetic_splits

RUNTIME = runtime()


def raw_params() -> dict:
    base = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_cnn_training.yml").read_text())["cnn_training"]
    return base | {"checkpoint_dir": None}


def params(**overrides) -> CNNTrainingParams:
    return CNNTrainingParams.model_validate(raw_params() | overrides)


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    return synthetic_splits(tmp_path_factory.mktemp("cnn") / "batches", images_per_batch=400, seed=7)


def build(p: CNNTrainingParams, train, names):
    return nodes.build_model(names, nodes.input_statistics(train, p), p, RUNTIME)


def narrow_resnet9(epochs: int) -> CNNTrainingParams:
    recipe = raw_params()["resnet9"]
    return params(architecture="resnet9", resnet9=recipe | {
        "network": recipe["network"] | {"width": 0.25},
        "epochs": epochs,
        "batch_size": 128,
        "optimizer": recipe["optimizer"] | {"learning_rate": {"knots": [[0, 0.0], [1 / epochs, 0.2], [1, 0.0]]}},
    })


@pytest.mark.slow  # 3 epochs of 3,200 images (about 20 s)
def test_default_resnet9_learns_the_demo_data_and_records_its_schedule(splits):
    train, validation, names = splits
    p = narrow_resnet9(epochs=3)
    model, history = nodes.train_model(build(p, train, names), train, validation, names, p, RUNTIME)
    metrics = nodes.validation_metrics(model, validation, 256)
    assert metrics["val_accuracy"] > 0.6  # chance is 0.1
    # One cycle: the recorded end-of-epoch learning rates follow the recipe's knots.
    np.testing.assert_allclose([r["learning_rate"] for r in history["epochs"]], [0.2, 0.1, 0.0], atol=1e-6)
    assert history["architecture"] == "resnet9" and history["tta_flip"] is True
    assert history["augmentation"]["cutout"] == 8  # recorded, so the report can show it
    assert [r["stage"] for r in history["epochs"]] == ["train"] * 3
    # The delivered model averages each image with its mirror image.
    assert model.name.endswith("_tta_flip")
    images = validation["images"][:8]
    inner = model.get_layer("resnet9")
    expected = (inner.predict(images, verbose=0) + inner.predict(images[:, :, ::-1], verbose=0)) / 2
    np.testing.assert_allclose(model.predict(images, verbose=0), expected, atol=1e-5)


def test_seed_cnn_is_the_study_recipe(splits):
    train, validation, names = splits
    p = params(architecture="seed_cnn")
    recipe = p.seed_cnn
    assert (recipe.epochs, recipe.batch_size, recipe.optimizer.name) == (10, 128, "adam")
    assert recipe.augmentation.horizontal_flip and recipe.augmentation.shift
    model = build(p, train, names)
    assert model.count_params() == 622_282
    p = params(architecture="seed_cnn", seed_cnn=raw_params()["seed_cnn"] | {"epochs": 1})
    delivered, history = nodes.train_model(model, train, validation, names, p, RUNTIME)
    assert delivered is model  # no test-time augmentation in the study's recipe
    assert history["params_total"] == 622_282 and history["params_trainable"] == 622_282 - 960


def test_delivered_models_hold_no_training_layers(splits):
    """Augmentation (and its custom cutout layer) trains the model but is not delivered with it."""
    train, validation, names = splits
    p = narrow_resnet9(epochs=1)
    delivered, _ = nodes.train_model(build(p, train, names), train, validation, names, p, RUNTIME)

    def layer_types(model):
        for layer in model.layers:
            yield type(layer)
            if isinstance(layer, keras.Model):
                yield from layer_types(layer)

    assert all(cls.__module__.startswith("keras.") for cls in layer_types(delivered))
