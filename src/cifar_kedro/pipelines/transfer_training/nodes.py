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
import numpy as np

from cifar_kedro import augmentation, models, training
from cifar_kedro.splits import Split
from cifar_kedro.training import validation_metrics

from .schema import TransferTrainingParams

__all__ = ["build_model", "train_head", "fine_tune", "validation_metrics"]

logger = logging.getLogger(__name__)


def build_model(train: Split, class_names: list[str], params: TransferTrainingParams) -> keras.Model:
    """The study's architecture on raw uint8 images, base frozen.

    A randomly initialised base (``weights: none``) gets its BatchNormalization statistics from
    ``batchnorm_calibration_images`` training images (see ``models.calibrate_batchnorm``).
    """
    training.configure(seed=params.seed, mixed_precision=params.mixed_precision,
                       distribution=params.distribution)
    model = models.build_transfer_model(
        num_classes=len(class_names),
        input_shape=train["images"].shape[1:],
        image_size=params.image_size,
        weights=params.weights,
        alpha=params.alpha,
        dropout=params.dropout,
    )
    if models.is_random_init(params.weights):
        models.calibrate_batchnorm(model, train["images"][: params.batchnorm_calibration_images],
                                   batch_size=params.batchnorm_calibration_images, include_frozen=True)
    return model


def _model_key(params: TransferTrainingParams) -> dict[str, Any]:
    """What defines the model a stage starts from (the resume key's common part)."""
    keys = {"seed", "image_size", "weights", "alpha", "dropout", "augmentation", "mixed_precision", "batch_size",
            "batchnorm_calibration_images", "optimizer", "label_smoothing"}
    return params.model_dump(mode="json", include=keys)


def _fit_args(params: TransferTrainingParams, stage: str, epochs: int, learning_rate, resume_key: dict) -> dict:
    """The keywords of ``training.fit`` for one stage of this pipeline."""
    return dict(
        stage=stage,
        epochs=epochs,
        batch_size=params.batch_size,
        optimizer=params.optimizer,
        learning_rate=learning_rate,
        label_smoothing=params.label_smoothing,
        jit_compile=params.jit_compile,
        seed=params.seed,
        checkpoint_dir=params.checkpoint_dir,
        resume_key={**resume_key, "learning_rate": _plain(learning_rate)},
    )


def _plain(value: Any) -> Any:
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def train_head(
    model: keras.Model, train: Split, validation: Split, params: TransferTrainingParams
) -> tuple[keras.Model, dict[str, Any]]:
    """Train the new head with the base frozen.

    With ``cache_features`` the frozen base runs once over the images and the head (dropout +
    dense) trains on its pooled features — many times faster, without augmentation.
    """
    fit_args = _fit_args(
        params, "head", params.head_epochs, params.head_learning_rate,
        resume_key={**_model_key(params), "cache_features": params.cache_features},
    )
    start = time.perf_counter()
    if params.cache_features:
        extractor = models.feature_extractor(model)
        features = [training.predict(extractor, split["images"], params.eval_batch_size) for split in (train, validation)]
        records = training.fit(models.head_on_features(model), (features[0], train["labels"]),
                               (features[1], validation["labels"]), **fit_args)
    else:
        records = training.fit(model, (train["images"], train["labels"]), (validation["images"], validation["labels"]),
                               augmentation=params.augmentation, **fit_args)
    seconds = time.perf_counter() - start
    return model, {"stage": "head", "epochs": records, "seconds": seconds}


