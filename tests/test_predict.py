"""The predict pipeline and the ``predict`` command on a tiny model whose answers are known: it
names an image's dominant colour (red, green or blue), so every predicted label can be checked."""

from __future__ import annotations

import json
import os

import keras
import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from PIL import Image

from cifar_kedro.pipelines.predict import create_pipeline, nodes
from cifar_kedro.pipelines.predict.schema import PredictParams
from cifar_kedro.study import MODELS
from tests.conftest import versions

COLOURS = ["red", "green", "blue"]
SIZE = 16


def colour_model(order=(0, 1, 2)) -> keras.Model:
    """uint8 (SIZE, SIZE, 3) in; class ``i`` is the image's channel ``order[i]`` (fixed weights)."""
    inputs = keras.Input((SIZE, SIZE, 3), dtype="uint8")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    dense = keras.layers.Dense(3, activation="softmax")
    model = keras.Model(inputs, dense(x))
    dense.set_weights([10 * np.eye(3, dtype="float32")[:, list(order)], np.zeros(3, dtype="float32")])
    return model


def params(paths, **changes) -> PredictParams:
    return PredictParams.model_validate({
        "paths": [str(p) for p in paths], "batch_size": 2, "top_k": 2, "crop": False,
        "contact_sheet": {"columns": 2, "cell_size": 1.0, "max_images": 3}, **changes})


def write(path, colour, size=(20, 12)):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    pixels[..., COLOURS.index(colour)] = 220
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def photos(tmp_path):
    """A red file given by name, and a folder (nested) with a green and a blue picture, a text file
    and a corrupt JPEG."""
    red = write(tmp_path / "red.png", "red")
    folder = tmp_path / "album"
    write(folder / "b_green.jpg", "green")
    write(folder / "nested" / "c_blue.webp", "blue", size=(8, 30))
    (folder / "notes.txt").write_text("not an image")
    (folder / "d_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    return red, folder


def test_read_new_images_reads_files_and_folders_at_the_models_size(photos):
    red, folder = photos
    batch = nodes.read_new_images(colour_model(), params([red, folder]))
    assert batch["images"].shape == (3, SIZE, SIZE, 3) and batch["images"].dtype == np.uint8
    assert batch["paths"] == [str(red), str(folder / "b_green.jpg"), str(folder / "nested/c_blue.webp")]
    [broken] = batch["unreadable"]
    assert broken["path"] == str(folder / "d_broken.jpg") and broken["error"]
    assert batch["images"][0, ..., 0].min() > 200 and batch["images"][0, ..., 1:].max() < 20  # red, resized


def test_read_new_images_refuses_a_missing_path_an_empty_folder_and_a_non_square_model(tmp_path, photos):
    with pytest.raises(FileNotFoundError, match="nope.png does not exist"):
        nodes.read_new_images(colour_model(), params([tmp_path / "nope.png"]))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="No .jpg/.*image under"):
        nodes.read_new_images(colour_model(), params([tmp_path / "empty"]))
    inputs = keras.Input((8, 12, 3), dtype="uint8")
    wide = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(inputs)))
    with pytest.raises(ValueError, match="8×12"):
        nodes.read_new_images(wide, params([photos[0]]))


def test_predictions_name_each_images_class_with_its_top_k_and_list_unreadable_files(photos):
    red, folder = photos
    p = params([red, folder])
    batch = nodes.read_new_images(colour_model(), p)
    table = nodes.predict_new_images(colour_model(), {"class_names": COLOURS}, batch, p)
    assert list(table.columns) == nodes.COLUMNS
    readable = table[table["error"] == ""]
    assert readable["predicted_class"].tolist() == ["red", "green", "blue"]
    assert (readable["probability"] > 0.9).all()  # logits 10 × 0.86 against ≈ 0
    assert all(row.split("; ")[0].startswith(name) and len(row.split("; ")) == 2
               for row, name in zip(readable["top_k"], COLOURS))
    [broken] = table[table["error"] != ""].to_dict("records")
    assert broken["path"].endswith("d_broken.jpg") and broken["predicted_class"] == ""
    assert np.isnan(broken["probability"])

    # Another model's answers are its own: the class order swapped, the labels follow.
    swapped = nodes.predict_new_images(colour_model(order=(2, 0, 1)), {"class_names": COLOURS}, batch, p)
    assert swapped[swapped["error"] == ""]["predicted_class"].tolist() == ["green", "blue", "red"]


