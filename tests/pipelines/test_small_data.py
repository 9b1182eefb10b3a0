"""A user's own small image folder: a few hundred 64 px pictures of two easily told classes.

At a few steps an epoch, BatchNorm's moving statistics (momentum 0.99 in Keras, 0.9 in ResNet-9)
stay near their start while the weights move on, and a model that learnt in training mode
classified every image alike at inference: the study's CNN scored 50% on such a set. Every block,
with its own recipe (at a narrow width, so the test stays fast), must now be far above chance (0.5)
on the validation split and on the delivered model's test split.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from cifar_kedro.pipelines.cnn_training import nodes
from cifar_kedro.pipelines.cnn_training.schema import CNNTrainingParams
from tests.conftest import PROJECT_ROOT, runtime

# Heavy training: every block 30 epochs (36–69 s each on 2 cores).
pytestmark = pytest.mark.slow

SIZE = 64  # as conf/images resizes a folder's pictures
IMAGES_PER_CLASS = 150
NARROW = {
    "airbench94": {"widths": [16, 32, 32]},
    "airbench96": {"widths": [16, 32, 32]},
    "resnet9": {"width": 0.125},
    "seed_cnn": {},  # the study's network as it is: 622,282 parameters
}
# What a user sets for 180 training images: more epochs and a smaller batch (3 steps an epoch).
SETTINGS = {"epochs": 30, "batch_size": 64}
# Measured on an Intel Xeon: with the recalibration every block ends at 0.98–1.00 on validation
# and test; without it (batchnorm_calibration_images: 0) seed_cnn's delivered model scores 0.50 on
# validation and 0.42 on test, though the same weights with recalibrated statistics score 0.98.
ACCURACY_BAR = 0.8


def stripes(count: int, vertical: bool, rng: np.random.Generator) -> np.ndarray:
    """Pictures of stripes, vertical or horizontal, of random colours, period, phase and noise."""
    coordinate = np.arange(SIZE, dtype="float32")[None, None, :] if vertical else np.arange(SIZE, dtype="float32")[None, :, None]
    period = rng.uniform(6, 16, (count, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, (count, 1, 1))
    pattern = (np.sin(2 * np.pi * coordinate / period + phase) > 0)[..., None]  # (count, H, W, 1)
    colours = rng.uniform(0, 255, (2, count, 1, 1, 3))
    pictures = np.where(pattern, colours[0], colours[1]) + rng.normal(0, 20, (count, SIZE, SIZE, 3))
    return np.clip(pictures, 0, 255).astype("uint8")


@pytest.fixture(scope="module")
def folder_splits():
    """Train, validation and test splits, 60/20/20 as the `images` env splits a folder."""
    rng = np.random.default_rng(0)
    images = np.concatenate([stripes(IMAGES_PER_CLASS, vertical, rng) for vertical in (True, False)])
    labels = np.repeat([0, 1], IMAGES_PER_CLASS)
    order = rng.permutation(len(labels))
    images, labels = images[order], labels[order]
    cut = np.cumsum([int(0.6 * len(labels)), int(0.2 * len(labels))])
    return [{"images": part, "labels": tag} for part, tag in zip(np.split(images, cut), np.split(labels, cut))]


def block(architecture: str) -> CNNTrainingParams:
    raw = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_cnn_training.yml").read_text())["cnn_training"]
    recipe = raw[architecture]
    return CNNTrainingParams.model_validate(raw | {
        "architecture": architecture, "checkpoint_dir": None,
        architecture: recipe | SETTINGS | {"network": recipe["network"] | NARROW[architecture]},
    })


@pytest.mark.parametrize("architecture", sorted(NARROW))
def test_every_block_learns_a_small_folder_of_two_classes(architecture, folder_splits):
    train, validation, test = folder_splits
    params = block(architecture)
    names = ["vertical", "horizontal"]
    model = nodes.build_model(names, nodes.input_statistics(train, params), params, runtime())
    delivered, history = nodes.train_model(model, train, validation, names, params, runtime())
    accuracy = {split: nodes.validation_metrics(delivered, data, 128)["val_accuracy"]
                for split, data in (("validation", validation), ("test", test))}
    assert min(accuracy.values()) > ACCURACY_BAR, (accuracy, [r["val_accuracy"] for r in history["epochs"]])
