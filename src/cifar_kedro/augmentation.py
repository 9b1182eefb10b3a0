"""Training-time augmentation as one Keras layer, shared by both training pipelines.

The layer is the first of every model, takes images in the 0..255 pixel range and is active only
when the model runs with ``training=True``: ``fit`` augments on the fly, while ``predict`` and the
saved model see the images untouched. Images and labels therefore can never be shuffled apart.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from cifar_kedro.layers import RandomCutout

LAYER_NAME = "augmentation"


def build_augmentation(config: dict[str, Any] | None, seed: int | None = None) -> keras.layers.Layer:
    """A ``keras.Sequential`` named ``augmentation`` from ``config`` (every key optional, 0/false = off).

    * ``horizontal_flip``: flip left-right with probability ½;
    * ``rotation_degrees``: rotate by up to ± this many degrees;
    * ``shift``: translate by up to ± this fraction of height and width (0.125 = 4 px at 32 px,
      which with ``fill_mode: reflect`` and ``interpolation: nearest`` is reflect-pad-and-crop);
    * ``fill_mode`` / ``interpolation``: how rotation and shift fill and sample (``nearest``, the
      default, is what Keras' old ImageDataGenerator did);
    * ``cutout``: side in pixels of one square erased per image.

    With nothing switched on it returns an ``Identity`` layer of the same name.
    """
    config = config or {}
    fill_mode = config.get("fill_mode", "nearest")
    interpolation = config.get("interpolation", "bilinear")
    steps: list[keras.layers.Layer] = []
    if config.get("horizontal_flip"):
        steps.append(layers.RandomFlip("horizontal", seed=seed, name="flip"))
    if config.get("rotation_degrees"):
        steps.append(
            layers.RandomRotation(
                config["rotation_degrees"] / 360.0, fill_mode=fill_mode, interpolation=interpolation, seed=seed,
                name="rotation",
            )
        )
    if config.get("shift"):
        steps.append(
            layers.RandomTranslation(
                config["shift"], config["shift"], fill_mode=fill_mode, interpolation=interpolation, seed=seed,
                name="shift",
            )
        )
    if config.get("cutout"):
        steps.append(RandomCutout(config["cutout"], seed=seed, name="cutout"))
    if not steps:
        return layers.Identity(name=LAYER_NAME)
    return keras.Sequential(steps, name=LAYER_NAME)


def is_active(config: dict[str, Any] | None) -> bool:
    """Whether ``config`` switches any augmentation on."""
    config = config or {}
    return any(config.get(key) for key in ("horizontal_flip", "rotation_degrees", "shift", "cutout"))
