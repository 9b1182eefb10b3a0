"""Nodes of the transfer_training pipeline.

Build MobileNetV2 with a new head → train the head on the frozen base → fine-tune copies of it
(one per experiment: unfreeze from the experiment's ``at``, its BatchNormalization frozen or
training as ``fine_tune.batchnorm`` says) and keep the best by validation accuracy → evaluate.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from cifar_kedro import augmentation, models, training
from cifar_kedro.runtime import seed_stage
from cifar_kedro.schemas import Augmentation, Runtime, Stage
from cifar_kedro.splits import Split
from cifar_kedro.training import validation_metrics

from .schema import FineTune, TransferTrainingParams

__all__ = ["build_model", "train_head", "fine_tune", "validation_metrics"]

logger = logging.getLogger(__name__)


def build_model(train: Split, class_names: list[str], params: TransferTrainingParams, runtime: Runtime) -> keras.Model:
    """The study's architecture on raw uint8 images, base frozen.

    A randomly initialised base (``weights: none``) gets its BatchNormalization statistics from
    ``batchnorm_calibration_images`` training images (see ``models.calibrate_batchnorm``).
    """
    seed_stage(runtime.seed, "transfer_training/build")
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


def _on_cached(stage: Stage) -> Stage:
    """A stage that trains on cached activations: its augmentation is in the cached views."""
    return stage.model_copy(update={"augmentation": Augmentation()})


def train_head(
    model: keras.Model, train: Split, validation: Split, params: TransferTrainingParams, runtime: Runtime
) -> tuple[keras.Model, dict[str, Any]]:
    """Train the new head with the base frozen.

    With ``cache_features`` the frozen base runs once over the images and the head (dropout +
    dense) trains on its pooled features — many times faster, without augmentation.
    """
    start = time.perf_counter()
    if params.cache_features:
        extractor = models.feature_extractor(model)
        features = [training.predict(extractor, split["images"], params.eval_batch_size) for split in (train, validation)]
        records = training.fit(models.head_on_features(model), (features[0], train["labels"]),
                               (features[1], validation["labels"]), _on_cached(params.head),
                               name="transfer_training/head", runtime=runtime, checkpoint_dir=params.checkpoint_dir)
    else:
        records = training.fit(model, (train["images"], train["labels"]), (validation["images"], validation["labels"]),
                               params.head, name="transfer_training/head", runtime=runtime,
                               checkpoint_dir=params.checkpoint_dir)
    return model, {"stage": "head", "epochs": records, "seconds": time.perf_counter() - start}


def fine_tune(
    model: keras.Model,
    head_history: dict[str, Any],
    train: Split,
    validation: Split,
    class_names: list[str],
    params: TransferTrainingParams,
    runtime: Runtime,
) -> tuple[keras.Model, dict[str, Any]]:
    """Fine-tune the head-trained model once per experiment (each from the same head-trained
    weights); keep the best by final validation accuracy.

    With ``cache_features`` the frozen layers below the experiment's ``at`` run once over the
    images (and over each of ``cached_views``) and only the layers above train, on those
    activations (``models.split_for_fine_tuning``).

    Returns the chosen model (with ``tta_flip``, wrapped to average each image with its mirror
    image) and the history of the whole run: the head epochs followed by the chosen experiment's
    epochs (``stage`` marks which), plus every experiment's own record.
    """
    head_weights = model.get_weights()
    cached: dict[int, tuple] = {}  # block boundary -> cached (train, validation) activations
    results, best = [], None
    share = None  # seconds of the budget each experiment may take
    if params.budget_minutes is not None and params.fine_tune_experiments:
        share = (params.budget_minutes * 60 - head_history["seconds"]) / len(params.fine_tune_experiments)
    for experiment in params.fine_tune_experiments:
        stage = experiment.applied_to(params.fine_tune)
        model.set_weights(head_weights)
        result = _fine_tune_once(model, stage, train, validation, params, runtime, cached, share)
        logger.info("Fine-tune experiment %s: validation accuracy %.4f.", result["name"], result["final_val_accuracy"])
        results.append(result)
        if best is None or result["final_val_accuracy"] > best[0]["final_val_accuracy"]:
            best = (result, model.get_weights())

    model.set_weights(head_weights if best is None else best[1])  # no experiment: the head-trained model
    tail = [] if best is None else best[0]["epochs"]
    epochs = [{**r, "stage": "head"} for r in head_history["epochs"]] + [{**r, "stage": "fine_tune"} for r in tail]
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
        "batch_size": params.fine_tune.batch_size,
        "augmentation": params.fine_tune.augmentation.model_dump(mode="json"),
        "tta_flip": params.tta_flip,
        "experiments": results,
        "selected_experiment": None if best is None else best[0]["name"],
        "budget_minutes": params.budget_minutes,
    }


def _fine_tune_once(model: keras.Model, stage: FineTune, train: Split, validation: Split,
                    params: TransferTrainingParams, runtime: Runtime, cached: dict[int, tuple],
                    budget_seconds: float | None = None) -> dict[str, Any]:
    """One experiment: unfreeze from ``stage.at`` and train (on cached activations where the
    frozen layers allow it, reusing ``cached``); the model keeps the trained weights. With
    ``budget_seconds``, what is left of them after caching is the stage's budget."""
    rate = stage.optimizer.learning_rate
    name = f"at{stage.at}_lr{_rate_label(rate)}"
    models.unfreeze_backbone(model, stage.at, batchnorm=stage.batchnorm, batchnorm_momentum=stage.batchnorm_momentum)
    fit_args = dict(name=f"transfer_training/fine_tune_{name}", runtime=runtime, checkpoint_dir=params.checkpoint_dir)
    start = time.perf_counter()
    split = models.split_for_fine_tuning(model, stage.at) if params.cache_features else None
    if split is not None:
        if split.boundary not in cached:
            cached[split.boundary] = _activations(split.bottom, train, validation, params, runtime)
        stage = _with_budget_left(stage, budget_seconds, start)
        records = training.fit(split.top, *cached[split.boundary], _on_cached(stage), **fit_args)
    else:
        records = training.fit(model, (train["images"], train["labels"]), (validation["images"], validation["labels"]),
                               _with_budget_left(stage, budget_seconds, start), **fit_args)
    return {
        "name": name,
        "fine_tune_at": stage.at,
        "learning_rate": rate.model_dump(mode="json") if hasattr(rate, "model_dump") else rate,
        "best_val_accuracy": max(r["val_accuracy"] for r in records),
        "final_val_accuracy": records[-1]["val_accuracy"],
        "seconds": time.perf_counter() - start,
        "epochs": records,
    }


