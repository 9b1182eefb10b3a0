"""The one training loop both training pipelines use: a ``schemas.Stage`` in, ``model.fit`` with
Keras' own callbacks and a few of ours, one record per epoch out.

Everything here is backend-agnostic Keras 3 (no TensorFlow): data go in as NumPy arrays, images
as ``uint8``; the model does its own scaling, and ``fit`` puts the stage's augmentation in front of
it while training (so the delivered model carries no training-only layer).

Learning rates are given per stage (``schemas.Schedule``: knots at fractions of the stage), so a
stage shortened to fewer epochs still ends annealed.

Randomness: each stage seeds itself from the run's seed and its own name (``runtime.seed_stage``).

Resuming. ``fit`` keeps a checkpoint folder per stage under ``checkpoint_dir``, named by the stage
and a fingerprint of everything that defines it: the stage's parameters, the run's seed and
precision, the model's starting weights and which of them train, and the data. A run killed in
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
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from cifar_kedro import augmentation as augmentation_module
from cifar_kedro.datasets import atomic_path
from cifar_kedro.layers import AlternatingFlip, PiecewiseLinearSchedule
from cifar_kedro.models import all_layers, calibrate_batchnorm
from cifar_kedro.runtime import devices_per_batch, seed_stage
from cifar_kedro.schemas import Augmentation, LearningRate, Lookahead, Muon, Optimizer, Runtime, Schedule, Stage
from cifar_kedro.splits import Split

logger = logging.getLogger(__name__)


class TrainingDivergedError(FloatingPointError):
    """The loss became NaN or infinite."""


# ---------------------------------------------------------------------------- optimizer
def learning_rate_schedule(rate: LearningRate, total_steps: int, accumulation: int = 1) -> float | PiecewiseLinearSchedule:
    """A constant rate, or a ``Schedule``'s knots turned from fractions of the stage into steps
    (optimizer steps of ``accumulation`` micro-batches each)."""
    if not isinstance(rate, Schedule):
        return float(rate)
    fractions, rates = zip(*rate.knots)
    return PiecewiseLinearSchedule([round(f * total_steps) for f in fractions], list(rates), every=accumulation)


class ScaledLearningRates:
    """Mixin for a Keras optimizer: per-variable learning-rate multipliers, matched by a substring
    of the variable's path.

    Each multiplier is one of the optimizer's own variables (``add_variable``), so it is part of
    the optimizer state that a compiled, stateless train step (JAX) carries in and out, and a
    callback can change it between epochs (``StopTraining``) without retracing the step. A
    multiplier of 0 freezes its variables outright, weight decay included. A pattern that matches
    no trainable variable is an error: a typo must not silently train everything at the base rate.
    Weight decay stays Keras' decoupled one at the base rate, as airbench's per-group decay is.
    """

    def __init__(self, *args, lr_scales: dict[str, float], **kwargs):
        super().__init__(*args, **kwargs)
        self.lr_scales = {
            pattern: self.add_variable((), initializer=keras.initializers.Constant(float(scale)), dtype="float32",
                                       name=f"lr_scale_{index}")
            for index, (pattern, scale) in enumerate(lr_scales.items())
        }

    def build(self, variables):
        super().build(variables)
        _check_patterns("optimizer.lr_scales / trains_for_epochs", self.lr_scales, variables)
        self._scale_of = [next((scale for pattern, scale in self.lr_scales.items() if pattern in v.path), None)
                          for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        scale = self._scale_of[self._get_variable_index(variable)]  # the backend may pass its own variable
        if scale is None:
            return super().update_step(gradient, variable, learning_rate)
        before = keras.ops.copy(variable)  # a copy: TensorFlow would otherwise read the variable after the update
        super().update_step(gradient, variable, learning_rate * keras.ops.cast(scale, keras.ops.dtype(learning_rate)))
        # A multiplier of 0 freezes the variable outright: momentum would otherwise still move it.
        after = keras.ops.convert_to_tensor(variable)
        self.assign(variable, keras.ops.where(keras.ops.convert_to_tensor(scale) > 0, after, before))

    def _decays(self, variable) -> Any:
        """Whether weight decay applies to ``variable`` now: not while a multiplier of 0 freezes it."""
        scale = self._scale_of[self._get_variable_index(variable)]
        return True if scale is None else keras.ops.convert_to_tensor(scale) > 0

    def _apply_weight_decay(self, variables):  # Keras' own, but only where _decays
        if self.weight_decay is None:
            return
        for variable in variables:
            decays = self._decays(variable)
            if decays is False or not self._use_weight_decay(variable):
                continue
            rate = keras.ops.cast(self.learning_rate, variable.dtype) * keras.ops.cast(self.weight_decay, variable.dtype)
            self.assign(variable, variable - variable * rate * keras.ops.cast(decays, variable.dtype))


class ScaledSGD(ScaledLearningRates, keras.optimizers.SGD):
    pass


class ScaledAdam(ScaledLearningRates, keras.optimizers.Adam):
    pass


class ScaledAdamW(ScaledLearningRates, keras.optimizers.AdamW):
    pass


# The quintic Newton-Schulz iteration's coefficients (K. Jordan's Muon).
NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)


def orthogonalized(matrix, steps: int):
    """``matrix`` with its singular values pushed towards 1 (≈ U Vᵀ of its SVD) by ``steps``
    Newton-Schulz iterations, as Muon computes it."""
    a, b, c = NEWTON_SCHULZ
    wide = matrix.shape[0] <= matrix.shape[1]
    x = matrix if wide else keras.ops.transpose(matrix)
    x = x / (keras.ops.norm(x) + 1e-7)
    for _ in range(steps):
        gram = x @ keras.ops.transpose(x)
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x if wide else keras.ops.transpose(x)


class MuonSGD(ScaledSGD):
    """SGD, with Muon (``schemas.Muon``) for the variables ``muon.variables`` names (airbench94_muon).

    A Muon variable (a convolution kernel, its output channels last) keeps its own momentum; each
    step it is rescaled to norm √(output channels), then moved by ``learning_rate`` times the
    orthogonalized (Nesterov) momentum, reshaped to output channels × everything else. It gets no
    weight decay. Its learning rate is its own schedule over the stage's ``total_steps``.
    """

    def __init__(self, *args, muon: Muon, total_steps: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.muon = muon
        self.muon_rate = learning_rate_schedule(muon.learning_rate, total_steps)

    def build(self, variables):
        super().build(variables)
        _check_patterns("optimizer.muon.variables", self.muon.variables, variables)
        self._muon_momentum = [
            self.add_variable_from_reference(v, "muon_momentum")
            if any(pattern in v.path for pattern in self.muon.variables) else None
            for v in variables
        ]

    def update_step(self, gradient, variable, learning_rate):
        momentum = self._muon_momentum[self._get_variable_index(variable)]
        if momentum is None:
            return super().update_step(gradient, variable, learning_rate)
        mu = self.muon.momentum
        self.assign(momentum, mu * momentum + gradient)
        direction = gradient + mu * momentum if self.muon.nesterov else momentum
        channels = variable.shape[-1]
        step = orthogonalized(keras.ops.transpose(keras.ops.reshape(direction, (-1, channels))),
                              self.muon.newton_schulz_steps)
        step = keras.ops.reshape(keras.ops.transpose(step), variable.shape)
        rate = self.muon_rate(self.iterations) if callable(self.muon_rate) else self.muon_rate
        normalized = variable * (channels**0.5 / keras.ops.norm(keras.ops.reshape(variable, (-1,))))
        self.assign(variable, normalized - keras.ops.cast(rate, variable.dtype) * step)

    def _decays(self, variable):
        if self._muon_momentum[self._get_variable_index(variable)] is not None:
            return False
        return super()._decays(variable)


def _check_patterns(option: str, patterns, variables) -> None:
    unmatched = [pattern for pattern in patterns if not any(pattern in v.path for v in variables)]
    if unmatched:
        examples = ", ".join(f"'{v.path}'" for v in variables[:4])
        raise ValueError(
            f"{option}: the pattern(s) {unmatched} match no trainable variable of the model (its "
            f"{len(variables)} variable paths read like {examples}, …). Fix the pattern in the training "
            "pipeline's parameters, or remove it."
        )


# name → (plain optimizer, the same with per-variable learning-rate multipliers)
OPTIMIZERS = {
    "sgd": (keras.optimizers.SGD, ScaledSGD),
    "adam": (keras.optimizers.Adam, ScaledAdam),
    "adamw": (keras.optimizers.AdamW, ScaledAdamW),
}


def make_optimizer(options: Optimizer, total_steps: int, accumulation: int = 1) -> keras.optimizers.Optimizer:
    """The optimizer ``options`` name, with its learning rate over a stage of ``total_steps`` steps;
    with ``accumulation`` > 1 each step averages the gradients of that many calls (micro-batches)."""
    kwargs: dict[str, Any] = {"learning_rate": learning_rate_schedule(options.learning_rate, total_steps, accumulation)}
    if accumulation > 1:
        kwargs["gradient_accumulation_steps"] = accumulation
    if options.weight_decay is not None:
        kwargs["weight_decay"] = options.weight_decay
    if options.name == "sgd":
        kwargs |= {"momentum": options.momentum, "nesterov": options.nesterov}
    scales = {**options.lr_scales, **{pattern: 1.0 for pattern in options.trains_for_epochs}}
    if options.muon is not None:
        return MuonSGD(lr_scales=scales, muon=options.muon, total_steps=total_steps, **kwargs)
    plain, scaled = OPTIMIZERS[options.name]
    return scaled(lr_scales=scales, **kwargs) if scales else plain(**kwargs)


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


def with_augmentation(model: keras.Model, augmentation: Augmentation | None, seed: int | None = None) -> keras.Model:
    """The model to train: ``augmentation`` (active in training only) in front of ``model``,
    whose weights it shares. ``model`` itself stays free of training-only layers."""
    if augmentation is None or not augmentation.active:
        return model
    inputs = keras.Input(model.input.shape[1:], dtype=model.input.dtype, name="image")
    augmented = augmentation_module.build_augmentation(augmentation, seed=seed)(inputs)
    return keras.Model(inputs, model(augmented), name=f"{model.name}_training")


# ---------------------------------------------------------------------------- callbacks
def _clock(seconds: float) -> str:
    seconds = max(int(round(seconds)), 0)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress(keras.callbacks.Callback):
    """Times each epoch, logs progress a person can follow, and records the epoch.

    While an epoch runs, a log line every ``every_seconds``: batch, images/s, running loss and
    accuracy, time left in the epoch and in the stage. After each epoch, a summary, and a record:
    ``epoch`` (1-based), Keras' logs (``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``),
    ``learning_rate``, ``seconds`` and ``images_per_second`` (training batches only). With a
    ``path`` the records are written there after every epoch, so a resumed fit returns the whole
    history.
    """

    def __init__(self, stage: str, num_train: int, batch_size: int, path: Path | None = None,
                 every_seconds: float = 30.0):
        super().__init__()
        self.stage, self.num_train, self.batch_size, self.every = stage, num_train, batch_size, every_seconds
        self.path = path
        self.records: dict[int, dict[str, float]] = {}
        if path is not None and path.exists():
            self.records = {r["epoch"]: r for r in json.loads(path.read_text())}
        self.validation_seconds = 0.0

    @property
    def history(self) -> list[dict[str, float]]:
        return [self.records[e] for e in sorted(self.records)]

    def on_train_begin(self, logs=None):
        self.epochs = int(self.params.get("epochs") or 1)
        self.steps = int(self.params.get("steps") or math.ceil(self.num_train / self.batch_size))

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.epoch_start = epoch, time.perf_counter()
        self.last_line, self.batch_start, self.train_seconds = self.epoch_start, None, None

    def on_train_batch_begin(self, batch, logs=None):
        if self.batch_start is None:
            self.batch_start = time.perf_counter()  # after the epoch's set-up (and the first trace)

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        if now - self.last_line < self.every or batch + 1 >= self.steps:
            return
        self.last_line = now
        per_step = (now - self.batch_start) / max(batch, 1) if batch else now - self.epoch_start
        epoch_left = per_step * (self.steps - batch - 1)
        stage_left = epoch_left + (self.epochs - self.epoch - 1) * (per_step * self.steps + self.validation_seconds)
        logs = logs or {}
        logger.info(
            "%s · epoch %d/%d · batch %d/%d (%d%%) · %.0f img/s · loss %.4f · accuracy %.4f · epoch left %s · stage left %s",
            self.stage, self.epoch + 1, self.epochs, batch + 1, self.steps, 100 * (batch + 1) / self.steps,
            self.batch_size / per_step, float(logs.get("loss", math.nan)), float(logs.get("accuracy", math.nan)),
            _clock(epoch_left), _clock(stage_left),
        )

    def on_test_begin(self, logs=None):
        if self.train_seconds is None:
            self.train_seconds = time.perf_counter() - self.epoch_start

    def on_epoch_end(self, epoch, logs=None):
        seconds = time.perf_counter() - self.epoch_start
        train_seconds = self.train_seconds or seconds
        self.validation_seconds = seconds - train_seconds
        record = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
        record["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        record |= {"seconds": seconds, "images_per_second": self.num_train / max(train_seconds, 1e-9)}
        self.records = {e: r for e, r in self.records.items() if e <= epoch} | {epoch + 1: record}
        if self.path is not None:
            _write_json_atomic(self.path, self.history)
        logger.info(
            "%s · epoch %d/%d done in %s · %.0f img/s · loss %.4f · accuracy %.4f · val_loss %.4f · "
            "val_accuracy %.4f · learning rate %.3g · stage left %s",
            self.stage, epoch + 1, self.epochs, _clock(seconds), record["images_per_second"],
            record.get("loss", math.nan), record.get("accuracy", math.nan), record.get("val_loss", math.nan),
            record.get("val_accuracy", math.nan), record["learning_rate"], _clock((self.epochs - epoch - 1) * seconds),
        )


class StopTraining(keras.callbacks.Callback):
    """From epoch ``epochs`` on, the variables matching ``pattern`` get no more updates (their
    learning-rate multiplier becomes 0; see ``ScaledLearningRates``)."""

    def __init__(self, pattern: str, epochs: int):
        super().__init__()
        self.pattern, self.epochs = pattern, epochs

    def on_epoch_begin(self, epoch, logs=None):
        self.model.optimizer.lr_scales[self.pattern].assign(0.0 if epoch >= self.epochs else 1.0)


class SetEpoch(keras.callbacks.Callback):
    """Tells epoch-aware augmentation layers (``layers.AlternatingFlip``) which epoch it is."""

    def __init__(self, layers: list[keras.layers.Layer]):
        super().__init__()
        self.layers = layers

    def on_epoch_begin(self, epoch, logs=None):
        for layer in self.layers:
            layer.epoch.assign(epoch)


class LookaheadEMA(keras.callbacks.Callback):
    """airbench's Lookahead: every ``every`` steps the float weights (BatchNorm statistics too)
    move into an exponential moving average, decay ``decay × (step / total)^power``, and are set
    to it; training ends on the average. Its state lives in this callback: a resumed fit starts a
    new average."""

    def __init__(self, config: Lookahead):
        super().__init__()
        self.config = config

    def on_train_begin(self, logs=None):
        self.average = [keras.ops.convert_to_numpy(v) for v in _float_weights(self.model)]
        self.total = max(int(self.params.get("epochs") or 1) * int(self.params.get("steps") or 1), 1)
        self.step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.config.every == 0:
            self._update(self.config.decay * (self.step / self.total) ** self.config.power)

    def on_train_end(self, logs=None):
        self._update(1.0)  # keep the average

    def _update(self, decay: float) -> None:
        # Through ``self.model``: on JAX that writes the train step's state back into the variables.
        for variable, average in zip(_float_weights(self.model), self.average):
            average += (1.0 - decay) * (keras.ops.convert_to_numpy(variable) - average)
            variable.assign(average)


class CalibrateBatchNorm(keras.callbacks.Callback):
    """Once the stage ends (after Lookahead's last average), and with ``each_epoch`` before every
    validation too, the trained network's BatchNormalization statistics are recalibrated on
    ``images``, un-augmented training images (``models.calibrate_batchnorm``): the model delivered
    (and validated) normalizes with the statistics of its own weights.

    Before every validation only where the moving statistics cannot keep up (a few steps an
    epoch): the calibration's eager forward pass delays the next epoch's first train step, by
    35–50 s an epoch for airbench94_muon on 40,000 images (2-core Intel Xeon, TensorFlow)."""

    def __init__(self, network: keras.Model, images: np.ndarray, batch_size: int, each_epoch: bool = False):
        super().__init__()
        self.network, self.images, self.batch_size, self.each_epoch = network, images, batch_size, each_epoch

    def on_test_begin(self, logs=None):
        if self.each_epoch:
            self._calibrate()

    def on_train_end(self, logs=None):
        self._calibrate()

    def _calibrate(self) -> None:
        self.model  # noqa: B018 -- on JAX, Callback.model writes the train step's state into the variables
        calibrate_batchnorm(self.network, self.images, batch_size=self.batch_size)


def _float_weights(model: keras.Model) -> list[keras.Variable]:
    return [v for v in model.weights if "float" in str(v.dtype)]


# ---------------------------------------------------------------------------- fit
def fit(
    model: keras.Model,
    train: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    stage: Stage,
    *,
    name: str,
    runtime: Runtime,
    checkpoint_dir: str | os.PathLike | None = None,
    batchnorm_calibration_images: int = 0,
    batchnorm_calibration_each_epoch: bool = False,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> list[dict[str, float]]:
    """Train ``model`` for one ``stage`` on ``train`` = (inputs, int labels), validating every epoch;
    returns one record per epoch (``Progress``).

    ``name`` names the stage in logs and checkpoints, and seeds it (``runtime.seed_stage``).
    ``stage.augmentation`` runs in front of the model during training only; ``stage.lookahead``
    keeps an average of the weights (``LookaheadEMA``); with ``batchnorm_calibration_images``,
    that many training images recalibrate the BatchNorm statistics at the end (and before each
    validation with ``batchnorm_calibration_each_epoch``; ``CalibrateBatchNorm``). With a ``checkpoint_dir`` the stage resumes after an
    interruption and is skipped once finished. ``callbacks`` are more Keras callbacks, called after
    the loop's own progress record.
    """
    started = time.perf_counter()
    seed = seed_stage(runtime.seed, name)
    step_batch = stage.step_batch_size
    (x_train, y_train), (x_val, y_val) = _shared_evenly(name, step_batch, *train), validation
    stage_dir = _stage_dir(checkpoint_dir, name, _resume_key(model, stage, runtime, batchnorm_calibration_images),
                           x_train, y_train) if checkpoint_dir else None
    trainer = with_augmentation(model, stage.augmentation, seed)
    if stage.budget_minutes is not None:
        stage = stage.model_copy(update={"epochs": epochs_within_budget(
            trainer, stage, runtime, x_train, len(x_val) + batchnorm_calibration_images * batchnorm_calibration_each_epoch,
            name=name, started=started,
            saved=stage_dir / "budget.json" if stage_dir else None)})
    total_steps = stage.epochs * math.ceil(len(x_train) / stage.batch_size)
    compile_model(trainer, make_optimizer(stage.optimizer, total_steps, stage.batch_size // step_batch),
                  label_smoothing=stage.label_smoothing, jit_compile=runtime.jit_compile)
    if stage_dir is not None and (stage_dir / "done.json").exists():
        logger.info("Stage '%s' already finished in %s: loading its weights instead of training.", name, stage_dir)
        return _load_finished(trainer, stage_dir)

    progress = Progress(name, len(x_train), step_batch, stage_dir / "epochs.json" if stage_dir else None)
    callbacks = [keras.callbacks.TerminateOnNaN(), progress, *callbacks, *_stage_callbacks(trainer, stage)]
    if batchnorm_calibration_images:  # after Lookahead, whose last average it recalibrates
        chosen = np.random.default_rng(seed).permutation(len(x_train))[:batchnorm_calibration_images]
        callbacks.append(CalibrateBatchNorm(model, x_train[np.sort(chosen)], step_batch,
                                            each_epoch=batchnorm_calibration_each_epoch))
    if stage_dir is not None:  # after Progress, so that an epoch in the backup is always in the log too
        callbacks.append(keras.callbacks.BackupAndRestore(str(stage_dir / "backup")))

    logger.info("Stage '%s': %d epochs of %d images, batch %d%s.", name, stage.epochs, len(x_train), stage.batch_size,
                f" in slices of {step_batch}" if step_batch != stage.batch_size else "")
    num_classes = model.output_shape[-1]
    batches = Batches(x_train, y_train, step_batch, num_classes, seed=seed)
    try:
        trainer.fit(batches, epochs=stage.epochs, steps_per_epoch=batches.steps,
                    validation_data=_padded_to(devices_per_batch(), x_val, one_hot(y_val, num_classes)),
                    shuffle=False, callbacks=callbacks, verbose=0)  # Batches shuffles, seeded
    finally:
        batches.release()
    _raise_if_diverged(name, progress.history, stage_dir)
    if stage_dir is not None:
        np.savez(stage_dir / "weights.npz", *trainer.get_weights())
        _write_json_atomic(stage_dir / "done.json", progress.history)
    warn_if_validation_fell(name, progress.history)
    return progress.history


class Batches(keras.utils.PyDataset):
    """The training set as shuffled batches of (inputs, one-hot labels), sliced from the arrays as
    they are, one epoch after another without end: batch ``i`` is step ``i % steps`` of epoch
    ``i // steps``, whose order is a fresh permutation drawn from ``seed`` and the epoch.

    Keras' own array input would first turn the whole training set into a tensor, and its input
    pipeline keeps more copies; for a few GB of cached activations that multiplied the run's peak
    memory (issue 20). Here only one batch at a time is copied. Endless, so that ``fit`` reads it
    through one iterator for the whole stage (``steps_per_epoch=steps``): on TensorFlow a new
    iterator each epoch cost up to 3.4 s before the epoch's first step (issue 19).
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, num_classes: int, *, seed: int):
        super().__init__()
        self.x, self.y, self.batch_size, self.num_classes, self.seed = x, y, batch_size, num_classes, seed
        self.steps = math.ceil(len(x) / batch_size)
        self.epoch, self.order = 0, self._permutation(0)

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.x))

    @property
    def num_batches(self) -> None:
        return None  # endless: fit is given steps_per_epoch

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        epoch, step = divmod(index, self.steps)
        if epoch != self.epoch:
            self.epoch, self.order = epoch, self._permutation(epoch)
        rows = np.sort(self.order[step * self.batch_size:(step + 1) * self.batch_size])  # sorted: a faster gather
        return self.x[rows], one_hot(self.y[rows], self.num_classes)

    def release(self) -> None:
        """Let go of the arrays once training is over. On TensorFlow, Keras feeds a PyDataset
        through ``tf.data.Dataset.from_generator``, whose generator TensorFlow keeps alive after
        ``fit`` returns, and this object with it: without this, a GB of cached activations outlived
        the node that made them (issue 20)."""
        self.x = self.y = self.order = None


