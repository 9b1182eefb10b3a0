"""Tests of the ``reporting`` pipeline on tiny fake inputs.

Every reported number is checked against scikit-learn applied to the models' own predictions on
the test split; the pipeline is run through ``SequentialRunner`` both on an in-memory catalog and
on the project's catalog configuration (files under a temporary folder).
"""

from __future__ import annotations

import copy
import hashlib
import math
import re
from fnmatch import fnmatch
from html import unescape
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog, MemoryDataset, Version
from kedro.runner import SequentialRunner
from matplotlib.figure import Figure
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, log_loss

from cifar_kedro.pipelines.reporting import create_pipeline
from cifar_kedro.pipelines.reporting.pipeline import model_report, report_for
from cifar_kedro.pipelines.reporting import nodes, plots, report
from cifar_kedro.pipelines.reporting.schema import ReportingParams
from cifar_kedro.report_datasets import SAVE_VERSION, FigureDataset, VersionedTextDataset

PROJECT = Path(__file__).resolve().parents[3]
CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
N_TEST = 60
from cifar_kedro.study import MODELS  # noqa: E402
from tests.conftest import tomllib  # noqa: E402


# ----------------------------------------------------------------------------- fake inputs


def _tiny_model(seed: int) -> keras.Model:
    """uint8 (None, 32, 32, 3) in, softmax (None, 10) out."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((32, 32, 3), dtype="uint8")
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def _epochs(stages: list[tuple[str, int, float]], start_acc: float) -> list[dict]:
    records, epoch = [], 0
    for stage, count, lr in stages:
        for _ in range(count):
            epoch += 1
            acc = start_acc + 0.05 * epoch
            records.append({"epoch": epoch, "stage": stage, "loss": 2.0 - 0.1 * epoch, "accuracy": acc,
                            "val_loss": 2.1 - 0.08 * epoch,
                            "val_accuracy": acc - 0.01 * epoch + (0.03 if epoch == 2 else 0),
                            "learning_rate": lr, "seconds": 1.5})
    return records


@pytest.fixture(scope="module")
def inputs() -> dict:
    rng = np.random.default_rng(0)
    labels = rng.permutation(np.arange(N_TEST) % 10).astype("int64")
    images = rng.integers(0, 256, (N_TEST, 32, 32, 3), dtype="uint8")
    test_split = {"images": images, "labels": labels}
    transfer_epochs = _epochs([("head", 2, 1e-3), ("fine_tune", 2, 1e-5)], 0.3)
    histories = {
        "transfer": {
            "model": "transfer", "architecture": "mobilenet_v2", "epochs": transfer_epochs,
            "train_seconds": 12.5, "params_total": 2_300_000, "params_trainable": 1_800_000, "batch_size": 128,
            "augmentation": {"horizontal_flip": True, "shift": 0.1},
            "experiments": [
                {"name": "ft100_lr1e-5", "fine_tune_at": 100, "learning_rate": 1e-5, "best_val_accuracy": 0.52,
                 "final_val_accuracy": 0.5, "epochs": transfer_epochs[2:]},
                {"name": "ft50_lrmax1e-4", "fine_tune_at": 50, "best_val_accuracy": 0.48,
                 "learning_rate": {"knots": [[0, 0.0], [0.1, 1e-4], [1, 0.0]]},  # a schedule
                 "final_val_accuracy": 0.47, "epochs": transfer_epochs[2:]},
            ],
            "selected_experiment": "ft100_lr1e-5",
        },
        "cnn": {
            "model": "cnn", "architecture": "seed_cnn", "epochs": _epochs([("train", 3, 1e-3)], 0.4),
            "train_seconds": 4.0, "params_total": 120_000, "params_trainable": 120_000, "batch_size": 64,
            "augmentation": {"horizontal_flip": True}, "experiments": [], "selected_experiment": None,
        },
    }
    models = {"transfer": _tiny_model(1), "cnn": _tiny_model(2)}
    sha = hashlib.sha256(images.tobytes() + labels.astype("int64").tobytes()).hexdigest()
    manifest = {"source": "synthetic", "checksums": {"test_batch": "0" * 32},
                "splits": {"train": {"count": 100, "sha256": "a" * 64}, "validation": {"count": 20, "sha256": "b" * 64},
                           "test": {"count": N_TEST, "sha256": sha}}}
    params = yaml.safe_load((PROJECT / "conf/base/parameters_reporting.yml").read_text())["reporting"]
    params["predict"]["batch_size"] = 16  # 60 images: three full batches and a partial one
    params = ReportingParams.model_validate(params)
    return {
        "test_split": test_split, "class_names": CLASS_NAMES, "data_manifest": manifest, "params": params,
        "models": models, "histories": histories,
        "validation_metrics": {m: {"val_loss": 1.9, "val_accuracy": 0.45 if m == "transfer" else 0.4, "n_images": 20}
                               for m in MODELS},
    }


def _expected(model: keras.Model, test_split: dict) -> dict:
    """What scikit-learn computes from the model's own predictions on the test split."""
    proba = np.asarray(model.predict(test_split["images"], batch_size=16, verbose=0), dtype="float32")
    y, pred = test_split["labels"], proba.argmax(axis=1)
    return {
        "proba": proba, "pred": pred,
        "accuracy": accuracy_score(y, pred),
        "loss": log_loss(y, proba, labels=list(range(10))),
        "report": classification_report(y, pred, labels=list(range(10)), target_names=CLASS_NAMES,
                                        output_dict=True, zero_division=0),
        "cm": confusion_matrix(y, pred, labels=list(range(10))),
    }


