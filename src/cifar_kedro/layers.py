"""The project's own Keras objects, for training only: registered (so a training checkpoint loads
under ``safe_mode``) but never part of a delivered model, which holds Keras' built-in layers alone.

Backend-agnostic: only ``keras.ops`` and ``keras.random``, no TensorFlow.
"""

from __future__ import annotations

import keras
from keras import ops

PACKAGE = "cifar_kedro"


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomCutout(keras.layers.Layer):
    """Cutout (DeVries & Taylor, 2017): in training, fill one random ``size``×``size`` square per
    image with ``fill_value``; the square may overlap the border. Identity at inference."""

    def __init__(self, size: int, fill_value: float = 0.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.size = size
        self.fill_value = fill_value
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def call(self, images, training=None):
        if not training:
            return images
        shape = ops.shape(images)
        batch, height, width = shape[0], shape[1], shape[2]
        centre_y = keras.random.randint((batch, 1, 1, 1), 0, height, seed=self.seed_generator)
        centre_x = keras.random.randint((batch, 1, 1, 1), 0, width, seed=self.seed_generator)
        rows = ops.reshape(ops.arange(height), (1, -1, 1, 1))
        cols = ops.reshape(ops.arange(width), (1, 1, -1, 1))
        half = self.size // 2
        inside = (
            (rows >= centre_y - half)
            & (rows < centre_y - half + self.size)
            & (cols >= centre_x - half)
            & (cols < centre_x - half + self.size)
        )
        return ops.where(inside, ops.cast(self.fill_value, images.dtype), images)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "size": self.size, "fill_value": self.fill_value, "seed": self.seed}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PiecewiseLinearSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Learning rate linear between knots ``(step, rate)``, constant outside them.

    The one-cycle shape of Page's ResNet-9 recipe is ``[(0, 0), (5 epochs, 0.4), (24 epochs, 0)]``
    in optimizer steps. It reads ``optimizer.iterations``, so a resumed run continues on schedule.
    Keras passes a schedule its count of calls, which under gradient accumulation counts
    micro-batches: ``every`` of them make one step.
    """

    def __init__(self, steps: list[int], rates: list[float], every: int = 1):
        if len(steps) != len(rates) or len(steps) < 2 or list(steps) != sorted(steps):
            raise ValueError(f"PiecewiseLinearSchedule needs ≥ 2 knots with increasing steps, got {steps}, {rates}.")
        self.steps = [int(s) for s in steps]
        self.rates = [float(r) for r in rates]
        self.every = int(every)

    def __call__(self, step):
        step = ops.cast(ops.floor_divide(step, self.every), "float32")
        rate = ops.convert_to_tensor(self.rates[0], "float32")
        for (s0, r0), (s1, r1) in zip(zip(self.steps, self.rates), zip(self.steps[1:], self.rates[1:])):
            fraction = ops.clip((step - s0) / max(s1 - s0, 1), 0.0, 1.0)
            rate = ops.where(step >= s0, r0 + fraction * (r1 - r0), rate)
        return rate

    def get_config(self):
        return {"steps": self.steps, "rates": self.rates, "every": self.every}


@keras.saving.register_keras_serializable(package=PACKAGE)
class AlternatingFlip(keras.layers.Layer):
    """airbench's alternating flip: each image is mirrored in every other epoch, instead of with
    probability ½ in each. Over any two consecutive epochs every image is seen both ways, which
    adds diversity at no cost (K. Jordan, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU").

    Which epochs an image is mirrored in comes from its own pixels (the parity of their sum, which
    a mirror does not change), so no index travels with the data. ``epoch`` is set by
    ``training.fit`` at the start of every epoch. Identity at inference. Put it first, before any
    step that changes the pixels.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.epoch = self.add_variable(shape=(), dtype="int32", initializer="zeros", trainable=False, name="epoch")

    def call(self, images, training=None):
        if not training:
            return images
        pixel_sum = ops.sum(ops.cast(images, "int32"), axis=(1, 2, 3))
        mirrored = ops.reshape(ops.equal((pixel_sum + self.epoch) % 2, 1), (-1, 1, 1, 1))
        return ops.where(mirrored, ops.flip(images, axis=2), images)

    def compute_output_shape(self, input_shape):
        return input_shape
