"""The project's Kedro datasets: NPZ arrays, Keras models with safe_mode, atomic versioned writes."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from kedro.io import DatasetError, Version

from cifar_kedro import models
from cifar_kedro.datasets import CIFAR10BatchesDataset, KerasModelDataset, NpzDataset

IMAGES = np.random.default_rng(0).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)

def test_npz_round_trip_keeps_dtypes_and_versions(tmp_path):
    data = {"images": IMAGES, "labels": np.arange(8, dtype=np.int64), "names": np.array(["a", "b"])}
    NpzDataset(filepath=str(tmp_path / "split.npz"), version=Version(None, "v1")).save(data)
    newer = {**data, "labels": data["labels"][::-1].copy()}
    NpzDataset(filepath=str(tmp_path / "split.npz"), version=Version(None, "v2")).save(newer)
    latest = NpzDataset(filepath=str(tmp_path / "split.npz"), version=Version(None, None)).load()
    np.testing.assert_array_equal(latest["labels"], newer["labels"])
    first = NpzDataset(filepath=str(tmp_path / "split.npz"), version=Version("v1", None)).load()
    np.testing.assert_array_equal(first["labels"], data["labels"])
    assert first["images"].dtype == np.uint8 and list(first["names"]) == ["a", "b"]


def test_npz_refuses_what_would_need_pickle(tmp_path):
    with pytest.raises(DatasetError, match="dict of NumPy arrays"):
        NpzDataset(filepath=str(tmp_path / "x.npz")).save({"a": [1, 2]})


def test_a_failed_save_leaves_no_file_behind(tmp_path, monkeypatch):
    def crash(file, **arrays):
        file.write(b"half an archive")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", crash)
    dataset = NpzDataset(filepath=str(tmp_path / "split.npz"), version=Version(None, "v1"))
    with pytest.raises(DatasetError, match="disk full"):
        dataset.save({"a": np.zeros(3)})
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def transfer_model():
    model = models.build_transfer_model(num_classes=10, image_size=32, weights="none", alpha=0.35)
    models.calibrate_batchnorm(model, IMAGES, batch_size=len(IMAGES), include_frozen=True)
    return model


def resnet9_with_tta():
    model = models.build_resnet9(num_classes=10, channel_mean=[125, 123, 114], channel_std=[63, 62, 67], width=0.125)
    return models.with_tta(model, flip=True, translate=1)


@pytest.mark.parametrize("build", [transfer_model, resnet9_with_tta], ids=["transfer", "resnet9_tta"])
def test_saved_model_reloads_in_safe_mode_and_predicts_the_same(tmp_path, build):
    model = build()
    dataset = KerasModelDataset(filepath=str(tmp_path / "model.keras"), version=Version(None, "v1"))
    dataset.save(model)
    loaded = KerasModelDataset(filepath=str(tmp_path / "model.keras"), version=Version(None, None)).load()
    np.testing.assert_allclose(loaded.predict(IMAGES, verbose=0), model.predict(IMAGES, verbose=0), atol=1e-6)
    # Deterministic: a delivered model holds no random (training-only) layer.
    np.testing.assert_array_equal(loaded.predict(IMAGES, verbose=0), loaded.predict(IMAGES, verbose=0))


def test_safe_mode_refuses_python_lambdas(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    KerasModelDataset(filepath=str(tmp_path / "lambda.keras")).save(model)
    with pytest.raises(DatasetError, match="safe_mode=False"):
        KerasModelDataset(filepath=str(tmp_path / "lambda.keras")).load()


def test_model_dataset_wants_a_keras_file(tmp_path):
    with pytest.raises(DatasetError, match="'.keras'"):
        KerasModelDataset(filepath=str(tmp_path / "model.h5"))


def test_batches_dataset_generates_synthetic_batches_once(tmp_path):
    dataset = CIFAR10BatchesDataset(path=str(tmp_path / "cifar-10-batches-py"), source="synthetic",
                                    synthetic={"images_per_batch": 20, "test_images": 20, "seed": 0})
    assert not dataset.exists()
    first = dataset.load()
    assert dataset.exists() and first["source"] == "synthetic"
    assert first["train"]["images"].shape == (100, 32, 32, 3) and first["test"]["labels"].shape == (20,)
    assert dataset.load()["checksums"] == first["checksums"]  # read again, not regenerated
    with pytest.raises(DatasetError, match="read only"):
        dataset.save(first)


def test_batches_dataset_refuses_an_unknown_source(tmp_path):
    with pytest.raises(DatasetError, match="'download' or 'synthetic'"):
        CIFAR10BatchesDataset(path=str(tmp_path), source="torrent")


V1, V2, V3, V4 = (f"2026-01-0{day}T00.00.00.000Z" for day in (1, 2, 3, 4))


def content_versioned(filepath: str, save: str | None = None, load: str | None = None) -> NpzDataset:
    return NpzDataset(filepath=filepath, version=Version(load, save), reuse_identical=True)


def test_identical_arrays_are_a_new_version_linked_to_the_newest_not_a_copy(tmp_path):
    """Content versioning: every save is its own version (lineage, --load-versions), but a save of
    the same arrays as the newest version writes no file: it is a hard link to it, and says so."""
    import json

    from cifar_kedro.datasets import DIGEST_SUFFIX, arrays_sha256, versions

    data = {"images": np.arange(600, dtype=np.uint8).reshape(2, 10, 10, 3), "labels": np.array([0, 1])}
    changed = {**data, "labels": np.array([1, 0])}
    filepath = str(tmp_path / "raw_batches.npz")
    for stamp, arrays in ((V1, data), (V2, data), (V3, data), (V4, changed)):
        content_versioned(filepath, save=stamp).save(arrays)

    first, second, third, fourth = versions(tmp_path, "raw_batches.npz")
    assert first.stat().st_ino == second.stat().st_ino == third.stat().st_ino != fourth.stat().st_ino
    assert first.stat().st_nlink == 3  # one file on disk for the three versions
    # The reuse is recorded beside the version, naming the version first written with these arrays.
    assert json.loads(Path(str(third) + DIGEST_SUFFIX).read_text()) == {"sha256": arrays_sha256(data), "same_as": V1}
    assert content_versioned(filepath, load=V3).stored() == {
        "version": V3, "sha256": arrays_sha256(data), "reused": True, "same_as": V1}
    assert content_versioned(filepath).stored() == {  # the newest: changed arrays, a file of its own
        "version": V4, "sha256": arrays_sha256(changed), "reused": False, "same_as": None}
    for stamp, expected in ((V2, data), (V4, changed)):  # each version loads as what was saved
        np.testing.assert_array_equal(content_versioned(filepath, load=stamp).load()["labels"], expected["labels"])
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(  # nothing left over beside them
        ["raw_batches.npz", V1, V2, V3, V4, *["raw_batches.npz", "raw_batches.npz" + DIGEST_SUFFIX] * 4])

    # Without the option every save is a copy of its own.
    plain = str(tmp_path / "plain.npz")
    for stamp in (V1, V2):
        NpzDataset(filepath=plain, version=Version(None, stamp)).save(data)
    assert len({path.stat().st_ino for path in versions(tmp_path, "plain.npz")}) == 2


def test_a_version_is_a_copy_where_no_link_can_be_made_or_the_record_is_unreadable(tmp_path, monkeypatch):
    import os

    from cifar_kedro.datasets import DIGEST_SUFFIX, versions

    data = {"labels": np.arange(5)}
    filepath = str(tmp_path / "split.npz")
    content_versioned(filepath, save=V1).save(data)
    Path(str(versions(tmp_path, "split.npz")[0]) + DIGEST_SUFFIX).write_text('{"sha2')  # cut short
    content_versioned(filepath, save=V2).save(data)

    def no_links(source, target):
        raise PermissionError(1, "Operation not permitted")  # e.g. a filesystem without hard links

    monkeypatch.setattr(os, "link", no_links)
    content_versioned(filepath, save=V3).save(data)
    saved = versions(tmp_path, "split.npz")
    assert len({path.stat().st_ino for path in saved}) == 3
    assert content_versioned(filepath).stored()["reused"] is False
    np.testing.assert_array_equal(content_versioned(filepath).load()["labels"], data["labels"])


def test_stored_versions_name_the_newest_version_of_each_file(tmp_path):
    from cifar_kedro.datasets import StoredVersionsDataset, arrays_sha256

    data = {"labels": np.arange(3)}
    for stamp in (V1, V2):
        content_versioned(str(tmp_path / "train.npz"), save=stamp).save(data)
    stored = StoredVersionsDataset(filepaths={"train": str(tmp_path / "train.npz"),
                                              "test": str(tmp_path / "never_saved.npz")}).load()
    assert stored == {"train": {"version": V2, "sha256": arrays_sha256(data), "reused": True, "same_as": V1},
                      "test": None}
    with pytest.raises(DatasetError, match="read only"):
        StoredVersionsDataset(filepaths={}).save({})