def _input_datasets(inputs: dict) -> dict:
    data = {
        "test_split": inputs["test_split"], "class_names": inputs["class_names"],
        "data_manifest": inputs["data_manifest"],
        "params:reporting": inputs["params"],
        "params:transfer_training": {"epochs_head": 2, "epochs_fine_tune": 2},
        "params:cnn_training": {"epochs": 3},
        "params:runtime": {"seed": 42, "precision": "float32"},
    }
    for m in MODELS:
        data[f"{m}_history"] = inputs["histories"][m]
        data[f"{m}_validation_metrics"] = inputs["validation_metrics"][m]
    datasets = {name: MemoryDataset(value) for name, value in data.items()}
    for m in MODELS:  # Keras models are handed over, not deep-copied
        datasets[f"{m}_model"] = MemoryDataset(inputs["models"][m], copy_mode="assign")
    return datasets


# ----------------------------------------------------------------------------- nodes


@pytest.mark.parametrize("model_name", MODELS)
def test_metrics_equal_sklearn_on_model_predictions(inputs, model_name):
    model, split = inputs["models"][model_name], inputs["test_split"]
    predictions = nodes.predict_test_split(model, split, inputs["params"])
    expected = _expected(model, split)

    np.testing.assert_allclose(predictions["probabilities"], expected["proba"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(predictions["predictions"], expected["pred"])
    np.testing.assert_array_equal(predictions["labels"], split["labels"])
    assert float(predictions["images_per_second"]) > 0

    metrics, table = nodes.evaluate_predictions(predictions, CLASS_NAMES, inputs["params"])
    assert metrics["test_accuracy"] == expected["accuracy"]
    assert metrics["test_loss"] == pytest.approx(expected["loss"], rel=1e-6)
    assert metrics["n_images"] == N_TEST
    assert metrics["confusion_matrix"] == expected["cm"].tolist()
    assert metrics["test_accuracy_ci_low"] <= metrics["test_accuracy"] <= metrics["test_accuracy_ci_high"]
    for name in CLASS_NAMES:
        row = table.set_index("class").loc[name]
        for ours, theirs in [("precision", "precision"), ("recall", "recall"), ("f1_score", "f1-score")]:
            assert metrics["per_class"][name][ours] == pytest.approx(expected["report"][name][theirs], abs=1e-12)
            assert row[ours] == pytest.approx(expected["report"][name][theirs], abs=1e-12)
        assert row["support"] == expected["report"][name]["support"] == 6
    assert metrics["macro_avg"]["f1_score"] == pytest.approx(expected["report"]["macro avg"]["f1-score"])
    assert list(table["class"][-2:]) == ["macro avg", "weighted avg"]


def test_summary_and_comparison_from_history(inputs):
    summaries = []
    for m in MODELS:
        predictions = nodes.predict_test_split(inputs["models"][m], inputs["test_split"], inputs["params"])
        metrics, _ = nodes.evaluate_predictions(predictions, CLASS_NAMES, inputs["params"])
        summaries.append(nodes.summarise_model(inputs["histories"][m], inputs["validation_metrics"][m], metrics))
    table, by_model = nodes.build_model_comparison(inputs["params"], *summaries)

    required = {"model", "test_accuracy", "test_loss", "best_val_accuracy", "final_train_accuracy",
                "final_val_accuracy", "overfit_gap", "epochs", "params_total", "params_trainable",
                "train_seconds", "predict_images_per_second"}
    assert required <= set(table.columns)
    assert list(table["test_accuracy"]) == sorted(table["test_accuracy"], reverse=True)
    assert list(by_model) == list(table["model"])
    for row in table.to_dict("records"):
        history = inputs["histories"][row["model"]]
        epochs = history["epochs"]
        assert row["epochs"] == len(epochs)
        assert row["final_train_accuracy"] == epochs[-1]["accuracy"]
        assert row["final_val_accuracy"] == epochs[-1]["val_accuracy"]
        assert row["overfit_gap"] == pytest.approx(epochs[-1]["accuracy"] - epochs[-1]["val_accuracy"])
        assert row["best_val_accuracy"] == max(e["val_accuracy"] for e in epochs)
        assert row["params_total"] == history["params_total"]
        assert row["train_seconds"] == history["train_seconds"]
        assert row["study_test_accuracy"] == inputs["params"].study_reference.test_accuracy[row["model"]]
    stages = by_model["transfer"]["stages"]
    assert [(s["stage"], s["first_epoch"], s["last_epoch"]) for s in stages] == [("head", 1, 2), ("fine_tune", 3, 4)]


def test_equal_time_compares_each_models_last_finished_epoch_at_each_minute(inputs):
    # transfer: 4 epochs of 1.5 s in a 12.5 s node, so 6.5 s outside epochs, counted first: its
    # epochs end at 8, 9.5, 11 and 12.5 s. cnn: 3 epochs of 1.5 s end at 1.5, 3 and 4.5 s.
    params = inputs["params"].model_copy(update={"equal_time": inputs["params"].equal_time.model_copy(
        update={"minutes": [0.1, 0.2]})})  # 6 s and 12 s
    result = nodes.compare_at_equal_time(params, *inputs["histories"].values())
    transfer = [round(p["minutes"] * 60, 6) for p in result["curves"]["transfer"]]
    assert transfer == [8.0, 9.5, 11.0, 12.5]
    assert [round(p["minutes"] * 60, 6) for p in result["curves"]["cnn"]] == [1.5, 3.0, 4.5]
    at_6s, at_12s = result["at"]
    assert at_6s["models"] == {"transfer": None, "cnn": pytest.approx(0.52)} and at_6s["leader"] == "cnn"
    assert at_12s["models"] == {"transfer": pytest.approx(0.42), "cnn": pytest.approx(0.52)}  # transfer's 3rd epoch
    assert at_12s["leader"] == "cnn"


def test_mcnemar_and_wilson():
    assert nodes.mcnemar_test(0, 0, 25) == (1.0, "no discordant pairs")
    p_exact, method = nodes.mcnemar_test(1, 9, 25)  # exact: 2 * P(X <= 1), X ~ Bin(10, 1/2)
    assert method == "exact binomial" and p_exact == pytest.approx(2 * 11 / 1024)
    p_chi2, method = nodes.mcnemar_test(40, 10, 25)
    assert method.startswith("chi-squared") and p_chi2 == pytest.approx(math.erfc(math.sqrt((29**2 / 50) / 2)))
    low, high = nodes.wilson_interval(50, 100, 0.95)
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)


def test_augmentation_examples_are_seeded_draws_of_the_recorded_augmentation(inputs):
    images = inputs["test_split"]["images"][:3]
    config = inputs["histories"]["transfer"]["augmentation"]
    first, names = plots.augment_examples(config, images, 4, seed=0)
    again, _ = plots.augment_examples(config, images, 4, seed=0)
    assert first.shape == (3, 4, 32, 32, 3) and first.dtype == np.uint8
    assert names == ["RandomFlip", "RandomTranslation"]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first[:, 0], first[:, 1])  # the draws differ from each other

    same, names = plots.augment_examples({}, images, 2, seed=0)
    assert names == []
    np.testing.assert_array_equal(same[:, 0], images)


