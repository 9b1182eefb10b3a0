"""The one training loop both training pipelines use: compile, fit, resume, record, evaluate.

Everything here is backend-agnostic Keras 3 (no TensorFlow): data go in as NumPy arrays, images
as ``uint8``; the model does its own augmentation and scaling.

Resuming. ``fit`` keeps a checkpoint folder per stage under ``checkpoint_dir``, named by the stage
and a fingerprint of everything that defines it (``resume_key`` and the data). A run killed in
the middle continues from its last finished epoch (``keras.callbacks.BackupAndRestore``: weights,
optimizer state and epoch); a stage that finished is not trained again. The folders are removed
once the pipeline's final model is saved (see ``cifar_kedro.hooks``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from cifar_kedro.datasets import atomic_path
from cifar_kedro.layers import PiecewiseLinearSchedule
from cifar_kedro.splits import Split

logger = logging.getLogger(__name__)


class TrainingDivergedError(FloatingPointError):
    """The loss became NaN or infinite."""


# ---------------------------------------------------------------------------- set-up
def configure(*, seed: int, mixed_precision: str | None = None) -> None:
    """Seed every random generator and set the global dtype policy; call before building a model."""
    keras.utils.set_random_seed(seed)
    keras.mixed_precision.set_global_policy(mixed_precision or "float32")


def make_optimizer(config: dict[str, Any], steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """An optimizer from its parameters.

    ``config``: ``name`` (``adam`` | ``sgd``), ``learning_rate`` (a number, or ``knots``: a list of
    ``[epoch, rate]`` pairs for a piecewise-linear schedule), and the optimizer's own keywords
    (``momentum``, ``nesterov``, ``weight_decay``, …).
    """
    config = dict(config)
    name = config.pop("name")
    rate = config.pop("learning_rate")
    if isinstance(rate, dict):
        epochs, rates = zip(*rate["knots"])
        rate = PiecewiseLinearSchedule([round(e * steps_per_epoch) for e in epochs], list(rates))
    optimizers = {"adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW, "sgd": keras.optimizers.SGD}
    if name not in optimizers:
        raise ValueError(f"Unknown optimizer name '{name}' in the training parameters; use one of {sorted(optimizers)}.")
    return optimizers[name](learning_rate=rate, **config)


def compile_model(model, optimizer, *, label_smoothing: float = 0.0, jit_compile: bool | str = "auto") -> None:
    """Compile for one-hot labels (so label smoothing works) with accuracy as the metric."""
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
        metrics=["accuracy"],
        jit_compile=jit_compile,
    )


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype="float32")[labels]


# ---------------------------------------------------------------------------- callbacks
class RaiseOnNaN(keras.callbacks.Callback):
    """Stop with a clear error as soon as the training loss stops being finite."""

    def __init__(self, stage: str):
        super().__init__()
        self.stage = stage
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            raise TrainingDivergedError(
                f"Training stage '{self.stage}' diverged: the loss became {loss} at epoch {self.epoch + 1}, "
                f"batch {batch + 1}. Lower the stage's learning rate in the pipeline's parameters (or check "
                "the input data); no model was saved."
            )


class EpochLog(keras.callbacks.Callback):
    """Records each epoch's metrics, learning rate, wall time and training throughput.

    With a ``path`` the records are also written there after every epoch; the file survives an
    interrupted run, so a resumed fit returns the whole history.
    """

    def __init__(self, path: Path | None, num_train: int):
        super().__init__()
        self.path = path
        self.num_train = num_train
        self.records: dict[int, dict[str, float]] = {}
        if path is not None and path.exists():
            self.records = {r["epoch"]: r for r in json.loads(path.read_text())}

    def on_epoch_begin(self, epoch, logs=None):
        self.start = self.train_end = time.perf_counter()

    def on_test_begin(self, logs=None):
        self.train_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        train_seconds = (self.train_end if self.train_end > self.start else now) - self.start
        record = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
        record["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        record["seconds"] = now - self.start
        record["images_per_second"] = self.num_train / max(train_seconds, 1e-9)
        self.records = {e: r for e, r in self.records.items() if e <= epoch} | {epoch + 1: record}
        if self.path is not None:
            _write_json_atomic(self.path, self.history)

    @property
    def history(self) -> list[dict[str, float]]:
        return [self.records[e] for e in sorted(self.records)]


# ---------------------------------------------------------------------------- fit
def fit(
    model: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    *,
    stage: str,
    epochs: int,
    batch_size: int,
    optimizer: dict[str, Any],
    label_smoothing: float = 0.0,
    jit_compile: bool | str = "auto",
    checkpoint_dir: str | os.PathLike | None = None,
    resume_key: Any = None,
    extra_callbacks: list[keras.callbacks.Callback] = (),
) -> list[dict[str, float]]:
    """Compile ``model`` and train it on ``train`` = (inputs, int labels), validating every epoch.

    Returns one record per epoch: ``epoch`` (1-based), ``loss``, ``accuracy``, ``val_loss``,
    ``val_accuracy``, ``learning_rate``, ``seconds``, ``images_per_second``. With a
    ``checkpoint_dir`` the stage resumes after an interruption and is skipped once finished.
    """
    (x_train, y_train), (x_val, y_val) = train, validation
    num_classes = model.output_shape[-1]
    steps_per_epoch = math.ceil(len(x_train) / batch_size)
    compile_model(model, make_optimizer(optimizer, steps_per_epoch), label_smoothing=label_smoothing,
                  jit_compile=jit_compile)

    stage_dir = _stage_dir(checkpoint_dir, stage, resume_key, x_train, y_train) if checkpoint_dir else None
    if stage_dir is not None and (stage_dir / "done.json").exists():
        logger.info("Stage '%s' already finished in %s: loading its weights instead of training.", stage, stage_dir)
        return _load_finished(model, stage_dir)

    log = EpochLog(stage_dir / "epochs.json" if stage_dir else None, len(x_train))
    callbacks = [RaiseOnNaN(stage), *extra_callbacks, log]
    if stage_dir is not None:
        # After the log, so that an epoch in the backup is always in the log too.
        callbacks.append(keras.callbacks.BackupAndRestore(str(stage_dir / "backup")))

    logger.info("Stage '%s': %d epochs of %d images, batch %d.", stage, epochs, len(x_train), batch_size)
    model.fit(
        x_train,
        one_hot(y_train, num_classes),
        validation_data=(x_val, one_hot(y_val, num_classes)),
        epochs=epochs,
        batch_size=batch_size,
        shuffle=True,
        callbacks=callbacks,
        verbose=2,
    )
    if stage_dir is not None:
        np.savez(stage_dir / "weights.npz", *model.get_weights())
        _write_json_atomic(stage_dir / "done.json", log.history)
    return log.history


def _stage_dir(checkpoint_dir, stage: str, resume_key: Any, x: np.ndarray, y: np.ndarray) -> Path:
    digest = hashlib.sha256(json.dumps(resume_key, sort_keys=True, default=str).encode())
    digest.update(np.ascontiguousarray(x).tobytes())
    digest.update(np.asarray(y, dtype=np.int64).tobytes())
    path = Path(checkpoint_dir) / f"{stage}-{digest.hexdigest()[:16]}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _load_finished(model: keras.Model, stage_dir: Path) -> list[dict[str, float]]:
    with np.load(stage_dir / "weights.npz") as saved:
        model.set_weights([saved[f"arr_{i}"] for i in range(len(saved.files))])
    model.optimizer.build(model.trainable_variables)  # as after a fit, so the saved model is complete
    return json.loads((stage_dir / "done.json").read_text())


def _write_json_atomic(path: Path, data: Any) -> None:
    with atomic_path(path, ".json") as tmp:
        tmp.write_text(json.dumps(data, indent=1))


# ---------------------------------------------------------------------------- evaluation
def predict(model: keras.Model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Class probabilities as a float32 array."""
    return np.asarray(model.predict(images, batch_size=batch_size, verbose=0), dtype="float32")


def evaluate(model: keras.Model, split: Split, batch_size: int) -> dict[str, float]:
    """Plain cross-entropy and accuracy of ``model`` on ``split`` (no label smoothing)."""
    probabilities = predict(model, split["images"], batch_size)
    true = probabilities[np.arange(len(split["labels"])), split["labels"]]
    return {
        "loss": float(-np.mean(np.log(np.clip(true, 1e-7, 1.0)))),
        "accuracy": float(np.mean(probabilities.argmax(axis=1) == split["labels"])),
        "n_images": int(len(split["labels"])),
    }


def validation_metrics(model: keras.Model, validation: Split, batch_size: int) -> dict[str, float]:
    """Node: validation loss and accuracy of a delivered model."""
    metrics = evaluate(model, validation, batch_size)
    return {"val_loss": metrics["loss"], "val_accuracy": metrics["accuracy"], "n_images": metrics["n_images"]}


def count_params(model: keras.Model) -> dict[str, int]:
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    return {"params_total": int(model.count_params()), "params_trainable": trainable}
