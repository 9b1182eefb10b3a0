"""Nodes of the cnn_training pipeline: build → train → evaluate."""

from __future__ import annotations

import time
from typing import Any

import keras

from cifar_kedro import models, training
from cifar_kedro.splits import Split
from cifar_kedro.training import validation_metrics

from .schema import CNNTrainingParams

__all__ = ["build_model", "train_model", "validation_metrics"]


BUILDERS = {"seed_cnn": models.build_seed_cnn, "resnet9": models.build_resnet9}


def build_model(class_names: list[str], params: CNNTrainingParams) -> keras.Model:
    """The chosen architecture's network (``params.architecture``), on uint8 images."""
    training.configure(seed=params.seed, mixed_precision=params.mixed_precision)
    return BUILDERS[params.architecture](num_classes=len(class_names), **params.recipe.network.model_dump())


def train_model(
    model: keras.Model, train: Split, validation: Split, params: CNNTrainingParams
) -> tuple[keras.Model, dict[str, Any]]:
    """Train with the architecture's recipe; with ``tta_flip`` the delivered model averages its
    predictions on each image and its mirror image (test-time augmentation)."""
    recipe = params.recipe
    start = time.perf_counter()
    records = training.fit(
        model,
        (train["images"], train["labels"]),
        (validation["images"], validation["labels"]),
        stage="train",
        epochs=recipe.epochs,
        batch_size=recipe.batch_size,
        optimizer=recipe.optimizer,
        learning_rate=recipe.optimizer.learning_rate,
        augmentation=recipe.augmentation,
        label_smoothing=recipe.label_smoothing,
        jit_compile=params.jit_compile,
        seed=params.seed,
        checkpoint_dir=params.checkpoint_dir,
        resume_key={"architecture": params.architecture, "seed": params.seed,
                    "mixed_precision": params.mixed_precision, **recipe.model_dump(mode="json")},
    )
    seconds = time.perf_counter() - start
    delivered = models.with_tta(model, flip=True) if recipe.tta_flip else model
    return delivered, {
        "model": "cnn",
        "architecture": params.architecture,
        "epochs": [{**r, "stage": "train"} for r in records],
        "train_seconds": seconds,
        **training.count_params(model),
        "batch_size": recipe.batch_size,
        "augmentation": recipe.augmentation.model_dump(mode="json"),
        "tta_flip": recipe.tta_flip,
        "experiments": [],
        "selected_experiment": None,
    }