def test_plots_are_figures(inputs):
    history = inputs["histories"]["transfer"]
    params = inputs["params"]
    fig = plots.plot_training_curves(history, params)
    assert isinstance(fig, Figure) and len(fig.axes) == 3
    empty = plots.plot_fine_tune_experiments(params, inputs["histories"]["cnn"])
    assert "No fine-tune variants" in " ".join(t.get_text() for t in empty.axes[0].texts)


# ----------------------------------------------------------------------------- the pipeline


class _KeptMemoryDataset(MemoryDataset):
    """A MemoryDataset the runner cannot release, so the test can read every intermediate output."""

    def _release(self) -> None:
        pass


def _run_in_memory(inputs: dict) -> DataCatalog:
    pipeline = create_pipeline()
    datasets = _input_datasets(inputs)
    datasets.update({name: _KeptMemoryDataset(copy_mode="assign") for name in pipeline.datasets() - pipeline.inputs()})
    catalog = DataCatalog(datasets=datasets)
    SequentialRunner().run(pipeline, catalog)
    return catalog


@pytest.fixture(scope="module")
def memory_run(inputs) -> DataCatalog:
    return _run_in_memory(inputs)


def test_each_model_gets_the_same_modular_pipeline_under_its_namespace():
    pipeline = create_pipeline()
    assert all(node.name for node in pipeline.nodes)
    template = [(node.name, node.func) for node in model_report().nodes]
    for m in MODELS:
        namespaced = sorted((node.name.removeprefix(f"{m}."), node.func) for node in pipeline.nodes if node.namespace == m)
        assert namespaced == sorted(template, key=lambda pair: pair[0])
    # A third model is one more instance: its own inputs and outputs, nothing else to wire.
    third = report_for("vit")
    assert {"vit_model", "vit_history", "vit_validation_metrics", "test_split", "class_names"} <= third.inputs()
    assert "vit_confusion_matrix" in third.outputs() and all(n.namespace == "vit" for n in third.nodes)


