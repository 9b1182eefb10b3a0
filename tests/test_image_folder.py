"""Your own images: a class-per-folder tree of mixed files through the reader, the pipelines at
another image size, and the predict command."""

from __future__ import annotations

import os
import keras
import numpy as np
import pandas as pd
import pytest
from kedro.io import DatasetError
from PIL import Image

from cifar_kedro.datasets import ImageFolderDataset
from cifar_kedro.sources import cifar10, image_folder, synthetic
from tests.conftest import run_session, versions

RNG = np.random.default_rng(0)


def picture(size=(40, 30), colour=(200, 30, 30)) -> Image.Image:
    """A picture whose left half is ``colour`` and right half black (so orientation shows)."""
    pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    pixels[:, : size[0] // 2] = colour
    return Image.fromarray(pixels)


@pytest.fixture
def mixed_tree(tmp_path):
    """cat/: JPEG, PNG, WebP, BMP of assorted sizes; dog/: greyscale, RGBA, palette, an EXIF-rotated
    JPEG and a corrupt file; bird/: empty (added by the tests that want it)."""
    root = tmp_path / "pets"
    (root / "cat").mkdir(parents=True)
    (root / "dog").mkdir()
    picture((40, 30)).save(root / "cat" / "a.jpg", quality=95)
    picture((17, 50)).save(root / "cat" / "b.png")
    picture((64, 64)).save(root / "cat" / "c.webp", lossless=True)
    picture((33, 33)).save(root / "cat" / "d.BMP")
    (root / "cat" / "notes.txt").write_text("not an image")
    picture((20, 20), (120, 120, 120)).convert("L").save(root / "dog" / "grey.png")
    rgba = picture((20, 20)).convert("RGBA")
    rgba.putalpha(128)
    rgba.save(root / "dog" / "alpha.png")
    picture((20, 20)).convert("P").save(root / "dog" / "palette.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: the camera was turned; viewers rotate 90° clockwise
    picture((40, 20)).save(root / "dog" / "rotated.jpg", exif=exif, quality=95)
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    return root


def test_mixed_files_are_read_as_rgb_uint8_of_one_size(mixed_tree):
    (mixed_tree / "dog" / "broken.jpg").unlink()
    source = image_folder.load(mixed_tree, image_size=24)
    assert source["class_names"] == ["cat", "dog"] and source["test"] is None
    images, labels = source["train"]["images"], source["train"]["labels"]
    assert images.shape == (8, 24, 24, 3) and images.dtype == np.uint8  # notes.txt is not an image
    assert labels.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    grey = images[5]  # dog/grey.png (files are sorted: alpha, grey, palette, rotated)
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 1], grey[..., 2])
    np.testing.assert_array_equal(images[4][2, 2], [200, 30, 30])  # RGBA: alpha dropped, colour kept
    np.testing.assert_allclose(images[6][2, 2], [200, 30, 30], atol=8)  # palette → RGB (quantised colours)


def test_exif_orientation_is_applied(mixed_tree):
    rotated = image_folder.read_image(mixed_tree / "dog" / "rotated.jpg", 24)
    # Stored 40 wide × 20 high, red on the left; turned 90° clockwise the red half is on top.
    assert rotated[:10].mean() > 3 * rotated[14:].mean()
    assert abs(rotated[:, :12].mean() - rotated[:, 12:].mean()) < 10


def test_a_corrupt_file_stops_the_read_with_its_path_or_is_skipped_and_listed(mixed_tree):
    with pytest.raises(image_folder.ImageFolderError, match=r"dog/broken\.jpg.*skip_unreadable: true"):
        image_folder.load(mixed_tree, image_size=24)
    source = image_folder.load(mixed_tree, image_size=24, skip_unreadable=True)
    [skipped] = source["unreadable"]
    assert skipped["path"].endswith("dog/broken.jpg") and skipped["class_name"] == "dog"
    assert len(source["train"]["labels"]) == 8


def test_an_empty_class_folder_is_an_error_naming_it(mixed_tree):
    (mixed_tree / "dog" / "broken.jpg").unlink()
    (mixed_tree / "bird").mkdir()
    with pytest.raises(DatasetError, match=r"pets/bird holds no .*image"):
        ImageFolderDataset(path=str(mixed_tree), image_size=24).load()