# Train steps a time budget times (after one that traces), and prediction batches.
BUDGET_PROBE_STEPS = 3


def epochs_within_budget(trainer: keras.Model, stage: Stage, runtime: Runtime, x_train: np.ndarray,
                         predicted_per_epoch: int, *, name: str, started: float, saved: Path | None = None) -> int:
    """How many epochs of ``stage`` fit in its ``budget_minutes``, counted from ``started``.

    A few train steps on the first batch, and a prediction batch, measure this machine's throughput
    (``measure_epoch_seconds``); the weights are put back afterwards. An epoch costs its training
    steps and ``predicted_per_epoch`` images predicted (validation, BatchNorm calibration). At
    least one epoch. With ``saved`` (the stage's checkpoint folder) the choice is written there and
    a resumed stage keeps it.
    """
    if saved is not None and saved.exists():
        return int(json.loads(saved.read_text())["epochs"])
    epoch_seconds = measure_epoch_seconds(trainer, stage, runtime, x_train, predicted_per_epoch)
    left = stage.budget_minutes * 60 - (time.perf_counter() - started)
    epochs = max(1, math.floor(left / epoch_seconds))
    logger.info("Stage '%s': a budget of %.1f min holds %d epochs of %.0f s (measured on this machine; %.0f s left "
                "after measuring).", name, stage.budget_minutes, epochs, epoch_seconds, left)
    if left < epoch_seconds:
        logger.warning("Stage '%s': its budget of %.1f min is less than one epoch (%.0f s); training one epoch.",
                       name, stage.budget_minutes, epoch_seconds)
    if saved is not None:
        _write_json_atomic(saved, {"budget_minutes": stage.budget_minutes, "epochs": epochs,
                                   "epoch_seconds": epoch_seconds})
    return epochs


