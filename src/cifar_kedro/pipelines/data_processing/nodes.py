"""Nodes of the data_processing pipeline: small pure functions on NumPy arrays."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.model_selection import train_test_split

from cifar_kedro import cifar10
from cifar_kedro.splits import Split, split_sha256

from .schema import DataProcessingParams


def ingest_batches(source: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The validated batches exactly as read, as flat arrays (``<file>.data``, ``<file>.labels``),
    and where they came from (source kind and each file's MD5)."""
    arrays = {}
    for name, batch in source["batches"].items():
        arrays[f"{name}.data"] = batch["data"]
        arrays[f"{name}.labels"] = batch["labels"]
    arrays["label_names"] = np.asarray(source["label_names"], dtype=str)
    return arrays, {"source": source["source"], "checksums": dict(source["checksums"])}


def _batch(raw_batches: dict[str, np.ndarray], names: tuple[str, ...]) -> Split:
    images = np.concatenate([cifar10.rows_to_images(raw_batches[f"{n}.data"]) for n in names])
    labels = np.concatenate([raw_batches[f"{n}.labels"] for n in names]).astype(np.int64)
    return {"images": images, "labels": labels}


def assemble_splits(raw_batches: dict[str, np.ndarray]) -> tuple[Split, Split, list[str]]:
    """NHWC images and labels of the five training batches and of the test batch, and the class names."""
    train = _batch(raw_batches, cifar10.TRAIN_FILES)
    test = _batch(raw_batches, (cifar10.TEST_FILE,))
    return train, test, [str(name) for name in raw_batches["label_names"]]


def split_train_validation(train: Split, params: DataProcessingParams) -> tuple[Split, Split]:
    """A stratified, seeded split; images and labels are indexed together so they stay aligned."""
    indices = np.arange(len(train["labels"]))
    train_idx, val_idx = train_test_split(
        indices, test_size=params.validation_fraction, stratify=train["labels"], random_state=params.seed
    )
    take = lambda idx: {"images": train["images"][idx], "labels": train["labels"][idx]}  # noqa: E731
    return take(train_idx), take(val_idx)


def build_data_manifest(
    source_info: dict[str, Any], train: Split, validation: Split, test: Split, class_names: list[str]
) -> dict[str, Any]:
    """What the splits were made from and how to recognise them: raw-file MD5s, split sizes and SHA-256."""
    splits = {"train": train, "validation": validation, "test": test}
    return {
        "source": source_info["source"],
        "checksums": source_info["checksums"],
        "class_names": list(class_names),
        "splits": {
            name: {
                "count": int(len(split["labels"])),
                "sha256": split_sha256(split),
                "class_counts": np.bincount(split["labels"], minlength=len(class_names)).tolist(),
            }
            for name, split in splits.items()
        },
    }


def build_data_report(train: Split, validation: Split, test: Split, class_names: list[str]) -> pd.DataFrame:
    """One row per split and class: ``split, class_name, count``."""
    rows = [
        {"split": name, "class_name": class_name, "count": int(count)}
        for name, split in (("train", train), ("validation", validation), ("test", test))
        for class_name, count in zip(class_names, np.bincount(split["labels"], minlength=len(class_names)))
    ]
    return pd.DataFrame(rows, columns=["split", "class_name", "count"])


def plot_sample_images(train: Split, class_names: list[str], params: DataProcessingParams) -> Figure:
    """A grid with one row per class: ``sample_images_per_class`` random training images, titled by class."""
    images_per_class = params.sample_images_per_class
    rng = np.random.default_rng(params.seed)
    fig = Figure(figsize=(images_per_class * 1.1, len(class_names) * 1.2))
    axes = fig.subplots(len(class_names), images_per_class, squeeze=False)
    for label, class_name in enumerate(class_names):
        members = np.flatnonzero(train["labels"] == label)
        chosen = rng.choice(members, size=min(images_per_class, len(members)), replace=False)
        for col, ax in enumerate(axes[label]):
            ax.axis("off")
            if col < len(chosen):
                ax.imshow(train["images"][chosen[col]], interpolation="nearest")
        axes[label][0].set_title(class_name, fontsize=9, loc="left")
    fig.suptitle("Training images by class")
    fig.tight_layout()
    return fig