def _with_budget_left(stage: FineTune, budget_seconds: float | None, started: float) -> FineTune:
    """``stage`` with what is left of ``budget_seconds`` since ``started`` as its budget (at least
    a second: ``training.fit`` then trains one epoch and says so)."""
    if budget_seconds is None:
        return stage
    left = max(budget_seconds - (time.perf_counter() - started), 1.0)
    return stage.model_copy(update={"budget_minutes": left / 60})


def _rate_label(rate: Any) -> str:
    """``1e-05``, or ``max1e-04`` for a schedule (its peak)."""
    return f"{rate:g}" if isinstance(rate, (int, float)) else f"max{max(r for _, r in rate.knots):g}"


def _activations(bottom: keras.Model, train: Split, validation: Split, params: TransferTrainingParams,
                 runtime: Runtime):
    """The frozen bottom's outputs, computed once: training images in each of ``cached_views``
    (labels repeated to match), validation images as they are. Stored as float16 to halve memory,
    and made chunk by chunk (view, then the frozen layers) straight into one array: no view of the
    whole split, no float32 copy, no concatenation."""
    started = time.perf_counter()
    seed = seed_stage(runtime.seed, "transfer_training/cached_views")
    n, views = len(train["images"]), list(params.cached_views)
    shape = bottom.output_shape[1:]

    def run(images: np.ndarray, out: np.ndarray, view: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
        for start in range(0, len(images), VIEW_CHUNK):
            chunk = images[start:start + VIEW_CHUNK]
            out[start:start + VIEW_CHUNK] = training.predict(bottom, chunk if view is None else view(chunk),
                                                             params.eval_batch_size)
        return out

    x_train = np.empty((n * len(views), *shape), "float16")
    for index, view in enumerate(views):
        run(train["images"], x_train[index * n:(index + 1) * n], _view(view, index, params, seed))
    y_train = np.tile(train["labels"], len(views))
    x_val = run(validation["images"], np.empty((len(validation["images"]), *shape), "float16"))
    logger.info("Cached the frozen layers' activations %s for %d training images × %s and %d validation images "
                "(%.2f GB in float16) in %.0f s.", shape, n, views, len(validation["labels"]),
                (x_train.nbytes + x_val.nbytes) / 1e9, time.perf_counter() - started)
    return (x_train, y_train), (x_val, validation["labels"])


VIEW_CHUNK = 2048  # images viewed, and run through the frozen layers, at a time


def _view(view: str, index: int, params: TransferTrainingParams, seed: int) -> Callable[[np.ndarray], np.ndarray] | None:
    """``original`` (None: the images as they are), ``mirrored``, or ``augmented``: one seeded draw
    of the configured augmentation (each ``augmented`` in the list a different draw), as a function
    of a chunk of uint8 images."""
    if view == "original":
        return None
    if view == "mirrored":
        return lambda images: images[:, :, ::-1]
    layer = augmentation.build_augmentation(params.fine_tune.augmentation, seed=seed + index)

    def augmented(images: np.ndarray) -> np.ndarray:
        drawn = keras.ops.convert_to_numpy(layer(images.astype("float32"), training=True))
        return np.clip(np.round(drawn), 0, 255).astype("uint8")

    return augmented