def measure_epoch_seconds(trainer: keras.Model, stage: Stage, runtime: Runtime, x_train: np.ndarray,
                          predicted_per_epoch: int) -> float:
    """Seconds of one epoch of ``stage`` on this machine, from ``BUDGET_PROBE_STEPS`` timed train
    steps on the first batch (after one that traces) and one timed prediction batch; ``trainer``'s
    weights are restored afterwards (it is compiled again before training)."""
    weights = trainer.get_weights()
    compile_model(trainer, make_optimizer(stage.optimizer, BUDGET_PROBE_STEPS + 1),
                  label_smoothing=stage.label_smoothing, jit_compile=runtime.jit_compile)
    x = x_train[:stage.step_batch_size]
    y = one_hot(np.zeros(len(x), "int64"), trainer.output_shape[-1])
    trainer.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(BUDGET_PROBE_STEPS):
        trainer.train_on_batch(x, y)
    step_seconds = (time.perf_counter() - start) / BUDGET_PROBE_STEPS
    trainer.predict_on_batch(x)
    start = time.perf_counter()
    trainer.predict_on_batch(x)
    predict_seconds = time.perf_counter() - start
    trainer.set_weights(weights)
    return (math.ceil(len(x_train) / len(x)) * step_seconds
            + math.ceil(predicted_per_epoch / len(x)) * predict_seconds)