def fine_tune(
    model: keras.Model,
    head_history: dict[str, Any],
    train: Split,
    validation: Split,
    class_names: list[str],
    params: TransferTrainingParams,
) -> tuple[keras.Model, dict[str, Any]]:
    """Fine-tune the head-trained model once per experiment (each from the same head-trained
    weights); keep the best by final validation accuracy.

    With ``cache_features`` the frozen layers below the experiment's ``fine_tune_at`` run once
    over the images (and over each of ``cached_views``) and only the layers above train, on
    those activations (``models.split_for_fine_tuning``).

    Returns the chosen model (with ``tta_flip``, wrapped to average each image with its mirror
    image) and the history of the whole run: the head epochs followed by the chosen experiment's
    epochs (``stage`` marks which), plus every experiment's own record.
    """
    head_weights = model.get_weights()
    cached: dict[str, tuple] = {}  # block boundary -> cached (train, validation) activations
    results, best = [], None
    for experiment in params.fine_tune_experiments:
        setting = {
            "fine_tune_at": _given(experiment.fine_tune_at, params.fine_tune_at),
            "learning_rate": _given(experiment.learning_rate, params.fine_tune_learning_rate),
            "epochs": _given(experiment.epochs, params.fine_tune_epochs),
        }
        name = f"at{setting['fine_tune_at']}_lr{_rate_label(setting['learning_rate'])}"
        model.set_weights(head_weights)
        models.unfreeze_backbone(model, setting["fine_tune_at"], batchnorm=params.fine_tune_batchnorm,
                                 batchnorm_momentum=params.fine_tune_batchnorm_momentum)
        fit_args = _fit_args(params, f"fine_tune_{name}", setting["epochs"], setting["learning_rate"],
                             resume_key={**_model_key(params), "head": head_history["epochs"], **_plain(setting),
                                         "batchnorm": [params.fine_tune_batchnorm,
                                                       params.fine_tune_batchnorm_momentum],
                                         "cached_views": params.cached_views if params.cache_features else None})
        start = time.perf_counter()
        split = models.split_for_fine_tuning(model, setting["fine_tune_at"]) if params.cache_features else None
        if split is not None:
            if split.boundary not in cached:
                cached[split.boundary] = _activations(split.bottom, train, validation, params)
            (x_train, y_train), validation_data = cached[split.boundary]
            records = training.fit(split.top, (x_train, y_train), validation_data, **fit_args)
        else:
            records = training.fit(model, (train["images"], train["labels"]),
                                   (validation["images"], validation["labels"]),
                                   augmentation=params.augmentation, **fit_args)
        result = {
            "name": name,
            "fine_tune_at": setting["fine_tune_at"],
            "learning_rate": _plain(setting["learning_rate"]),
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
        selected, tail = best[0]["name"], best[0]["epochs"]
    epochs = [{**r, "stage": "head"} for r in head_history["epochs"]]
    epochs += [{**r, "stage": "fine_tune"} for r in tail]
    for number, record in enumerate(epochs, start=1):
        record["epoch"] = number
    delivered = models.with_tta(model, flip=True) if params.tta_flip else model
    return delivered, {
        "model": "transfer",
        "architecture": "mobilenet_v2",
        "class_names": list(class_names),
        "epochs": epochs,
        "train_seconds": head_history["seconds"] + sum(r["seconds"] for r in results),
        **training.count_params(model),
        "batch_size": params.batch_size,
        "augmentation": params.augmentation.model_dump(mode="json"),
        "tta_flip": params.tta_flip,
        "experiments": results,
        "selected_experiment": selected,
    }


def _given(value: Any, default: Any) -> Any:
    return default if value is None else value


def _rate_label(rate: Any) -> str:
    """``1e-05``, or ``max1e-04`` for a schedule (its peak)."""
    return f"{rate:g}" if isinstance(rate, (int, float)) else f"max{max(r for _, r in rate.knots):g}"


def _activations(bottom: keras.Model, train: Split, validation: Split, params: TransferTrainingParams):
    """The frozen bottom's outputs, computed once: training images in each of ``cached_views``
    (labels repeated to match), validation images as they are. Stored as float16 to halve memory."""
    started = time.perf_counter()

    def run(images):
        return training.predict(bottom, images, params.eval_batch_size).astype("float16")

    x_train = np.concatenate([run(_view(train["images"], view, index, params))
                              for index, view in enumerate(params.cached_views)])
    y_train = np.tile(train["labels"], len(params.cached_views))
    x_val = run(validation["images"])
    logger.info("Cached the frozen layers' activations %s for %d training images × %s and %d validation images "
                "in %.0f s.", x_val.shape[1:], len(train["labels"]), list(params.cached_views),
                len(validation["labels"]), time.perf_counter() - started)
    return (x_train, y_train), (x_val, validation["labels"])


VIEW_CHUNK = 2048  # images augmented at a time


def _view(images: np.ndarray, view: str, index: int, params: TransferTrainingParams) -> np.ndarray:
    """``original``, ``mirrored``, or ``augmented``: one seeded draw of the configured augmentation
    (each ``augmented`` in the list a different draw)."""
    if view == "original":
        return images
    if view == "mirrored":
        return images[:, :, ::-1]
    layer = augmentation.build_augmentation(params.augmentation, seed=params.seed + index)
    draws = [keras.ops.convert_to_numpy(layer(images[start:start + VIEW_CHUNK].astype("float32"), training=True))
             for start in range(0, len(images), VIEW_CHUNK)]
    return np.clip(np.round(np.concatenate(draws)), 0, 255).astype("uint8")
