"""Parameters of the cnn_training pipeline (conf/base/parameters_cnn_training.yml).

``architecture`` picks one block; each block is a network and its own training recipe.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from cifar_kedro.schemas import (
    Augmentation,
    Fraction,
    Distribution,
    JitCompile,
    Lookahead,
    MixedPrecision,
    Optimizer,
    Params,
    PositiveInt,
)

Positive = Annotated[float, Field(gt=0.0)]


class Recipe(Params):
    """What every block has besides its network."""

    epochs: PositiveInt
    batch_size: PositiveInt
    optimizer: Optimizer
    label_smoothing: Fraction = 0.0
    augmentation: Augmentation = Augmentation()
    tta_flip: bool = False  # the delivered model averages each image with its mirror image
    tta_translate: Annotated[int, Field(ge=0)] = 0  # … and with both shifted this many pixels (airbench)
    lookahead: Lookahead | None = None  # an average of the weights, kept while training


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


class ResNet9(Recipe):
    network: ResNet9Network


class Whitening(Params):
    kernel_size: PositiveInt = 2
    epsilon: Positive = 5.0e-4
    images: PositiveInt = 5000  # training images whose patches give the statistics


class AirbenchNetwork(Params):
    widths: list[PositiveInt] = Field(min_length=1)
    convs_per_block: Annotated[int, Field(ge=2)]
    residual: bool = False
    bn_momentum: Fraction
    logit_scale: Positive
    whitening: Whitening = Whitening()


class Airbench(Recipe):
    network: AirbenchNetwork


class CNNTrainingParams(Params):
    architecture: Literal["airbench94", "airbench96", "resnet9", "seed_cnn"]
    seed: int
    airbench94: Airbench
    airbench96: Airbench
    resnet9: ResNet9
    seed_cnn: SeedCNN
    eval_batch_size: PositiveInt
    # Training images that recalibrate the BatchNorm statistics before each validation and at the
    # end (training.CalibrateBatchNorm); 0 keeps the moving statistics as training left them.
    batchnorm_calibration_images: Annotated[int, Field(ge=0)]
    mixed_precision: MixedPrecision = None
    jit_compile: JitCompile = "auto"
    distribution: Distribution = "none"
    checkpoint_dir: str | None = None  # per-epoch checkpoints of an unfinished run

    @property
    def recipe(self) -> Airbench | ResNet9 | SeedCNN:
        """The chosen architecture's block."""
        return getattr(self, self.architecture)