def test_report_numbers_equal_sklearn(inputs, memory_run):
    table = memory_run.load("model_comparison")
    report = memory_run.load("comparison_report")
    decimals = inputs["params"].report.percent_decimals
    places = inputs["params"].report.metric_decimals
    for m in MODELS:
        expected = _expected(inputs["models"][m], inputs["test_split"])
        row = table.set_index("model").loc[m]
        assert row["test_accuracy"] == expected["accuracy"]
        assert row["test_loss"] == pytest.approx(expected["loss"], rel=1e-6)
        metrics = memory_run.load(f"{m}_test_metrics")
        assert metrics["confusion_matrix"] == expected["cm"].tolist()
        # the markdown states the same numbers
        assert f"{100 * expected['accuracy']:.{decimals}f}%" in report
        assert f"{expected['loss']:.{places}f}" in report
        for name in CLASS_NAMES:
            scores = expected["report"][name]
            assert f"| {name} | {scores['precision']:.{places}f} | {scores['recall']:.{places}f} | " \
                   f"{scores['f1-score']:.{places}f} |" in report
    pairs = memory_run.load("paired_comparison")["pairs"]
    assert len(pairs) == 1
    exp = {m: _expected(inputs["models"][m], inputs["test_split"]) for m in MODELS}
    correct = {m: exp[m]["pred"] == inputs["test_split"]["labels"] for m in MODELS}
    assert pairs[0]["only_a_correct"] == int(np.sum(correct["transfer"] & ~correct["cnn"]))
    assert pairs[0]["only_b_correct"] == int(np.sum(~correct["transfer"] & correct["cnn"]))