def test_contact_sheet_shows_at_most_max_images_titled_with_their_prediction(photos):
    red, folder = photos
    p = params([red, folder], contact_sheet={"columns": 2, "cell_size": 1.0, "max_images": 2})
    batch = nodes.read_new_images(colour_model(), p)
    table = nodes.predict_new_images(colour_model(), {"class_names": COLOURS}, batch, p)
    figure = nodes.plot_contact_sheet(batch, table, p)
    assert isinstance(figure, Figure)
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert [t.split("\n")[0].split()[0] for t in titles] == ["red", "green"]
    assert titles[0].endswith("red.png")
    assert "Predictions for 3 images (first 2 shown); 1 unreadable" in figure._suptitle.get_text()


def test_the_pipeline_has_one_namespaced_instance_per_model():
    pipeline = create_pipeline()
    for model in MODELS:
        own = [n for n in pipeline.nodes if n.namespace == model]
        assert {n.name for n in own} == {f"{model}.{name}" for name in
                                         ("read_new_images", "predict_new_images", "plot_contact_sheet")}
    assert pipeline.inputs() == {f"{m}_{d}" for m in MODELS for d in ("model", "history")} | {"params:predict"}
    assert pipeline.all_outputs() == {f"{m}_{d}" for m in MODELS for d in ("predictions", "prediction_sheet")} | {
        f"{m}.new_images" for m in MODELS}


VERSIONS = ("2026-01-01T00.00.00.000Z", "2026-01-02T00.00.00.000Z")


@pytest.fixture
def trained_project(project):
    """A project whose data/ holds two versions of a delivered ``cnn`` model: the older names the
    dominant colour, the newer (its class order rotated) another one."""
    for version, order in zip(VERSIONS, [(0, 1, 2), (2, 0, 1)]):
        model_path = project / f"data/06_models/cnn_model.keras/{version}/cnn_model.keras"
        model_path.parent.mkdir(parents=True)
        colour_model(order).save(model_path)
        history_path = project / f"data/07_model_output/cnn_history.json/{version}/cnn_history.json"
        history_path.parent.mkdir(parents=True)
        history_path.write_text(json.dumps({"class_names": COLOURS}))
    return project


def run_predict(project, *args):
    from cifar_kedro.cli import predict

    cwd = os.getcwd()
    os.chdir(project)  # the command works on the project it is started in
    try:
        predict.main([*map(str, args), "--model", "cnn", "--env", "local"], standalone_mode=False)
    finally:
        os.chdir(cwd)
    return pd.read_csv(versions(project, "data/07_model_output/cnn_predictions.csv")[-1], keep_default_na=False)


def test_predict_command_asks_the_newest_model_or_the_version_given(trained_project, photos):
    red, folder = photos
    newest = run_predict(trained_project, red, folder)
    readable = newest[newest["error"] == ""]
    assert readable["path"].tolist() == [str(red), str(folder / "b_green.jpg"), str(folder / "nested/c_blue.webp")]
    assert readable["predicted_class"].tolist() == ["green", "blue", "red"]  # the newer model's answers
    assert newest[newest["error"] != ""]["path"].str.endswith("d_broken.jpg").tolist() == [True]
    [sheet] = versions(trained_project, "data/08_reporting/cnn_prediction_sheet.png")
    assert sheet.read_bytes().startswith(b"\x89PNG")

    older = run_predict(trained_project, red, "--version", VERSIONS[0])
    assert older["predicted_class"].tolist() == ["red"]
    assert len(versions(trained_project, "data/07_model_output/cnn_predictions.csv")) == 2


def test_the_package_entry_point_dispatches_predict_and_kedro_run(capsys):
    """``cifar-kedro predict …`` is the predict command; anything else is ``kedro run``'s options."""
    from cifar_kedro.__main__ import main

    with pytest.raises(SystemExit) as exit_predict:
        main(["predict", "--help"])
    assert exit_predict.value.code == 0
    text = capsys.readouterr().out
    assert "cifar-kedro predict" in text and "--model" in text and "--version" in text

    with pytest.raises(SystemExit) as exit_run:
        main(["--help"])
    assert exit_run.value.code == 0
    text = capsys.readouterr().out
    assert "--pipelines" in text and "--conf-source" in text and "--model" not in text
