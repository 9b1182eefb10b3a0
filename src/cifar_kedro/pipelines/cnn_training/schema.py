"""Parameters of the cnn_training pipeline (conf/base/parameters_cnn_training.yml).

``architecture`` picks one block; each block is a network and its own training recipe.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from cifar_kedro.schemas import (
    Augmentation,
    Fraction,
    JitCompile,
    MixedPrecision,
    Optimizer,
    Params,
    PositiveInt,
)

Positive = Annotated[float, Field(gt=0.0)]
RGB = tuple[float, float, float]


class Recipe(Params):
    """What every block has besides its network."""

    epochs: PositiveInt
    batch_size: PositiveInt
    optimizer: Optimizer
    label_smoothing: Fraction = 0.0
    augmentation: Augmentation = Augmentation()
    tta_flip: bool = False  # the delivered model averages each image with its mirror image


class SeedCNNNetwork(Params):
    filters: list[PositiveInt] = Field(min_length=1)
    dense_units: PositiveInt
    dropout: Fraction


class SeedCNN(Recipe):
    network: SeedCNNNetwork


class ResNet9Network(Params):
    width: Positive  # channel multiplier; 1.0 = 64/128/256/512 as published
    logit_scale: Positive
    bn_momentum: Fraction
    channel_mean: RGB  # training-set channel statistics, in 0..255 pixel units
    channel_std: tuple[Positive, Positive, Positive]


class ResNet9(Recipe):
    network: ResNet9Network


class CNNTrainingParams(Params):
    architecture: Literal["resnet9", "seed_cnn"]
    seed: int
    resnet9: ResNet9
    seed_cnn: SeedCNN
    eval_batch_size: PositiveInt
    mixed_precision: MixedPrecision = None
    jit_compile: JitCompile = "auto"
    checkpoint_dir: str | None = None  # per-epoch checkpoints of an unfinished run

    @property
    def recipe(self) -> SeedCNN | ResNet9:
        """The chosen architecture's block."""
        return getattr(self, self.architecture)
