"""Nodes of the cnn_training pipeline: build → train → evaluate."""

from __future__ import annotations

import time
from typing import Any

import keras

from cifar_kedro import augmentation, models, training
from cifar_kedro.splits import Split
from cifar_kedro.training import validation_metrics

__all__ = ["build_model", "train_model", "validation_metrics"]


BUILDERS = {"seed_cnn": models.build_seed_cnn, "resnet9": models.build_resnet9}


def recipe(params: dict[str, Any]) -> dict[str, Any]:
    """The block of parameters of the chosen architecture: its network and its training recipe."""
    architecture = params["architecture"]
    if architecture not in BUILDERS:
        raise ValueError(
            f"cnn_training.architecture is '{architecture}'; use one of {sorted(BUILDERS)} "
            "(conf/base/parameters_cnn_training.yml)."
        )
    return params[architecture]


def build_model(class_names: list[str], params: dict[str, Any]) -> keras.Model:
    """``seed_cnn`` (the study's network) or ``resnet9``, per ``params['architecture']``."""
    chosen = recipe(params)
    training.configure(seed=params["seed"], mixed_precision=params["mixed_precision"])
    return BUILDERS[params["architecture"]](
        augmentation.build_augmentation(chosen["augmentation"], seed=params["seed"]),
        num_classes=len(class_names),
        **chosen["network"],
    )


def train_model(
    model: keras.Model, train: Split, validation: Split, params: dict[str, Any]
) -> tuple[keras.Model, dict[str, Any]]:
    """Train with the architecture's recipe; with ``tta_flip`` the delivered model averages its
    predictions on each image and its mirror image (test-time augmentation)."""
    chosen = recipe(params)
    start = time.perf_counter()
    records = training.fit(
        model,
        (train["images"], train["labels"]),
        (validation["images"], validation["labels"]),
        stage="train",
        epochs=chosen["epochs"],
        batch_size=chosen["batch_size"],
        optimizer=chosen["optimizer"],
        label_smoothing=chosen["label_smoothing"],
        jit_compile=params["jit_compile"],
        checkpoint_dir=params["checkpoint_dir"],
        resume_key={"architecture": params["architecture"], "seed": params["seed"],
                    "mixed_precision": params["mixed_precision"], **chosen},
    )
    seconds = time.perf_counter() - start
    delivered = models.with_flip_tta(model) if chosen["tta_flip"] else model
    return delivered, {
        "model": "cnn",
        "architecture": params["architecture"],
        "epochs": [{**r, "stage": "train"} for r in records],
        "train_seconds": seconds,
        **training.count_params(model),
        "batch_size": chosen["batch_size"],
        "tta_flip": chosen["tta_flip"],
        "experiments": [],
        "selected_experiment": None,
    }
