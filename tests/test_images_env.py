"""``kedro run --env images --pipelines data_processing`` on a tiny class-per-folder tree: conf/images'
source reads it at its image size and, with no test/ folder, a stratified share is held out for
testing. (Both trainings and the report on an image folder: tests/test_image_folder.py, slow.)"""

from __future__ import annotations

import json

import numpy as np
import yaml
from PIL import Image

from tests.conftest import PROJECT_ROOT, run_session, versions

CLASSES = {"cat": (200, 40, 40), "dog": (40, 40, 200)}
PER_CLASS = 10


def test_the_images_env_reads_a_folder_at_its_size_and_holds_out_a_stratified_test_split(project):
    rng = np.random.default_rng(0)
    for name, colour in CLASSES.items():
        folder = project / "data/01_raw/images" / name
        folder.mkdir(parents=True)
        for index in range(PER_CLASS):
            pixels = np.clip(rng.normal(colour, 20, (30 + index, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{index}.{'png' if index % 2 else 'jpg'}")
    size = yaml.safe_load((PROJECT_ROOT / "conf/images/catalog.yml").read_text())["raw_source"]["image_size"]

    run_session(project, "images", pipeline_names=["data_processing"])

    splits = {}
    for split in ("train", "validation", "test"):
        with np.load(versions(project, f"data/05_model_input/{split}_split.npz")[-1]) as data:
            splits[split] = {key: data[key] for key in ("images", "labels")}
    assert splits["test"]["images"].shape[1:] == (size, size, 3) and splits["test"]["images"].dtype == np.uint8
    # 20% of each class for testing, then 20% of the rest for validation, stratified.
    assert {split: np.bincount(data["labels"]).tolist() for split, data in splits.items()} == {
        "train": [6, 6], "validation": [2, 2], "test": [2, 2]}
    red = splits["train"]["images"][splits["train"]["labels"] == 0][..., 0].mean()
    blue = splits["train"]["images"][splits["train"]["labels"] == 0][..., 2].mean()
    assert red > 150 > 80 > blue  # class 0 is cat (sorted folder names): its images stayed with its label
    manifest = json.loads(versions(project, "data/05_model_input/data_manifest.json")[-1].read_text())
    assert manifest["class_names"] == list(CLASSES) and manifest["source"] == "image_folder"
