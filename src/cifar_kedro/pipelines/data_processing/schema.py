"""Parameters of the data_processing pipeline (conf/base/parameters_data_processing.yml)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from cifar_kedro.schemas import Params, PositiveInt


class DataProcessingParams(Params):
    # Share of the training images held out, stratified by class, for validation.
    validation_fraction: Annotated[float, Field(gt=0.0, lt=1.0)]
    # Share of the images held out for testing when the source has no test split of its own.
    test_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2
    seed: int
    sample_images_per_class: PositiveInt
