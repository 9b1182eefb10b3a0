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


def test_identical_arrays_are_a_new_version_linked_to_the_newest_not_a_copy(tmp_path):
    """Content versioning: every save is its own version (lineage, --load-versions), but a save of
    the same arrays as the newest version costs no disk: it is a hard link to it."""
    import json

    from kedro.io import Version

    from cifar_kedro.datasets import DIGEST_SUFFIX, NpzDataset, arrays_sha256, versions

    data = {"images": np.arange(600, dtype=np.uint8).reshape(2, 10, 10, 3), "labels": np.array([0, 1])}
    filepath = str(tmp_path / "raw_batches.npz")
    for stamp in ("2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z"):
        NpzDataset(filepath=filepath, version=Version(None, stamp), reuse_identical=True).save(data)
    changed = {**data, "labels": np.array([1, 0])}
    NpzDataset(filepath=filepath, version=Version(None, "2026-01-03T00.00.00.000Z"), reuse_identical=True).save(changed)

    first, second, third = versions(tmp_path, "raw_batches.npz")
    assert first.stat().st_ino == second.stat().st_ino != third.stat().st_ino  # one file on disk for the two
    assert json.loads(Path(str(second) + DIGEST_SUFFIX).read_text()) == {
        "sha256": arrays_sha256(data), "same_as": "2026-01-01T00.00.00.000Z"}
    assert json.loads(Path(str(third) + DIGEST_SUFFIX).read_text())["same_as"] is None
    for path, expected in ((second, data), (third, changed)):  # each version loads as what was saved
        loaded = NpzDataset(filepath=filepath, version=Version(path.parent.name, None)).load()
        np.testing.assert_array_equal(loaded["labels"], expected["labels"])
    # Without the option every save is a copy of its own.
    plain = str(tmp_path / "plain.npz")
    for stamp in ("2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z"):
        NpzDataset(filepath=plain, version=Version(None, stamp)).save(data)
    assert len({path.stat().st_ino for path in versions(tmp_path, "plain.npz")}) == 2
