"""Nodes of the cnn_training pipeline: input statistics → build → train → evaluate."""

from __future__ import annotations

import time
from typing import Any

import keras
import numpy as np

from cifar_kedro import models, training
from cifar_kedro.runtime import seed_stage
from cifar_kedro.schemas import Runtime
from cifar_kedro.splits import Split
from cifar_kedro.training import validation_metrics

from .schema import Airbench, CNNTrainingParams

__all__ = ["input_statistics", "build_model", "train_model", "validation_metrics"]

STATISTICS_CHUNK = 4096  # images at a time, so the float copy stays small


def input_statistics(train: Split, params: CNNTrainingParams) -> dict[str, np.ndarray]:
    """What the networks are built from: the training images' shape, their per-channel mean and
    standard deviation (0..255 units), and for airbench the patch-whitening filters
    (``models.whitening_filters``) of the first ``whitening.images`` training images."""
    images = train["images"]
    total = np.zeros(images.shape[-1]), np.zeros(images.shape[-1])
    for start in range(0, len(images), STATISTICS_CHUNK):
        chunk = images[start:start + STATISTICS_CHUNK].astype("float64").reshape(-1, images.shape[-1])
        total = total[0] + chunk.sum(axis=0), total[1] + (chunk**2).sum(axis=0)
    count = images.size // images.shape[-1]
    mean = total[0] / count
    std = np.sqrt(total[1] / count - mean**2)
    kernel, eigenvalues = np.zeros(0, "float32"), np.zeros(0)
    if isinstance(params.recipe, Airbench):
        whitening = params.recipe.network.whitening
        sample = (images[: whitening.images].astype("float32") - mean) / std
        kernel, eigenvalues = models.whitening_filters(sample, kernel_size=whitening.kernel_size,
                                                      epsilon=whitening.epsilon)
    return {"image_shape": np.asarray(images.shape[1:]), "channel_mean": mean, "channel_std": std,
            "whitening_kernel": kernel, "whitening_eigenvalues": eigenvalues}


def build_model(class_names: list[str], statistics: dict[str, np.ndarray], params: CNNTrainingParams,
                runtime: Runtime) -> keras.Model:
    """The chosen architecture's network (``params.architecture``), on uint8 images."""
    seed_stage(runtime.seed, "cnn_training/build")
    network = params.recipe.network.model_dump(exclude={"whitening"})
    common = {"num_classes": len(class_names), "input_shape": tuple(int(n) for n in statistics["image_shape"])}
    normalization = {"channel_mean": statistics["channel_mean"], "channel_std": statistics["channel_std"]}
    if params.architecture == "seed_cnn":
        return models.build_seed_cnn(**common, **network)
    if params.architecture == "resnet9":
        return models.build_resnet9(**common, **normalization, **network)
    return models.build_airbench(**common, **normalization, whitening_kernel=statistics["whitening_kernel"],
                                 name=params.architecture, **network)


def train_model(
    model: keras.Model, train: Split, validation: Split, class_names: list[str], params: CNNTrainingParams,
    runtime: Runtime,
) -> tuple[keras.Model, dict[str, Any]]:
    """Train with the architecture's recipe; with ``tta_flip`` (and ``tta_translate``) the
    delivered model averages its predictions over mirrored (and shifted) views of each image."""
    recipe = params.recipe
    start = time.perf_counter()
    records = training.fit(model, (train["images"], train["labels"]), (validation["images"], validation["labels"]),
                           recipe, name="cnn_training/train", runtime=runtime, checkpoint_dir=params.checkpoint_dir,
                           batchnorm_calibration_images=params.batchnorm_calibration_images,
                           batchnorm_calibration_each_epoch=params.batchnorm_calibration_each_epoch)
    seconds = time.perf_counter() - start
    tta = recipe.tta_flip or recipe.tta_translate
    delivered = models.with_tta(model, flip=recipe.tta_flip, translate=recipe.tta_translate) if tta else model
    return delivered, {
        "model": "cnn",
        "architecture": params.architecture,
        "class_names": list(class_names),
        "epochs": [{**r, "stage": "train"} for r in records],
        "train_seconds": seconds,
        **training.count_params(model),
        "batch_size": recipe.batch_size,
        "augmentation": recipe.augmentation.model_dump(mode="json"),
        "tta_flip": recipe.tta_flip,
        "tta_translate": recipe.tta_translate,
        "experiments": [],
        "selected_experiment": None,
        "budget_minutes": recipe.budget_minutes,
    }
