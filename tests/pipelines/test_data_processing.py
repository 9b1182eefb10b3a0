"""data_processing: its nodes on tiny arrays, the pipeline on an in-memory catalog, bad input."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, DatasetError, MemoryDataset
from kedro.runner import SequentialRunner
from pydantic import ValidationError

from cifar_kedro import cifar10
from cifar_kedro.pipelines.data_processing import create_pipeline
from cifar_kedro.pipelines.data_processing import nodes
from cifar_kedro.pipelines.data_processing.schema import DataProcessingParams
from tests.conftest import run_session, versions

CLASSES = list(cifar10.LABEL_NAMES)


def fake_source(per_batch: int = 50, test: int = 40, seed: int = 0) -> dict:
    """What CIFAR10BatchesDataset loads, with random pixels and every class in every batch."""
    rng = np.random.default_rng(seed)
    batches = {}
    for name, n in [(f, per_batch) for f in cifar10.TRAIN_FILES] + [(cifar10.TEST_FILE, test)]:
        batches[name] = {
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            "labels": rng.permutation(np.arange(n) % 10).astype(np.int64),
        }
    return {"batches": batches, "label_names": CLASSES, "checksums": {n: "0" * 32 for n in batches},
            "source": "synthetic"}


def test_assemble_splits_puts_the_red_plane_first_in_nhwc():
    source = fake_source()
    raw, _ = nodes.ingest_batches(source)
    train, test, class_names = nodes.assemble_splits(raw)
    assert train["images"].shape == (250, 32, 32, 3) and test["images"].shape == (40, 32, 32, 3)
    row = source["batches"]["data_batch_2"]["data"][7]
    # Image 57 is batch 2's 8th row: pixel (r, c) channel k is row[k * 1024 + r * 32 + c].
    np.testing.assert_array_equal(train["images"][57, 3, 5], [row[0 * 1024 + 3 * 32 + 5], row[1024 + 101], row[2048 + 101]])
    assert train["labels"][57] == source["batches"]["data_batch_2"]["labels"][7]
    assert class_names == CLASSES


def split_params(seed: int = 0, fraction: float = 0.2) -> DataProcessingParams:
    return DataProcessingParams(validation_fraction=fraction, seed=seed, sample_images_per_class=4)


def test_split_is_stratified_seeded_and_keeps_images_with_labels():
    labels = np.repeat(np.arange(10), 50)
    images = np.zeros((500, 32, 32, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = labels  # each image carries its label in a pixel
    train, validation = nodes.split_train_validation({"images": images, "labels": labels}, split_params(3))
    assert len(train["labels"]) == 400 and len(validation["labels"]) == 100
    assert np.bincount(validation["labels"]).tolist() == [10] * 10
    for split in (train, validation):
        np.testing.assert_array_equal(split["images"][:, 0, 0, 0], split["labels"])
    again, _ = nodes.split_train_validation({"images": images, "labels": labels}, split_params(3))
    np.testing.assert_array_equal(again["labels"], train["labels"])
    other, _ = nodes.split_train_validation({"images": images, "labels": labels}, split_params(4))
    assert not np.array_equal(other["labels"], train["labels"])


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5])
def test_split_parameters_refuse_a_fraction_outside_zero_one(fraction):
    with pytest.raises(ValidationError, match="validation_fraction"):
        split_params(fraction=fraction)


def test_data_report_counts_every_split_and_class():
    train, test, names = nodes.assemble_splits(nodes.ingest_batches(fake_source())[0])
    train, validation = nodes.split_train_validation(train, split_params())
    report = nodes.build_data_report(train, validation, test, names)
    assert list(report.columns) == ["split", "class_name", "count"]
    assert len(report) == 30 and report["count"].sum() == 290
    assert report.groupby("split")["count"].sum().to_dict() == {"test": 40, "train": 200, "validation": 50}


def test_manifest_checksums_identify_the_splits():
    train, test, names = nodes.assemble_splits(nodes.ingest_batches(fake_source())[0])
    train, validation = nodes.split_train_validation(train, split_params())
    manifest = nodes.build_data_manifest({"source": "synthetic", "checksums": {"x": "1"}}, train, validation, test, names)
    expected = hashlib.sha256(test["images"].tobytes() + test["labels"].astype(np.int64).tobytes()).hexdigest()
    assert manifest["splits"]["test"]["sha256"] == expected
    assert manifest["splits"]["validation"]["count"] == 50 and manifest["source"] == "synthetic"


def test_sample_grid_has_a_titled_row_per_class():
    train, _, names = nodes.assemble_splits(nodes.ingest_batches(fake_source())[0])
    figure = nodes.plot_sample_images(train, names, split_params())
    assert len(figure.axes) == 40
    assert [figure.axes[4 * i].get_title(loc="left") for i in range(10)] == names


def test_pipeline_runs_on_an_in_memory_catalog():
    catalog = DataCatalog({"cifar10_source": MemoryDataset(fake_source())})
    catalog["params:data_processing"] = split_params()
    outputs = SequentialRunner().run(create_pipeline(), catalog)
    assert set(outputs) == {"data_manifest", "data_report", "sample_images"}
    manifest = catalog.load("data_manifest")
    assert {name: split["count"] for name, split in manifest["splits"].items()} == {
        "train": 200, "validation": 50, "test": 40}
    assert manifest["splits"]["validation"]["class_counts"] == [5] * 10
    assert manifest["class_names"] == CLASSES
    assert catalog.load("data_report")["count"].sum() == 290


def test_demo_data_processing_through_a_session(project):
    run_session(project, "demo", pipeline_names=["data_processing"])
    raw = project / "data/01_raw/demo/cifar-10-batches-py"
    assert sorted(p.name for p in raw.iterdir()) == sorted([*cifar10.ALL_FILES, cifar10.README_FILE])
    [train] = versions(project, "data/05_model_input/train_split.npz")
    with np.load(train) as split:
        assert split["images"].shape == (3200, 32, 32, 3) and split["images"].dtype == np.uint8
    [report] = versions(project, "data/08_reporting/data_report.csv")
    assert pd.read_csv(report)["count"].sum() == 5000
    assert versions(project, "data/08_reporting/sample_images.png")
    assert versions(project, "data/01_raw/raw_batches.npz")


def test_a_truncated_batch_stops_the_run_before_any_output(project):
    raw = project / "data/01_raw/cifar-10-batches-py"
    cifar10.write_synthetic_cifar10(raw, images_per_batch=20, test_images=20)
    batch = raw / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:5000])
    with pytest.raises(DatasetError, match="data_batch_3: not a readable pickle") as error:
        run_session(project, "base", pipeline_names=["data_processing"])
    assert isinstance(error.value.__cause__.__cause__, cifar10.CIFAR10FormatError)
    written = [p for p in (project / "data").rglob("*") if p.is_file() and raw not in p.parents]
    assert written == []
