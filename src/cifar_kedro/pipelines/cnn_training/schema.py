"""Parameters of the cnn_training pipeline (conf/base/parameters_cnn_training.yml).

``architecture`` picks one block; each block is a network and its own training recipe: one
``schemas.Stage`` (the same shape as the transfer model's stages) plus test-time augmentation.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from cifar_kedro.schemas import Fraction, Params, PositiveInt, Stage

Positive = Annotated[float, Field(gt=0.0)]


class Recipe(Stage):
    """A block's training stage, and what the delivered model averages over at test time."""

    tta_flip: bool = False  # the delivered model averages each image with its mirror image
    tta_translate: Annotated[int, Field(ge=0)] = 0  # … and with both shifted this many pixels (airbench)


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
    kernel_size: PositiveInt
    epsilon: Positive
    images: PositiveInt  # training images whose patches give the statistics


class AirbenchNetwork(Params):
    widths: list[PositiveInt] = Field(min_length=1)
    convs_per_block: Annotated[int, Field(ge=2)]
    residual: bool
    bn_momentum: Fraction
    logit_scale: Positive
    classifier_std: Positive | None = None  # None: PyTorch's default init (airbench94)
    whitening: Whitening


class Airbench(Recipe):
    network: AirbenchNetwork


class CNNTrainingParams(Params):
    architecture: Literal["airbench94_muon", "airbench94", "airbench96", "resnet9", "seed_cnn"]
    airbench94_muon: Airbench
    airbench94: Airbench
    airbench96: Airbench
    resnet9: ResNet9
    seed_cnn: SeedCNN
    eval_batch_size: PositiveInt
    # Training images that recalibrate the BatchNorm statistics at the end, and with
    # ``batchnorm_calibration_each_epoch`` before each validation too (training.CalibrateBatchNorm);
    # 0 keeps the moving statistics as training left them.
    batchnorm_calibration_images: Annotated[int, Field(ge=0)]
    batchnorm_calibration_each_epoch: bool
    checkpoint_dir: str | None = None  # per-epoch checkpoints of an unfinished run; None: off
    # Minutes of training in place of the block's epochs (its epochs follow from the measured
    # throughput, training.fit). None: off.
    budget_minutes: Annotated[float, Field(gt=0.0)] | None = None

    @property
    def recipe(self) -> Airbench | ResNet9 | SeedCNN:
        """The chosen architecture's block, with ``budget_minutes`` where one is given."""
        block = getattr(self, self.architecture)
        return block if self.budget_minutes is None else block.model_copy(update={"budget_minutes": self.budget_minutes})
