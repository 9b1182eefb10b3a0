"""Parameters of the predict pipeline (conf/base/parameters_predict.yml)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from cifar_kedro.schemas import Params, PositiveInt


class ContactSheet(Params):
    columns: PositiveInt
    cell_size: Annotated[float, Field(gt=0)]  # inches per image
    max_images: PositiveInt


class PredictParams(Params):
    # Image files or folders (searched recursively); usually given on the command line:
    #   cifar-kedro predict photo.jpg more/ --model cnn
    paths: list[str] = []
    batch_size: PositiveInt
    top_k: PositiveInt
    crop: bool = False  # centre-crop to square before resizing, as the image-folder source can
    contact_sheet: ContactSheet
