"""Parameters of the transfer_training pipeline (conf/base/parameters_transfer_training.yml)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from cifar_kedro.schemas import (
    Augmentation,
    Fraction,
    Distribution,
    JitCompile,
    LearningRate,
    MixedPrecision,
    OptimizerOptions,
    Params,
    PositiveInt,
)


class FineTuneExperiment(Params):
    """One fine-tuning setting; what it leaves out comes from the ``fine_tune_*`` defaults."""

    fine_tune_at: Annotated[int, Field(ge=0)] | None = None
    learning_rate: LearningRate | None = None
    epochs: PositiveInt | None = None


class TransferTrainingParams(Params):
    seed: int
    image_size: Annotated[int, Field(ge=32)]  # MobileNetV2's minimum input
    weights: str  # imagenet | path/to/backbone.weights.h5 | none
    alpha: Annotated[float, Field(gt=0.0)]
    batchnorm_calibration_images: PositiveInt
    dropout: Fraction
    batch_size: PositiveInt
    label_smoothing: Fraction = 0.0
    optimizer: OptimizerOptions
    augmentation: Augmentation = Augmentation()

    head_epochs: PositiveInt
    head_learning_rate: LearningRate
    cache_features: bool = False

    fine_tune_epochs: PositiveInt
    fine_tune_at: Annotated[int, Field(ge=0)]
    fine_tune_learning_rate: LearningRate
    fine_tune_experiments: list[FineTuneExperiment] = []
    # frozen: BatchNormalization keeps its ImageNet statistics; train: the unfrozen ones learn theirs.
    fine_tune_batchnorm: Literal["frozen", "train"] = "frozen"
    fine_tune_batchnorm_momentum: Fraction = 0.99
    # With cache_features, fine-tuning trains on the frozen layers' activations of these views of
    # the training images; each "augmented" is another seeded draw of `augmentation`.
    cached_views: list[Literal["original", "mirrored", "augmented"]] = Field(default=["original"], min_length=1)
    tta_flip: bool = False  # the delivered model averages each image with its mirror image

    eval_batch_size: PositiveInt
    mixed_precision: MixedPrecision = None
    jit_compile: JitCompile = "auto"
    distribution: Distribution = "none"
    checkpoint_dir: str | None = None  # per-epoch checkpoints of an unfinished run
