"""Nodes of the predict pipeline: read the images → predict → table and contact sheet."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from cifar_kedro.sources import image_folder
from cifar_kedro.training import predict

from .schema import PredictParams

COLUMNS = ["path", "predicted_class", "probability", "top_k", "error"]


def read_new_images(model: Any, params: PredictParams) -> dict[str, Any]:
    """Every image under ``params.paths`` (files, or folders searched recursively), read as the
    image-folder source reads (EXIF orientation, RGB) at the model's input size. Files that cannot
    be read are kept aside with their error, the others go on."""
    files = []
    for given in params.paths:
        path = Path(given)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in image_folder.EXTENSIONS)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path} does not exist: give image files or folders to predict.")
    if not files:
        raise ValueError(f"No {'/'.join(image_folder.EXTENSIONS)} image under {params.paths}: set predict.paths "
                         "(cifar-kedro predict PATH…).")
    height, width = model.input.shape[1:3]
    if height != width:
        raise ValueError(f"The model takes {height}×{width} images; only square inputs are supported.")
    return image_folder.read_images([(path, 0) for path in files], int(height), crop=params.crop,
                                    skip_unreadable=True)


def predict_new_images(model: Any, history: dict[str, Any], batch: dict[str, Any],
                       params: PredictParams) -> pd.DataFrame:
    """One row per image: path, predicted class, its probability and the top ``top_k`` classes;
    files that could not be read get a row with their error."""
    names = history["class_names"]
    rows = []
    if len(batch["images"]):
        probabilities = predict(model, batch["images"], params.batch_size)
        ranked = np.argsort(-probabilities, axis=1)[:, : params.top_k]
        for path, p, order in zip(batch["paths"], probabilities, ranked):
            rows.append({"path": path, "predicted_class": names[order[0]], "probability": float(p[order[0]]),
                         "top_k": "; ".join(f"{names[i]} {p[i]:.3f}" for i in order), "error": ""})
    rows += [{"path": entry["path"], "predicted_class": "", "probability": np.nan, "top_k": "",
              "error": entry["error"]} for entry in batch["unreadable"]]
    return pd.DataFrame(rows, columns=COLUMNS)


def plot_contact_sheet(batch: dict[str, Any], predictions: pd.DataFrame, params: PredictParams) -> Figure:
    """The images (up to ``max_images``) with their predicted class and probability."""
    sheet = params.contact_sheet
    shown = min(len(batch["images"]), sheet.max_images)
    cols = max(1, min(sheet.columns, shown))
    rows = max(1, -(-shown // cols))
    fig = Figure(figsize=(cols * sheet.cell_size, rows * sheet.cell_size * 1.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    found = predictions.set_index("path")
    for ax in axes:
        ax.axis("off")
    for ax, image, path in zip(axes, batch["images"][:shown], batch["paths"][:shown]):
        row = found.loc[path]
        ax.imshow(image)
        ax.set_title(f"{row['predicted_class']} {row['probability']:.0%}\n{Path(path).name}", fontsize=8)
    skipped = len(batch["unreadable"])
    fig.suptitle(f"Predictions for {len(batch['images'])} images"
                 + (f" (first {shown} shown)" if shown < len(batch["images"]) else "")
                 + (f"; {skipped} unreadable, listed in the table" if skipped else ""))
    return fig
