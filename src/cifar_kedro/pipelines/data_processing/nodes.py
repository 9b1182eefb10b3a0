"""Nodes of the data_processing pipeline: small pure functions on NumPy arrays."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.model_selection import train_test_split

from cifar_kedro.splits import Split, split_sha256

from .schema import DataProcessingParams


def ingest_source(source: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The source's images and labels exactly as read, as arrays (``train_images``, ``train_labels``,
    and ``test_images``, ``test_labels`` when it has a test split; ``class_names``), and where they
    came from (kind, checksums, files left out)."""
    arrays = {"train_images": source["train"]["images"], "train_labels": source["train"]["labels"],
              "class_names": np.asarray(source["class_names"], dtype=str)}
    if source.get("test") is not None:
        arrays |= {"test_images": source["test"]["images"], "test_labels": source["test"]["labels"]}
    info = {"source": source["source"], "checksums": dict(source["checksums"]),
            "unreadable": list(source.get("unreadable") or [])}
    return arrays, info


def assemble_splits(raw_batches: dict[str, np.ndarray], params: DataProcessingParams) -> tuple[Split, Split, list[str]]:
    """The training pool and the test split, and the class names. A source without a test split
    (an image folder without test/) gives up a seeded, stratified ``test_fraction`` of its images."""
    pool = {"images": raw_batches["train_images"], "labels": raw_batches["train_labels"].astype(np.int64)}
    names = [str(name) for name in raw_batches["class_names"]]
    if "test_images" in raw_batches:
        test = {"images": raw_batches["test_images"], "labels": raw_batches["test_labels"].astype(np.int64)}
    else:
        pool, test = _stratified_split(pool, params.test_fraction, params.seed, "test_fraction", names)
    return pool, test, names


def _stratified_split(pool: Split, fraction: float, seed: int, parameter: str,
                      names: list[str]) -> tuple[Split, Split]:
    """Seeded, stratified; images and labels are indexed together so they stay aligned."""
    counts = np.bincount(pool["labels"], minlength=len(names))
    needed = max(2, int(np.ceil(1 / min(fraction, 1 - fraction))))
    short = {names[label]: int(count) for label, count in enumerate(counts) if count < needed}
    if short:
        raise ValueError(
            f"Too few images to split {fraction:.0%} off by class (data_processing.{parameter}): "
            f"{', '.join(f'{name}: {count}' for name, count in short.items())} — each class needs at least "
            f"{needed}. Add images to those class folders, or change data_processing.{parameter}."
        )
    indices = np.arange(len(pool["labels"]))
    keep, held_out = train_test_split(indices, test_size=fraction, stratify=pool["labels"], random_state=seed)
    take = lambda idx: {"images": pool["images"][idx], "labels": pool["labels"][idx]}  # noqa: E731
    return take(keep), take(held_out)


def split_train_validation(train: Split, class_names: list[str], params: DataProcessingParams) -> tuple[Split, Split]:
    """A stratified, seeded split of the training pool into training and validation images."""
    return _stratified_split(train, params.validation_fraction, params.seed, "validation_fraction", class_names)


def build_data_manifest(
    source_info: dict[str, Any], train: Split, validation: Split, test: Split, class_names: list[str],
    stored_versions: dict[str, dict[str, Any] | None],
) -> dict[str, Any]:
    """What the splits were made from and how to recognise them: the source's checksums, split sizes
    and SHA-256, the files left out as unreadable, and which stored versions of the raw batches and
    the splits this run made (``stored``: version, SHA-256 of the stored arrays, and whether it
    reuses an earlier version's file, ``same_as``; see ``datasets.NpzDataset``'s reuse_identical)."""
    splits = {"train": train, "validation": validation, "test": test}
    return {
        "source": source_info["source"],
        "checksums": source_info["checksums"],
        "unreadable": source_info.get("unreadable", []),
        "class_names": list(class_names),
        "splits": {
            name: {
                "count": int(len(split["labels"])),
                "sha256": split_sha256(split),
                "class_counts": np.bincount(split["labels"], minlength=len(class_names)).tolist(),
            }
            for name, split in splits.items()
        },
        "stored": dict(stored_versions),
    }


REPORT_COLUMNS = ["split", "class_name", "count", "path", "error"]


def build_data_report(source_info: dict[str, Any], train: Split, validation: Split, test: Split,
                      class_names: list[str]) -> pd.DataFrame:
    """One row per split and class (``split, class_name, count``), then one per file left out as
    unreadable (``split`` "unreadable", with its ``path`` and ``error``)."""
    rows = [
        {"split": name, "class_name": class_name, "count": int(count)}
        for name, split in (("train", train), ("validation", validation), ("test", test))
        for class_name, count in zip(class_names, np.bincount(split["labels"], minlength=len(class_names)))
    ]
    rows += [{"split": "unreadable", "class_name": entry["class_name"], "count": 1, "path": entry["path"],
              "error": entry["error"]} for entry in source_info.get("unreadable", [])]
    return pd.DataFrame(rows, columns=REPORT_COLUMNS)


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
