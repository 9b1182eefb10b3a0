"""Nodes of the transfer_training pipeline.

Build MobileNetV2 with a new head → train the head on the frozen base → fine-tune copies of it
(one per experiment: unfreeze from ``fine_tune_at``, low learning rate, BatchNormalization still
in inference mode) and keep the best by validation accuracy → evaluate.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import keras

from cifar_kedro import augmentation, models, training
from cifar_kedro.splits import Split
from cifar_kedro.training import validation_metrics

__all__ = ["build_model", "train_head", "fine_tune", "validation_metrics"]

logger = logging.getLogger(__name__)


def build_model(train: Split, class_names: list[str], params: dict[str, Any]) -> keras.Model:
    """The study's architecture on raw uint8 images, base frozen.

    A randomly initialised base (``weights: none``) gets its BatchNormalization statistics from
    ``batchnorm_calibration_images`` training images (see ``models.calibrate_batchnorm``).
    """
    training.configure(seed=params["seed"], mixed_precision=params["mixed_precision"])
    model = models.build_transfer_model(
        augmentation.build_augmentation(params["augmentation"], seed=params["seed"]),
        num_classes=len(class_names),
        image_size=params["image_size"],
        weights=params["weights"],
        alpha=params["alpha"],
        dropout=params["dropout"],
    )
    if models.is_random_init(params["weights"]):
        models.calibrate_batchnorm(model, train["images"][: params["batchnorm_calibration_images"]])
    return model


def _model_key(params: dict[str, Any]) -> dict[str, Any]:
    keys = ("seed", "image_size", "weights", "alpha", "dropout", "augmentation", "mixed_precision", "batch_size",
            "batchnorm_calibration_images")
    return {key: params[key] for key in keys}


def _fit_args(params: dict[str, Any], stage: str, epochs: int, learning_rate: float, resume_key: dict) -> dict:
    """The keywords of ``training.fit`` for one stage of this pipeline."""
    return dict(
        stage=stage,
        epochs=epochs,
        batch_size=params["batch_size"],
        optimizer={**params["optimizer"], "learning_rate": learning_rate},
        label_smoothing=params["label_smoothing"],
        jit_compile=params["jit_compile"],
        checkpoint_dir=params["checkpoint_dir"],
        resume_key=resume_key,
    )


def train_head(
    model: keras.Model, train: Split, validation: Split, params: dict[str, Any]
) -> tuple[keras.Model, dict[str, Any]]:
    """Train the new head with the base frozen.

    With ``cache_features`` the frozen base runs once over the images and the head (dropout +
    dense) trains on its pooled features: same result without augmentation, many times faster.
    """
    fit_args = _fit_args(
        params, "head", params["head_epochs"], params["head_learning_rate"],
        resume_key={**_model_key(params), "cache_features": params["cache_features"]},
    )
    start = time.perf_counter()
    if params["cache_features"]:
        if augmentation.is_active(params["augmentation"]):
            logger.info("cache_features: the head trains on un-augmented features of the frozen base.")
        extractor = models.feature_extractor(model)
        features = {
            name: training.predict(extractor, split["images"], params["eval_batch_size"])
            for name, split in (("train", train), ("validation", validation))
        }
        records = training.fit(
            models.head_on_features(model),
            (features["train"], train["labels"]),
            (features["validation"], validation["labels"]),
            **fit_args,
        )
    else:
        records = training.fit(model, (train["images"], train["labels"]), (validation["images"], validation["labels"]),
                               **fit_args)
    seconds = time.perf_counter() - start
    return model, {"stage": "head", "epochs": records, "seconds": seconds}


def fine_tune(
    model: keras.Model,
    head_history: dict[str, Any],
    train: Split,
    validation: Split,
    params: dict[str, Any],
) -> tuple[keras.Model, dict[str, Any]]:
    """Fine-tune a copy of the head-trained model per experiment; keep the best by validation accuracy.

    Returns the chosen model and the history of the whole run: the head epochs followed by the
    chosen experiment's epochs (``stage`` marks which), plus every experiment's own record.
    """
    head_weights = model.get_weights()
    results, best = [], None
    for experiment in params["fine_tune_experiments"]:
        setting = {
            "fine_tune_at": experiment.get("fine_tune_at", params["fine_tune_at"]),
            "learning_rate": experiment.get("learning_rate", params["fine_tune_learning_rate"]),
            "epochs": experiment.get("epochs", params["fine_tune_epochs"]),
        }
        name = f"at{setting['fine_tune_at']}_lr{setting['learning_rate']:g}"
        model.set_weights(head_weights)
        models.unfreeze_backbone(model, setting["fine_tune_at"])
        start = time.perf_counter()
        records = training.fit(
            model,
            (train["images"], train["labels"]),
            (validation["images"], validation["labels"]),
            **_fit_args(params, f"fine_tune_{name}", setting["epochs"], setting["learning_rate"],
                        resume_key={**_model_key(params), "head": head_history["epochs"], **setting}),
        )
        result = {
            "name": name,
            **{k: setting[k] for k in ("fine_tune_at", "learning_rate")},
            "best_val_accuracy": max(r["val_accuracy"] for r in records),
            "final_val_accuracy": records[-1]["val_accuracy"],
            "seconds": time.perf_counter() - start,
            "epochs": records,
        }
        logger.info("Fine-tune experiment %s: validation accuracy %.4f.", name, result["final_val_accuracy"])
        results.append(result)
        if best is None or result["final_val_accuracy"] > best[0]["final_val_accuracy"]:
            best = (result, model.get_weights())

    if best is None:  # no experiment: the head-trained model is the result
        model.set_weights(head_weights)
        selected, tail = None, []
    else:
        model.set_weights(best[1])
        models.unfreeze_backbone(model, best[0]["fine_tune_at"])
        selected, tail = best[0]["name"], best[0]["epochs"]
    epochs = [{**r, "stage": "head"} for r in head_history["epochs"]]
    epochs += [{**r, "stage": "fine_tune"} for r in tail]
    for number, record in enumerate(epochs, start=1):
        record["epoch"] = number
    return model, {
        "model": "transfer",
        "architecture": "mobilenet_v2",
        "epochs": epochs,
        "train_seconds": head_history["seconds"] + sum(r["seconds"] for r in results),
        **training.count_params(model),
        "batch_size": params["batch_size"],
        "experiments": results,
        "selected_experiment": selected,
    }
