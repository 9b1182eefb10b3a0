"""data_processing: its nodes on tiny arrays, the pipeline on an in-memory catalog, bad input."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, DatasetError, MemoryDataset
from kedro.runner import SequentialRunner
from pydantic import ValidationError

from cifar_kedro.sources import cifar10, synthetic
from cifar_kedro.pipelines.data_processing import create_pipeline
from cifar_kedro.pipelines.data_processing import nodes
from cifar_kedro.pipelines.data_processing.schema import DataProcessingParams
from tests.conftest import run_session, versions

CLASSES = list(cifar10.LABEL_NAMES)


def fake_source(per_class: int = 25, test_per_class: int | None = 4, seed: int = 0) -> dict:
    """What a source dataset loads (``cifar_kedro.sources``), with random pixels."""
    rng = np.random.default_rng(seed)

    def split(n_per_class):
        labels = rng.permutation(np.repeat(np.arange(10), n_per_class)).astype(np.int64)
        return {"images": rng.integers(0, 256, (len(labels), 32, 32, 3), dtype=np.uint8), "labels": labels}

    return {"train": split(per_class), "test": None if test_per_class is None else split(test_per_class),
            "class_names": CLASSES, "checksums": {"data_batch_1": "0" * 32}, "unreadable": [], "source": "synthetic"}


def pool_test_names(source: dict, params=None):
    return nodes.assemble_splits(nodes.ingest_source(source)[0], params or split_params())


def test_a_source_with_a_test_split_keeps_it_as_read():
    source = fake_source()
    pool, test, names = pool_test_names(source)
    np.testing.assert_array_equal(pool["images"], source["train"]["images"])
    np.testing.assert_array_equal(test["labels"], source["test"]["labels"])
    assert names == CLASSES


def test_a_source_without_a_test_split_gives_up_a_stratified_seeded_share():
    source = fake_source(per_class=20, test_per_class=None)
    pool, test, _ = pool_test_names(source)
    assert len(test["labels"]) == 40 and np.bincount(test["labels"]).tolist() == [4] * 10  # test_fraction 0.2
    assert len(pool["labels"]) == 160
    again, test_again, _ = pool_test_names(source)
    np.testing.assert_array_equal(test_again["images"], test["images"])
    everything = np.concatenate([pool["images"], test["images"]]).reshape(200, -1)
    assert len(np.unique(everything, axis=0)) == 200  # no image in both


def test_a_class_too_small_to_split_is_named():
    source = fake_source(per_class=20, test_per_class=None)
    keep = (source["train"]["labels"] != 3) | (np.cumsum(source["train"]["labels"] == 3) <= 2)
    source["train"] = {key: value[keep] for key, value in source["train"].items()}  # 'cat': 2 images
    with pytest.raises(ValueError, match=r"cat: 2 .*at least 5.*data_processing.test_fraction"):
        pool_test_names(source)


def split_params(seed: int = 0, fraction: float = 0.2) -> DataProcessingParams:
    return DataProcessingParams(validation_fraction=fraction, seed=seed, sample_images_per_class=4)


def test_split_is_stratified_seeded_and_keeps_images_with_labels():
    labels = np.repeat(np.arange(10), 50)
    images = np.zeros((500, 32, 32, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = labels  # each image carries its label in a pixel
    train, validation = nodes.split_train_validation({"images": images, "labels": labels}, CLASSES, split_params(3))
    assert len(train["labels"]) == 400 and len(validation["labels"]) == 100
    assert np.bincount(validation["labels"]).tolist() == [10] * 10
    for split in (train, validation):
        np.testing.assert_array_equal(split["images"][:, 0, 0, 0], split["labels"])
    again, _ = nodes.split_train_validation({"images": images, "labels": labels}, CLASSES, split_params(3))
    np.testing.assert_array_equal(again["labels"], train["labels"])
    other, _ = nodes.split_train_validation({"images": images, "labels": labels}, CLASSES, split_params(4))
    assert not np.array_equal(other["labels"], train["labels"])


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5])
def test_split_parameters_refuse_a_fraction_outside_zero_one(fraction):
    with pytest.raises(ValidationError, match="validation_fraction"):
        split_params(fraction=fraction)


def test_data_report_counts_every_split_and_class():
    train, test, names = pool_test_names(fake_source())
    train, validation = nodes.split_train_validation(train, names, split_params())
    unreadable = [{"path": "cat/broken.jpg", "error": "OSError: truncated", "split": "train", "class_name": "cat"}]
    report = nodes.build_data_report({"unreadable": unreadable}, train, validation, test, names)
    assert list(report.columns) == ["split", "class_name", "count", "path", "error"]
    counts = report[report["split"] != "unreadable"]
    assert len(counts) == 30 and counts["count"].sum() == 290
    assert counts.groupby("split")["count"].sum().to_dict() == {"test": 40, "train": 200, "validation": 50}
    [skipped] = report[report["split"] == "unreadable"].to_dict("records")
    assert (skipped["class_name"], skipped["path"], skipped["error"]) == ("cat", "cat/broken.jpg", "OSError: truncated")


def test_manifest_checksums_identify_the_splits():
    train, test, names = pool_test_names(fake_source())
    train, validation = nodes.split_train_validation(train, names, split_params())
    stored = {"train": {"version": "2026-01-02T00.00.00.000Z", "sha256": "ab", "reused": True,
                        "same_as": "2026-01-01T00.00.00.000Z"}}
    manifest = nodes.build_data_manifest({"source": "synthetic", "checksums": {"x": "1"}}, train, validation, test,
                                         names, stored)
    expected = hashlib.sha256(test["images"].tobytes() + test["labels"].astype(np.int64).tobytes()).hexdigest()
    assert manifest["splits"]["test"]["sha256"] == expected
    assert manifest["splits"]["validation"]["count"] == 50 and manifest["source"] == "synthetic"
    assert manifest["stored"] == stored


def test_sample_grid_has_a_titled_row_per_class():
    train, _, names = pool_test_names(fake_source())
    figure = nodes.plot_sample_images(train, names, split_params())
    assert len(figure.axes) == 40
    assert [figure.axes[4 * i].get_title(loc="left") for i in range(10)] == names


def test_pipeline_runs_on_an_in_memory_catalog():
    catalog = DataCatalog({"raw_source": MemoryDataset(fake_source()), "stored_versions": MemoryDataset({})})
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
    synthetic.write_synthetic_cifar10(raw, images_per_batch=20, test_images=20)
    batch = raw / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:5000])
    with pytest.raises(DatasetError, match="data_batch_3: not a readable pickle") as error:
        run_session(project, "base", pipeline_names=["data_processing"])
    assert isinstance(error.value.__cause__.__cause__, cifar10.CIFAR10FormatError)
    written = [p for p in (project / "data").rglob("*") if p.is_file() and raw not in p.parents]
    assert written == []


def test_a_rerun_of_the_same_data_reuses_its_files_and_the_manifest_names_the_versions(project):
    """Content-versioned raw data and splits: a second run of the same data writes no second copy of
    them yet has versions of its own, and its manifest names them and the version they reuse; a run
    that changes the splits (another split seed) writes new splits and still reuses the raw batches."""
    import json

    from cifar_kedro.datasets import arrays_sha256

    def manifest_of_run(seed: int) -> dict:
        run_session(project, "demo", {"data_processing": {"seed": seed}}, pipeline_names=["data_processing"])
        return json.loads(versions(project, "data/05_model_input/data_manifest.json")[-1].read_text())

    first, second, third = manifest_of_run(0), manifest_of_run(0), manifest_of_run(1)
    raw = versions(project, "data/01_raw/raw_batches.npz")
    train = versions(project, "data/05_model_input/train_split.npz")
    assert len({path.stat().st_ino for path in raw}) == 1  # three versions, one file
    assert train[0].stat().st_ino == train[1].stat().st_ino != train[2].stat().st_ino
    written = [path.parent.name for path in raw]
    assert first["stored"]["raw_batches"] == {"version": written[0], "sha256": first["stored"]["raw_batches"]["sha256"],
                                              "reused": False, "same_as": None}
    for manifest, version in ((second, written[1]), (third, written[2])):
        assert manifest["stored"]["raw_batches"] == {**first["stored"]["raw_batches"], "version": version,
                                                     "reused": True, "same_as": written[0]}
    assert second["stored"]["train"] == {**first["stored"]["train"], "version": train[1].parent.name,
                                         "reused": True, "same_as": train[0].parent.name}
    assert third["stored"]["train"]["reused"] is False and third["stored"]["train"]["version"] == train[2].parent.name
    with np.load(train[2]) as split:  # the digest names the stored arrays
        assert third["stored"]["train"]["sha256"] == arrays_sha256({key: split[key] for key in split.files})
    assert third["splits"]["train"]["sha256"] != first["splits"]["train"]["sha256"]