def test_report_contains_each_model_row_and_sections(inputs, memory_run):
    table = memory_run.load("model_comparison")
    markdown = memory_run.load("comparison_report")
    for row in table.to_dict("records"):
        assert "| " + " | ".join(report._cell(v) for v in row.values()) + " |" in markdown
    for section in ["## Summary", "## Test accuracy", "## Validation accuracy", "## At equal CPU time",
                    "## Overfitting analysis",
                    "## Training configuration", "## Model complexity", "## Ranking", "## Run metadata"]:
        assert section in markdown
    assert "original study" in markdown and "10.00%" in markdown and "67.09%" in markdown
    assert "matches the data manifest" in markdown and "NOT match" not in markdown
    assert "ft100_lr1e-5" in markdown  # the fine-tune variants table …
    assert "| 0 → 0.0001 → 0 |" in markdown  # … with a schedule in words
    # figures are linked with the save-version placeholder (filled in by the versioned dataset)
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert "../../transfer_confusion_matrix.png/" + SAVE_VERSION + "/transfer_confusion_matrix.png" in links
    assert len(links) == 2 * len(report.MODEL_FIGURES) + 3  # + comparison, fine-tune variants, equal time
    html = memory_run.load("comparison_report_html")
    assert html.count("data:image/png;base64,") == len(links)
    assert "<table>" in html and SAVE_VERSION in html
    metadata = memory_run.load("run_metadata")
    assert metadata["data"]["test_split_matches_manifest"] is True
    assert metadata["keras_backend"] == keras.backend.backend()
    assert set(metadata["parameters"]) == {"reporting", "runtime", "transfer_training", "cnn_training"}


def _numbers(text: str) -> list[str]:
    return re.findall(r"\d+(?:[.,]\d+)*", text)


def _markdown_table(markdown: str, heading: str) -> list[list[str]]:
    """The cells of the first table under ``## heading``, header row first, ``\\|`` unescaped."""
    section = markdown.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    table = next(block for block in map(str.strip, section.split("\n\n")) if block.startswith("|"))
    return [[cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
            for line in table.splitlines() if not line.startswith("|---")]


def _html_table(page: str, heading: str) -> list[list[str]]:
    """The cells of the first table after ``<h2>heading</h2>``, header row first."""
    section = page.split(f"<h2>{heading}</h2>", 1)[1].split("<h2>", 1)[0]
    table = re.search(r"<table>(.*?)</table>", section, re.S).group(1)
    return [[unescape(cell) for cell in re.findall(r"<t[hd]>(.*?)</t[hd]>", row, re.S)]
            for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)]


def test_markdown_and_html_state_the_same_numbers(memory_run):
    markdown = memory_run.load("comparison_report")
    text = unescape(re.sub(r"<[^>]+>", " ", memory_run.load("comparison_report_html").split("<body>", 1)[1]))
    linked = re.sub(r"!\[[^\]]*\]\([^)]*\)", " ", markdown)  # plot links (the HTML embeds the plots)
    linked = re.sub(r"(?m)^\d+\. ", "", linked)  # the ranking's list markers: HTML numbers an <ol> itself
    numbers = _numbers(linked)
    assert len(numbers) > 300 and numbers == _numbers(text)
    for heading in ["Test accuracy", "Validation accuracy", "Overfitting analysis", "Model complexity"]:
        assert _markdown_table(markdown, heading) == _html_table(memory_run.load("comparison_report_html"), heading)
    assert "\n\n\n" not in markdown  # one blank line between blocks