def _stage_callbacks(trainer: keras.Model, stage: Stage) -> list[keras.callbacks.Callback]:
    """What the stage's recipe adds to the loop: variables that stop training, epoch-aware
    augmentation, Lookahead."""
    callbacks = [StopTraining(pattern, n) for pattern, n in stage.optimizer.trains_for_epochs.items()]
    epoch_aware = [layer for layer in all_layers(trainer) if isinstance(layer, AlternatingFlip)]
    callbacks += [SetEpoch(epoch_aware)] if epoch_aware else []
    callbacks += [LookaheadEMA(stage.lookahead)] if stage.lookahead is not None else []
    return callbacks


def _shared_evenly(name: str, batch_size: int, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The training set, less the images that would not split evenly over the devices."""
    devices = devices_per_batch()
    if batch_size % devices:
        raise ValueError(f"Stage '{name}': batch_size {batch_size} does not split evenly over the {devices} devices "
                         f"of distribution: data_parallel; set the stage's batch_size to a multiple of {devices}.")
    if len(x) % devices:  # so that the last, partial batch splits evenly too
        logger.info("Stage '%s': %d of %d training images left out, to share every batch between %d devices.",
                    name, len(x) % devices, len(x), devices)
    keep = len(x) - len(x) % devices
    return x[:keep], y[:keep]


def _raise_if_diverged(name: str, history: list[dict[str, float]], stage_dir: Path | None) -> None:
    """After ``keras.callbacks.TerminateOnNaN`` stopped a stage: a clear error, and no checkpoint
    of the broken weights left to resume from."""
    bad = next((r for r in history if not math.isfinite(r.get("loss", 0.0))), None)
    if bad is None:
        return
    if stage_dir is not None:
        shutil.rmtree(stage_dir, ignore_errors=True)
    raise TrainingDivergedError(
        f"Training stage '{name}' diverged: the loss became {bad['loss']} in epoch {bad['epoch']}. Lower the "
        "stage's learning rate in the pipeline's parameters (or check the input data); no model was saved."
    )


def _resume_key(model: keras.Model, stage: Stage, runtime: Runtime, calibration_images: int) -> dict[str, Any]:
    """Everything besides the data that defines what a stage trains: its parameters, the run's
    seed and precision, and the model it starts from (its weights, and which of them train)."""
    weights = hashlib.sha256()
    for variable in model.weights:
        weights.update(memoryview(np.ascontiguousarray(keras.ops.convert_to_numpy(variable))))
    # A budget's epochs are chosen once and kept in the stage's folder (epochs_within_budget), so the
    # minutes themselves are not part of the key: a resumed stage may have been given different ones.
    stage = stage.model_copy(update={"budget_minutes": 0.0}) if stage.budget_minutes else stage
    return {"stage": stage.model_dump(mode="json"), "runtime": runtime.model_dump(mode="json", include={"seed", "precision"}),
            "weights": weights.hexdigest(), "trainable": [v.trainable for v in model.weights],
            "batchnorm_calibration_images": calibration_images}


# Validation accuracy this far below its best epoch at the end of a stage gets a warning.
VALIDATION_FALL_WARNING = 0.05


def warn_if_validation_fell(stage: str, history: list[dict[str, float]]) -> None:
    """Log a warning when a stage ends far below its best validation accuracy: the delivered
    model (the last epoch's) is then worse than one the run already had."""
    scored = [r for r in history if "val_accuracy" in r]
    if not scored:
        return
    best, last = max(scored, key=lambda r: r["val_accuracy"]), scored[-1]
    if best["val_accuracy"] - last["val_accuracy"] > VALIDATION_FALL_WARNING:
        logger.warning(
            "Stage '%s' ended at %.1f%% validation accuracy, %.1f points below its best (%.1f%% at epoch %d), "
            "while training accuracy went from %.1f%% to %.1f%%: the delivered model is the last epoch's. The "
            "network overfits or the recipe does not suit this data: try fewer epochs, a lower learning rate or "
            "more augmentation.",
            stage, 100 * last["val_accuracy"], 100 * (best["val_accuracy"] - last["val_accuracy"]),
            100 * best["val_accuracy"], best["epoch"], 100 * best.get("accuracy", math.nan),
            100 * last.get("accuracy", math.nan),
        )


def _stage_dir(checkpoint_dir, stage: str, resume_key: Any, x: np.ndarray, y: np.ndarray) -> Path:
    digest = hashlib.sha256(json.dumps(resume_key, sort_keys=True, default=str).encode())
    digest.update(memoryview(np.ascontiguousarray(x)))  # no copy of a large array
    digest.update(np.asarray(y, dtype=np.int64).tobytes())
    path = Path(checkpoint_dir) / f"{stage.replace('/', '-')}-{digest.hexdigest()[:16]}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _load_finished(model: keras.Model, stage_dir: Path) -> list[dict[str, float]]:
    with np.load(stage_dir / "weights.npz") as saved:
        model.set_weights([saved[f"arr_{i}"] for i in range(len(saved.files))])
    return json.loads((stage_dir / "done.json").read_text())


def _write_json_atomic(path: Path, data: Any) -> None:
    with atomic_path(path, ".json") as tmp:
        tmp.write_text(json.dumps(data, indent=1))


# ---------------------------------------------------------------------------- evaluation
def predict(model: keras.Model, images: np.ndarray, batch_size: int) -> np.ndarray:
    """The model's outputs (class probabilities) for every image, as a float32 array. Under
    ``distribution: data_parallel`` the images are padded to split evenly over the devices and
    the padding's outputs dropped."""
    padded, _, _ = _padded_to(devices_per_batch(), images)
    outputs = model.predict(padded, batch_size=batch_size, verbose=0)
    return np.asarray(outputs, dtype="float32")[: len(images)]


def _padded_to(devices: int, x: np.ndarray, y: np.ndarray | None = None):
    """``(x, y, sample_weight)`` with copies of the first row appended, weighted 0, until every
    batch splits evenly over ``devices``: accuracy counts the real rows only (the loss divides by
    the padded count, < ``devices`` rows more). Unchanged, weight ``None``, where nothing is needed."""
    extra = -len(x) % devices
    if not extra:
        return x, y, None
    weight = np.concatenate([np.ones(len(x), "float32"), np.zeros(extra, "float32")])
    x = np.concatenate([x, np.repeat(x[:1], extra, axis=0)])
    y = None if y is None else np.concatenate([y, np.repeat(y[:1], extra, axis=0)])
    return x, y, weight


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
