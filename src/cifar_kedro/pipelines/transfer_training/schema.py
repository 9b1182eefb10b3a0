"""Parameters of the transfer_training pipeline (conf/base/parameters_transfer_training.yml).

Two stages of the one ``schemas.Stage`` shape: ``head`` (the new head on the frozen base) and
``fine_tune`` (plus where the unfrozen layers begin and what their BatchNormalization does).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from cifar_kedro.schemas import Fraction, LearningRate, Params, PositiveInt, Stage

LayerIndex = Annotated[int, Field(ge=0)]


class FineTune(Stage):
    at: LayerIndex  # backbone layers before this index stay frozen
    # frozen: BatchNormalization keeps its ImageNet statistics; train: the unfrozen ones learn theirs.
    batchnorm: Literal["frozen", "train"]
    batchnorm_momentum: Fraction


class FineTuneExperiment(Params):
    """One fine-tuning setting; what it leaves out comes from ``fine_tune``."""

    at: LayerIndex | None = None
    learning_rate: LearningRate | None = None
    epochs: PositiveInt | None = None

    def applied_to(self, stage: FineTune) -> FineTune:
        """``stage`` with this experiment's settings in place of its own."""
        optimizer = stage.optimizer.model_copy(update={"learning_rate": self.learning_rate}) \
            if self.learning_rate is not None else stage.optimizer
        return stage.model_copy(update={"optimizer": optimizer,
                                        **self.model_dump(include={"at", "epochs"}, exclude_none=True)})


class TransferTrainingParams(Params):
    image_size: Annotated[int, Field(ge=32)]  # MobileNetV2's minimum input
    weights: str  # imagenet | path/to/backbone.weights.h5 | none
    alpha: Annotated[float, Field(gt=0.0)]
    batchnorm_calibration_images: PositiveInt
    dropout: Fraction
    # Frozen layers run once over the images: the head trains on pooled features, fine-tuning on the
    # activations where its unfrozen layers begin, of each of ``cached_views`` of the training images
    # ("augmented": another seeded draw of ``fine_tune.augmentation``).
    cache_features: bool
    cached_views: list[Literal["original", "mirrored", "augmented"]] = Field(min_length=1)
    head: Stage
    fine_tune: FineTune
    fine_tune_experiments: list[FineTuneExperiment]  # empty: the head-trained model is delivered
    tta_flip: bool  # the delivered model averages each image with its mirror image
    eval_batch_size: PositiveInt
    checkpoint_dir: str | None = None  # per-epoch checkpoints of an unfinished run; None: off
    # Minutes for the whole transfer training in place of the fine-tuning epochs: the head trains
    # as configured, then each fine-tune experiment takes an equal share of what is left, caching
    # included (its epochs follow from the measured throughput, training.fit). None: off.
    budget_minutes: Annotated[float, Field(gt=0.0)] | None = None