def test_report_tables_state_each_models_metrics(inputs, memory_run):
    """The numbers of the report's tables, read back, are the models' own metrics (scikit-learn)
    and their histories' last epochs, to the precision the report prints."""
    decimals, places = inputs["params"].report.percent_decimals, inputs["params"].report.metric_decimals
    half_digit = 0.5 * 10 ** -(decimals + 2)  # of a printed percentage, read back as a fraction
    header, *rows = _markdown_table(memory_run.load("comparison_report"), "Test accuracy")
    accuracy = {row[1]: dict(zip(header, row)) for row in rows}
    header, *rows = _markdown_table(memory_run.load("comparison_report"), "Overfitting analysis")
    overfitting = {row[0]: dict(zip(header, row)) for row in rows}
    assert set(accuracy) == set(overfitting) == set(MODELS)
    for m in MODELS:
        expected = _expected(inputs["models"][m], inputs["test_split"])
        metrics = memory_run.load(f"{m}_test_metrics")
        row = accuracy[m]
        assert row["test accuracy"] == f"{100 * expected['accuracy']:.{decimals}f}%"
        assert float(row["test accuracy"][:-1]) / 100 == pytest.approx(expected["accuracy"], abs=half_digit)
        assert float(row["test loss"]) == pytest.approx(expected["loss"], abs=0.5 * 10**-places)
        macro_f1 = expected["report"]["macro avg"]["f1-score"]
        assert float(row["macro F1"]) == pytest.approx(macro_f1, abs=0.5 * 10**-places)
        low, high = (float(value.rstrip("%")) / 100 for value in row["95% interval (Wilson)"].split(" – "))
        assert (low, high) == pytest.approx((metrics["test_accuracy_ci_low"], metrics["test_accuracy_ci_high"]),
                                            abs=half_digit)
        assert row["images"] == f"{N_TEST:,}"
        last = inputs["histories"][m]["epochs"][-1]
        gap = float(overfitting[m]["gap (train − val)"].removesuffix(" pp")) / 100
        assert gap == pytest.approx(last["accuracy"] - last["val_accuracy"], abs=half_digit)
        assert overfitting[m]["final val accuracy"] == f"{100 * last['val_accuracy']:.{decimals}f}%"


def test_every_figure_is_placed_once_and_the_unplaced_ones_listed(inputs, memory_run):
    """The figures the template places and the ones ``report.py`` lists under *Other figures* add up
    to every figure given, each once (here with no fine-tune variants, so their chart is "other")."""
    report_node = next(node for node in create_pipeline().nodes if node.name == "write_comparison_report")
    tables = {"model_comparison", "model_summaries", "paired_comparison", "fine_tune_experiments", "equal_time",
              "run_metadata"}
    names = [name for name in report_node.inputs if name not in tables and not name.startswith("params:")]
    png = report._png_bytes(Figure(figsize=(1, 1)))
    markdown, page = report.write_comparison_report(
        *(memory_run.load(name) for name in ["model_comparison", "model_summaries", "paired_comparison"]),
        memory_run.load("fine_tune_experiments").iloc[0:0], memory_run.load("equal_time"), memory_run.load("run_metadata"),
        inputs["params"],
        **{name: png for name in names}, misc_plot=png,
    )
    link = inputs["params"].report.figure_link
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert sorted(links) == sorted(link.format(name=name, version=SAVE_VERSION) for name in [*names, "misc_plot"])
    assert "No fine-tune variants were recorded." in markdown and "Fine-tune variants (" not in markdown
    others = markdown.split("\n## Other figures\n", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"\(`([^`]+)`\)", others) == ["fine_tune_experiments_chart", "misc_plot"]
    assert page.count("data:image/png;base64,") == len(links)