def test_train_and_test_folders_are_kept_as_given(tmp_path):
    for split, count in (("train", 3), ("test", 2)):
        for name in ("a", "b"):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(count):
                picture((10 + i, 12)).save(tmp_path / split / name / f"{i}.png")
    source = image_folder.load(tmp_path, image_size=16)
    assert len(source["train"]["labels"]) == 6 and len(source["test"]["labels"]) == 4
    assert set(source["checksums"]) == {"train_sha256", "test_sha256"}


def write_image_tree(root, images_per_class: int, size: int, seed: int = 0) -> None:
    """The synthetic CIFAR stand-in's learnable images as a class-per-folder tree of PNG and JPEG
    files, upscaled to ``size``."""
    folder = synthetic.write_synthetic_cifar10(root.parent / f"{root.name}-batches",
                                               images_per_batch=images_per_class * 2, test_images=10, seed=seed)
    source = cifar10.load(folder)
    for index, (image, label) in enumerate(zip(source["train"]["images"], source["train"]["labels"])):
        target = root / source["class_names"][label]
        target.mkdir(parents=True, exist_ok=True)
        suffix = ".png" if index % 2 else ".jpg"
        Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR).save(target / f"{index:05d}{suffix}")


@pytest.mark.slow  # both trainings and the report (everyday suite: tests/test_images_env.py)
def test_the_demo_runs_end_to_end_on_an_image_folder_at_another_size(project):
    """conf/images' source (a class-per-folder tree) with the demo's small training settings, at 40 px."""
    write_image_tree(project / "data/01_raw/images", images_per_class=60, size=48)
    images_catalog = (project / "conf/images/catalog.yml").read_text().replace("image_size: 64", "image_size: 40")
    (project / "conf/demo/catalog.yml").write_text(images_catalog)
    params = {"transfer_training": {"head": {"epochs": 2}, "fine_tune": {"epochs": 1}}}  # the CNN: the demo's 3 epochs
    run_session(project, "demo", params)

    with np.load(versions(project, "data/05_model_input/test_split.npz")[-1]) as split:
        assert split["images"].shape[1:] == (40, 40, 3)
        images, labels = split["images"], split["labels"]
    assert len(labels) == 120  # no test/ folder: 20% of 600 images held out, stratified
    cnn = keras.saving.load_model(versions(project, "data/06_models/cnn_model.keras")[-1])
    assert cnn.input.shape[1:] == (40, 40, 3)
    comparison = pd.read_csv(versions(project, "data/08_reporting/model_comparison.csv")[-1])
    assert set(comparison["model"]) == {"transfer", "cnn"}
    assert np.mean(cnn.predict(images, verbose=0).argmax(1) == labels) > 0.3  # chance is 0.1


@pytest.mark.slow  # reads the demo run (everyday suite: tests/test_predict.py)
def test_predict_command_on_three_files_gives_the_models_own_labels(demo_project, tmp_path):
    from cifar_kedro.cli import predict

    with np.load(versions(demo_project, "data/05_model_input/test_split.npz")[-1]) as split:
        images = split["images"][:3]
    paths = []
    for index, image in enumerate(images):
        paths.append(tmp_path / f"new_{index}.png")
        Image.fromarray(image).save(paths[-1])
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    cwd = os.getcwd()
    os.chdir(demo_project)
    try:
        predict.main([*map(str, paths), str(tmp_path / "broken.jpg"), "--model", "cnn", "--env", "demo"],
                     standalone_mode=False)
    finally:
        os.chdir(cwd)
    table = pd.read_csv(versions(demo_project, "data/07_model_output/cnn_predictions.csv")[-1], keep_default_na=False)
    model = keras.saving.load_model(versions(demo_project, "data/06_models/cnn_model.keras")[-1])
    history = pd.read_json(versions(demo_project, "data/07_model_output/cnn_history.json")[-1], typ="series")
    expected = [history["class_names"][i] for i in model.predict(images, verbose=0).argmax(1)]
    readable = table[table["error"] == ""]
    assert readable["path"].tolist() == [str(p) for p in paths]
    assert readable["predicted_class"].tolist() == expected
    assert all(len(row.split("; ")) == 3 for row in readable["top_k"])
    [broken] = table[table["error"] != ""].to_dict("records")
    assert broken["path"].endswith("broken.jpg") and broken["predicted_class"] == ""
    assert versions(demo_project, "data/08_reporting/cnn_prediction_sheet.png")
