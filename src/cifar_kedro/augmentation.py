"""Training-time augmentation as one Keras layer, shared by both training pipelines.

``training.fit`` puts the layer in front of the model it trains; it takes images in the 0..255
pixel range and is active only in training, so ``fit`` augments on the fly while validation sees
the images untouched, and images and labels can never be shuffled apart. The delivered model does
not contain it (the reporting pipeline rebuilds it from the recorded configuration to show it).
"""

from __future__ import annotations

import keras
from keras import layers

from cifar_kedro.layers import AlternatingFlip, RandomCutout
from cifar_kedro.schemas import Augmentation

LAYER_NAME = "augmentation"


def build_augmentation(config: Augmentation | None, seed: int | None = None) -> keras.layers.Layer:
    """A ``keras.Sequential`` named ``augmentation`` from ``config`` (see ``schemas.Augmentation``).

    * ``horizontal_flip``: flip left-right with probability ½;
    * ``alternating_flip``: flip each image in every other epoch (``layers.AlternatingFlip``);
    * ``rotation_degrees``: rotate by up to ± this many degrees;
    * ``shift``: translate by up to ± this fraction of height and width (0.125 = 4 px at 32 px,
      which with ``fill_mode: reflect`` and ``interpolation: nearest`` is reflect-pad-and-crop);
    * ``fill_mode`` / ``interpolation``: how rotation and shift fill and sample;
    * ``cutout``: side in pixels of one square erased per image.

    With nothing switched on it returns an ``Identity`` layer of the same name.
    """
    config = config or Augmentation()
    steps: list[keras.layers.Layer] = []
    if config.alternating_flip:
        steps.append(AlternatingFlip(name="alternating_flip"))
    if config.horizontal_flip:
        steps.append(layers.RandomFlip("horizontal", seed=seed, name="flip"))
    if config.rotation_degrees:
        steps.append(
            layers.RandomRotation(
                config.rotation_degrees / 360.0, fill_mode=config.fill_mode, interpolation=config.interpolation,
                seed=seed, name="rotation",
            )
        )
    if config.shift:
        steps.append(
            layers.RandomTranslation(
                config.shift, config.shift, fill_mode=config.fill_mode, interpolation=config.interpolation,
                seed=seed, name="shift",
            )
        )
    if config.cutout:
        steps.append(RandomCutout(config.cutout, seed=seed, name="cutout"))
    if not steps:
        return layers.Identity(name=LAYER_NAME)
    layer = keras.Sequential(steps, name=LAYER_NAME)
    if keras.config.backend() == "jax":
        # Keras marks RandomRotation and RandomTranslation `supports_jit = False` (for TensorFlow's
        # sake), which makes the whole train step run op by op. On JAX they trace; an eager step is
        # slow, and under keras.distribution.DataParallel it deadlocks XLA's CPU collectives.
        for step in (layer, *steps):
            step.supports_jit = True
    return layer