def test_report_templates_are_package_data():
    """An installed wheel carries the templates: pyproject's package-data matches each of them."""
    package = PROJECT / "src/cifar_kedro/pipelines/reporting"
    setuptools = tomllib().loads((PROJECT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools["package-data"]["cifar_kedro.pipelines.reporting"]
    templates = [path.relative_to(package).as_posix() for path in (package / "templates").iterdir()]
    assert {"templates/report.md.j2", "templates/report.html.j2"} <= set(templates)
    assert [name for name in templates if not any(fnmatch(name, pattern) for pattern in patterns)] == []


def test_manifest_mismatch_is_reported(inputs):
    changed = copy.deepcopy(inputs["data_manifest"])
    changed["splits"]["test"]["sha256"] = "f" * 64
    metadata = nodes.collect_run_metadata(changed, inputs["test_split"], inputs["params"])
    assert metadata["data"]["test_split_matches_manifest"] is False


def _project_catalog_config(tmp_path: Path) -> tuple[dict, dict]:
    """conf/base's catalog as Kedro's config loader resolves it (globals included), every path
    moved under ``tmp_path``; and the credentials it names."""
    loader = OmegaConfigLoader(str(PROJECT / "conf"), base_env="base", default_run_env="base")
    config = loader["catalog"]
    for entry in config.values():
        for key in ("filepath", "path"):
            if isinstance(entry, dict) and key in entry:
                entry[key] = str(tmp_path / entry[key])
    return config, loader["credentials"]


def test_pipeline_on_project_catalog_writes_versioned_files(inputs, tmp_path):
    catalog = DataCatalog.from_config(*_project_catalog_config(tmp_path))
    for name, dataset in _input_datasets(inputs).items():
        catalog[name] = dataset
    pipeline = create_pipeline()
    for name in pipeline.datasets() - pipeline.inputs():  # every output resolves to a reporting entry
        dataset = catalog.get(name)
        if not isinstance(dataset, MemoryDataset):
            assert dataset._version is not None, f"{name} is not versioned"
            assert "08_reporting" in str(dataset._filepath) or name.endswith("_test_predictions")
    SequentialRunner().run(pipeline, catalog)

    reporting = tmp_path / "data/08_reporting"
    report_files = list((reporting / "comparison_report.md").glob("*/comparison_report.md"))
    assert len(report_files) == 1
    report_path = report_files[0]
    version = report_path.parent.name
    text = report_path.read_text()
    assert SAVE_VERSION not in text and f"`{version}`" in text
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert len(links) == 2 * len(report.MODEL_FIGURES) + 3  # + comparison, fine-tune variants, equal time
    for link in links:  # each plot of the same run, written and linked
        target = (report_path.parent / link).resolve()
        assert target.is_file() and target.read_bytes().startswith(b"\x89PNG"), link
        assert target.parent.name == version
    html_path = reporting / "comparison_report.html" / version / "comparison_report.html"
    assert html_path.read_text().count("data:image/png;base64,") == len(links)

    table = pd.read_csv(reporting / "model_comparison.csv" / version / "model_comparison.csv")
    assert list(table.columns) == nodes.COMPARISON_COLUMNS and len(table) == 2
    for m in MODELS:
        predictions = tmp_path / f"data/07_model_output/{m}_test_predictions.npz/{version}/{m}_test_predictions.npz"
        assert predictions.is_file()
        png = FigureDataset(filepath=str(reporting / f"{m}_confusion_matrix.png"), version=Version(None, None)).load()
        assert png.startswith(b"\x89PNG")  # the latest version loads as image bytes
    assert catalog.load("fine_tune_experiments")["selected"].sum() == 1


def test_versioned_text_dataset_substitutes_its_version(tmp_path):
    dataset = VersionedTextDataset(filepath=str(tmp_path / "r.md"), version=Version(None, "2024-01-01T00.00.00.000Z"))
    dataset.save(f"see ../../x.png/{SAVE_VERSION}/x.png")
    assert dataset.load() == "see ../../x.png/2024-01-01T00.00.00.000Z/x.png"
    assert "<pre" in dataset.preview()
    unversioned = VersionedTextDataset(filepath=str(tmp_path / "u.md"))
    unversioned.save("plain text")
    with pytest.raises(Exception, match="not versioned"):
        unversioned.save(SAVE_VERSION)
