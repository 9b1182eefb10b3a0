"""Nodes of the ``reporting`` pipeline.

Each model is predicted once on the test split (``predict_test_split``); every number of the report
is computed from those predictions with scikit-learn, or read from the model's training history.
The per-model functions are applied to every model alike; the comparison functions take any
number of models.

Figures are built with the object-oriented matplotlib API (``matplotlib.figure.Figure``, no
pyplot): nothing is registered with pyplot, so no figure leaks and no backend is switched.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import platform
import sys
import time
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from itertools import combinations
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    accuracy_score,
    classification_report,
    confusion_matrix,
    log_loss,
)

from cifar_kedro.models import find_layer
from cifar_kedro.report_datasets import SAVE_VERSION
from cifar_kedro.splits import split_sha256

# Columns of ``model_comparison`` (one row per model), in order.
COMPARISON_COLUMNS = [
    "rank", "model", "architecture",
    "test_accuracy", "test_accuracy_ci_low", "test_accuracy_ci_high", "test_loss", "macro_f1",
    "best_val_accuracy", "best_val_epoch", "final_train_accuracy", "final_val_accuracy", "overfit_gap",
    "final_train_loss", "final_val_loss", "evaluated_val_accuracy", "evaluated_val_loss",
    "epochs", "batch_size", "params_total", "params_trainable", "train_seconds",
    "predict_images_per_second", "n_test_images", "study_test_accuracy",
]

EXPERIMENT_COLUMNS = [
    "model", "name", "fine_tune_at", "learning_rate", "epochs",
    "best_val_accuracy", "final_val_accuracy", "selected",
]

# Figures the report places in each model's section, by the suffix of their dataset name.
MODEL_FIGURES = {
    "training_curves": "Training history",
    "confusion_matrix": "Confusion matrix",
    "sample_predictions": "Sample predictions",
    "augmentation_examples": "Augmentation examples",
}


# ----------------------------------------------------------------------------- per model: numbers


def predict_test_split(model: Any, test_split: dict[str, np.ndarray], params: dict[str, Any]) -> dict[str, np.ndarray]:
    """Predict the test split once; time the prediction after a warm-up.

    The warm-up predicts one full batch (and the last, partial batch's shape) so that graph
    tracing / compilation is not counted in ``images_per_second``.

    Returns:
        ``probabilities`` float32 (N, C), ``predictions`` and ``labels`` int64 (N,), and the
        0-d arrays ``predict_seconds``, ``images_per_second``, ``batch_size``.
    """
    images = test_split["images"]
    labels = np.asarray(test_split["labels"], dtype="int64")
    batch_size = int(params["batch_size"])
    n_images = len(images)
    if n_images == 0:
        raise ValueError("The test split is empty.")

    warm_up = [images[:batch_size]]
    if n_images > batch_size and n_images % batch_size:
        warm_up.append(images[-(n_images % batch_size):])
    for batch in warm_up:
        model.predict(batch, batch_size=batch_size, verbose=0)

    start = time.perf_counter()
    probabilities = model.predict(images, batch_size=batch_size, verbose=0)
    seconds = time.perf_counter() - start

    probabilities = np.asarray(probabilities, dtype="float32")
    return {
        "probabilities": probabilities,
        "predictions": probabilities.argmax(axis=1).astype("int64"),
        "labels": labels,
        "predict_seconds": np.asarray(seconds, dtype="float64"),
        "images_per_second": np.asarray(n_images / seconds, dtype="float64"),
        "batch_size": np.asarray(batch_size, dtype="int64"),
    }


def wilson_interval(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion."""
    if n == 0:
        return (0.0, 1.0)
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denominator = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def evaluate_predictions(
    predictions: dict[str, np.ndarray], class_names: list[str], params: dict[str, Any]
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Test metrics of one model, all from scikit-learn.

    Returns:
        The metrics (accuracy with its Wilson interval, log loss, macro / weighted averages,
        per-class precision / recall / F1 / support, confusion matrix counts, prediction speed)
        and the per-class report as a table (plus macro and weighted averages).
    """
    y_true, y_pred, proba = predictions["labels"], predictions["predictions"], predictions["probabilities"]
    n_classes = proba.shape[1]
    if len(class_names) != n_classes:
        raise ValueError(f"{len(class_names)} class names for {n_classes} predicted classes.")
    labels = list(range(n_classes))

    accuracy = float(accuracy_score(y_true, y_pred))
    loss = float(log_loss(y_true, proba, labels=labels))
    report = classification_report(
        y_true, y_pred, labels=labels, target_names=class_names, output_dict=True, zero_division=0
    )
    counts = confusion_matrix(y_true, y_pred, labels=labels)
    n_images = len(y_true)
    ci_low, ci_high = wilson_interval(int(np.sum(y_true == y_pred)), n_images, float(params["confidence"]))

    def scores(entry: dict[str, float]) -> dict[str, float]:
        return {
            "precision": float(entry["precision"]),
            "recall": float(entry["recall"]),
            "f1_score": float(entry["f1-score"]),
            "support": int(entry["support"]),
        }

    metrics = {
        "n_images": n_images,
        "test_accuracy": accuracy,
        "test_accuracy_ci_low": ci_low,
        "test_accuracy_ci_high": ci_high,
        "confidence": float(params["confidence"]),
        "test_loss": loss,
        "macro_avg": scores(report["macro avg"]),
        "weighted_avg": scores(report["weighted avg"]),
        "per_class": {name: scores(report[name]) for name in class_names},
        "class_names": list(class_names),
        "confusion_matrix": counts.tolist(),
        "predict_seconds": float(predictions["predict_seconds"]),
        "predict_images_per_second": float(predictions["images_per_second"]),
        "predict_batch_size": int(predictions["batch_size"]),
    }
    rows = [{"class": name, **metrics["per_class"][name]} for name in class_names]
    rows += [{"class": "macro avg", **metrics["macro_avg"]}, {"class": "weighted avg", **metrics["weighted_avg"]}]
    return metrics, pd.DataFrame(rows, columns=["class", "precision", "recall", "f1_score", "support"])


def _stages(epochs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consecutive runs of epochs with the same stage (head, fine_tune, train)."""
    stages: list[dict[str, Any]] = []
    for record in epochs:
        if not stages or stages[-1]["stage"] != record["stage"]:
            stages.append({"stage": record["stage"], "records": []})
        stages[-1]["records"].append(record)
    result = []
    for stage in stages:
        records = stage["records"]
        rates = [r["learning_rate"] for r in records if r.get("learning_rate") is not None]
        result.append({
            "stage": stage["stage"],
            "first_epoch": records[0]["epoch"],
            "last_epoch": records[-1]["epoch"],
            "epochs": len(records),
            "learning_rate_start": rates[0] if rates else None,
            "learning_rate_end": rates[-1] if rates else None,
            "learning_rate_max": max(rates) if rates else None,
            "seconds": float(sum(r.get("seconds", 0.0) for r in records)),
            "final_accuracy": records[-1]["accuracy"],
            "final_val_accuracy": records[-1]["val_accuracy"],
        })
    return result


def summarise_model(
    history: dict[str, Any], validation_metrics: dict[str, Any], test_metrics: dict[str, Any]
) -> dict[str, Any]:
    """One model's numbers for the comparison: its row, its training stages, its test detail."""
    epochs = history["epochs"]
    if not epochs:
        raise ValueError(f"The history of model '{history.get('model')}' records no epochs.")
    last = epochs[-1]
    best = max(epochs, key=lambda record: record["val_accuracy"])  # the first best epoch
    return {
        "model": history["model"],
        "architecture": history["architecture"],
        "test_accuracy": test_metrics["test_accuracy"],
        "test_accuracy_ci_low": test_metrics["test_accuracy_ci_low"],
        "test_accuracy_ci_high": test_metrics["test_accuracy_ci_high"],
        "test_loss": test_metrics["test_loss"],
        "macro_f1": test_metrics["macro_avg"]["f1_score"],
        "best_val_accuracy": float(best["val_accuracy"]),
        "best_val_epoch": int(best["epoch"]),
        "final_train_accuracy": float(last["accuracy"]),
        "final_val_accuracy": float(last["val_accuracy"]),
        "overfit_gap": float(last["accuracy"]) - float(last["val_accuracy"]),
        "final_train_loss": float(last["loss"]),
        "final_val_loss": float(last["val_loss"]),
        "evaluated_val_accuracy": float(validation_metrics["val_accuracy"]),
        "evaluated_val_loss": float(validation_metrics["val_loss"]),
        "epochs": len(epochs),
        "batch_size": int(history["batch_size"]),
        "params_total": int(history["params_total"]),
        "params_trainable": int(history["params_trainable"]),
        "train_seconds": float(history["train_seconds"]),
        "predict_images_per_second": test_metrics["predict_images_per_second"],
        "predict_batch_size": test_metrics["predict_batch_size"],
        "n_test_images": test_metrics["n_images"],
        "n_val_images": int(validation_metrics["n_images"]),
        "confidence": test_metrics["confidence"],
        "stages": _stages(epochs),
        "selected_experiment": history.get("selected_experiment"),
        "n_experiments": len(history.get("experiments") or []),
        "per_class": test_metrics["per_class"],
        "class_names": test_metrics["class_names"],
        "confusion_matrix": test_metrics["confusion_matrix"],
    }


# ----------------------------------------------------------------------------- comparison: numbers


def build_model_comparison(
    study_reference: dict[str, Any], *summaries: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """The comparison table — one row per model, ranked by test accuracy (1 = best) — and the
    models' summaries keyed by model name, in the same order.

    ``study_test_accuracy`` is the original study's hand-written figure for that model (NaN where
    the study had none) — a reference, not a result of this run.
    """
    names = [summary["model"] for summary in summaries]
    if len(set(names)) != len(names):
        raise ValueError(f"Duplicate model names in the summaries: {names}.")
    reference = study_reference.get("test_accuracy") or {}
    rows = [{column: summary.get(column) for column in COMPARISON_COLUMNS} for summary in summaries]
    table = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    table["study_test_accuracy"] = [float(reference.get(model, np.nan)) for model in table["model"]]
    table["rank"] = table["test_accuracy"].rank(ascending=False, method="min").astype(int)
    table = table.sort_values(["rank", "model"], kind="stable").reset_index(drop=True)
    by_model = {summary["model"]: summary for summary in summaries}
    return table, {model: by_model[model] for model in table["model"]}


def mcnemar_test(only_a: int, only_b: int, exact_below: int) -> tuple[float, str]:
    """Two-sided McNemar test on the discordant pairs: exact binomial for few pairs, else χ² (1 dof)
    with continuity correction."""
    discordant = only_a + only_b
    if discordant == 0:
        return 1.0, "no discordant pairs"
    if discordant < exact_below:
        tail = sum(math.comb(discordant, i) for i in range(min(only_a, only_b) + 1))
        return min(1.0, 2 * tail / 2**discordant), "exact binomial"
    chi2 = (abs(only_a - only_b) - 1) ** 2 / discordant
    return math.erfc(math.sqrt(chi2 / 2)), "chi-squared with continuity correction"


def compare_paired_predictions(params: dict[str, Any], **predictions: dict[str, np.ndarray]) -> dict[str, Any]:
    """Are the models' test accuracies different? McNemar's test on every pair of models.

    All models must have been predicted on the same test images (identical label arrays).
    """
    pairs = []
    for (name_a, pred_a), (name_b, pred_b) in combinations(predictions.items(), 2):
        labels = pred_a["labels"]
        if not np.array_equal(labels, pred_b["labels"]):
            raise ValueError(f"'{name_a}' and '{name_b}' were not predicted on the same test labels.")
        correct_a = pred_a["predictions"] == labels
        correct_b = pred_b["predictions"] == labels
        only_a = int(np.sum(correct_a & ~correct_b))
        only_b = int(np.sum(~correct_a & correct_b))
        p_value, method = mcnemar_test(only_a, only_b, int(params["mcnemar_exact_below"]))
        pairs.append({
            "model_a": name_a,
            "model_b": name_b,
            "n_images": int(len(labels)),
            "both_correct": int(np.sum(correct_a & correct_b)),
            "only_a_correct": only_a,
            "only_b_correct": only_b,
            "both_wrong": int(np.sum(~correct_a & ~correct_b)),
            "accuracy_difference": float(accuracy_score(labels, pred_a["predictions"]))
            - float(accuracy_score(labels, pred_b["predictions"])),
            "agreement": float(np.mean(pred_a["predictions"] == pred_b["predictions"])),
            "mcnemar_p_value": p_value,
            "mcnemar_method": method,
        })
    return {"test": "McNemar (paired, two-sided)", "pairs": pairs}


def tabulate_fine_tune_experiments(*histories: dict[str, Any]) -> pd.DataFrame:
    """The fine-tune variants each history records (none for the CNN), with the selected one flagged."""
    rows = []
    for history in histories:
        for experiment in history.get("experiments") or []:
            rows.append({
                "model": history["model"],
                "name": experiment["name"],
                "fine_tune_at": experiment.get("fine_tune_at"),
                "learning_rate": experiment.get("learning_rate"),
                "epochs": len(experiment.get("epochs") or []),
                "best_val_accuracy": experiment.get("best_val_accuracy"),
                "final_val_accuracy": experiment.get("final_val_accuracy"),
                "selected": experiment["name"] == history.get("selected_experiment"),
            })
    return pd.DataFrame(rows, columns=EXPERIMENT_COLUMNS)


def _version(package: str) -> str | None:
    try:
        return importlib_metadata.version(package)
    except importlib_metadata.PackageNotFoundError:
        return None


def _accelerators(backend: str) -> list[str]:
    """The devices the active Keras backend computes on (imports only that backend)."""
    try:
        if backend == "jax":
            import jax

            names = ["cpu" if d.platform == "cpu" else f"{d.platform}: {d.device_kind}" for d in jax.devices()]
            return list(dict.fromkeys(names))
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            names = [tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus]
            return [f"gpu: {name}" for name in names] or ["cpu"]
        if backend == "torch":
            import torch

            if torch.cuda.is_available():
                return [f"cuda: {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())]
            return ["cpu"]
    except Exception as exc:  # noqa: BLE001 - metadata must never fail the report
        return [f"unknown ({type(exc).__name__}: {exc})"]
    return ["unknown"]


def collect_run_metadata(
    packages: list[str], data_manifest: dict[str, Any], test_split: dict[str, np.ndarray], **parameters: Any
) -> dict[str, Any]:
    """What the report was computed with: package versions, Keras backend, device, data version and
    checksums (and whether the test split matches the manifest), and the parameters."""
    import keras

    backend = keras.backend.backend()
    digest = split_sha256(test_split)
    manifest_test = (data_manifest.get("splits") or {}).get("test") or {}
    expected = manifest_test.get("sha256")
    return {
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "keras_backend": backend,
        "dtype_policy": keras.config.dtype_policy().name,
        "device": {
            "accelerators": _accelerators(backend),
            "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
        },
        "python": sys.version.split()[0],
        "packages": {package: _version(package) for package in packages},
        "data": {
            "source": data_manifest.get("source"),
            "checksums": data_manifest.get("checksums") or {},
            "splits": data_manifest.get("splits") or {},
            "test_images": int(len(test_split["labels"])),
            "test_split_sha256": digest,
            "test_split_matches_manifest": None if expected is None else digest == expected,
        },
        "parameters": parameters,
    }


# ----------------------------------------------------------------------------- plots


def _label(record: dict[str, Any]) -> str:
    return f"{record['model']} ({record['architecture']})"


def plot_confusion_matrix(summary: dict[str, Any], params: dict[str, Any]) -> Figure:
    """Confusion matrix of the test split: counts and row-normalized (recall on the diagonal)."""
    counts = np.asarray(summary["confusion_matrix"])
    row_sums = counts.sum(axis=1, keepdims=True)
    normalized = np.divide(counts, row_sums, out=np.zeros(counts.shape, dtype=float), where=row_sums > 0)
    names = summary["class_names"]

    fig = Figure(figsize=tuple(params["figsize"]), layout="constrained")
    ax_counts, ax_norm = fig.subplots(1, 2)
    ConfusionMatrixDisplay(counts, display_labels=names).plot(
        ax=ax_counts, cmap="Blues", values_format="d", xticks_rotation=45
    )
    ax_counts.set_title("Counts")
    ConfusionMatrixDisplay(normalized, display_labels=names).plot(
        ax=ax_norm, cmap="Blues", values_format=".2f", xticks_rotation=45, im_kw={"vmin": 0, "vmax": 1}
    )
    ax_norm.set_title("Row-normalized (each true class sums to 1)")
    fig.suptitle(
        f"{_label(summary)} — test confusion matrix, accuracy {summary['test_accuracy']:.2%} "
        f"(n = {summary['n_test_images']:,})"
    )
    return fig


def plot_sample_predictions(
    summary: dict[str, Any], test_split: dict[str, np.ndarray], predictions: dict[str, np.ndarray],
    params: dict[str, Any],
) -> Figure:
    """A grid of test images, true → predicted class with the confidence; mistakes framed in red.

    The images are a seeded random draw, the same for every model.
    """
    rows, cols, cell = int(params["rows"]), int(params["cols"]), float(params["cell_size"])
    images, labels = test_split["images"], predictions["labels"]
    n_shown = min(rows * cols, len(images))
    indices = np.sort(np.random.default_rng(int(params["seed"])).choice(len(images), n_shown, replace=False))
    names = summary["class_names"]

    fig = Figure(figsize=(cols * cell, rows * cell * 1.25), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    n_wrong = 0
    for ax, index in zip(axes, indices):
        true, pred = int(labels[index]), int(predictions["predictions"][index])
        confidence = float(predictions["probabilities"][index, pred])
        wrong = true != pred
        n_wrong += wrong
        colour = "tab:red" if wrong else "tab:green"
        ax.imshow(images[index])
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{names[true]}\n→ {names[pred]} ({confidence:.0%})", fontsize=8, color=colour)
        for spine in ax.spines.values():
            spine.set_edgecolor(colour)
            spine.set_linewidth(3 if wrong else 1)
    for ax in axes[n_shown:]:
        ax.axis("off")
    fig.suptitle(
        f"{_label(summary)} — sample test predictions: true → predicted (confidence); "
        f"{n_wrong} of {n_shown} wrong, in red; test accuracy {summary['test_accuracy']:.2%}"
    )
    return fig


def plot_training_curves(history: dict[str, Any], params: dict[str, Any]) -> Figure:
    """Accuracy, loss and learning rate per epoch, train vs validation; stage boundaries marked."""
    epochs = history["epochs"]
    x = [record["epoch"] for record in epochs]
    stages = _stages(epochs)
    best = max(epochs, key=lambda record: record["val_accuracy"])

    fig = Figure(figsize=tuple(params["figsize"]), layout="constrained")
    ax_acc, ax_loss, ax_lr = fig.subplots(1, 3)
    panels = [(ax_acc, "accuracy", "Accuracy"), (ax_loss, "loss", "Loss")]
    for ax, key, title in panels:
        ax.plot(x, [r[key] for r in epochs], "o-", ms=3, label=f"train {key}")
        ax.plot(x, [r[f"val_{key}"] for r in epochs], "s-", ms=3, label=f"validation {key}")
        ax.set_title(title)
    ax_acc.plot([best["epoch"]], [best["val_accuracy"]], "*", ms=14, color="gold", mec="black",
                label=f"best val {best['val_accuracy']:.2%} (epoch {best['epoch']})")
    rates = [r.get("learning_rate") for r in epochs]
    if all(rate is not None for rate in rates):
        ax_lr.plot(x, rates, "o-", ms=3, color="tab:purple", label="learning rate (end of epoch)")
        if all(rate > 0 for rate in rates) and max(rates) / min(rates) > 10:
            ax_lr.set_yscale("log")
    else:
        ax_lr.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax_lr.transAxes)
    ax_lr.set_title("Learning rate")

    for ax in (ax_acc, ax_loss, ax_lr):
        for i, stage in enumerate(stages):
            ax.axvspan(stage["first_epoch"] - 0.5, stage["last_epoch"] + 0.5,
                       color=f"C{i % 10}", alpha=0.07, lw=0)
            if i:
                ax.axvline(stage["first_epoch"] - 0.5, color="black", ls="--", lw=1)
            ax.text(stage["first_epoch"] - 0.4, 1.0, stage["stage"], transform=ax.get_xaxis_transform(),
                    va="top", fontsize=8, style="italic")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
    boundaries = ", ".join(f"{s['stage']} {s['first_epoch']}–{s['last_epoch']}" for s in stages)
    fig.suptitle(f"{_label(history)} — training history (epochs: {boundaries}; dashed line = stage boundary)")
    return fig


AUGMENTATION_LAYER = "augmentation"


def augment_examples(model: Any, images: np.ndarray, n_augmented: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """``n_augmented`` draws of the model's ``augmentation`` layer for each image (uint8 out).

    The draw is seeded without touching the model: its random layers' seed states are overridden
    inside a ``keras.StatelessScope``. Returns the (n_images, n_augmented, H, W, C) draws and the
    augmentation's layer names (empty for an empty augmentation, which is the identity).
    """
    import keras

    augmentation = find_layer(model, AUGMENTATION_LAYER)
    sub_layers = getattr(augmentation, "layers", None)
    batch = np.repeat(images, n_augmented, axis=0).astype("float32")
    if isinstance(augmentation, keras.layers.Identity) or (sub_layers is not None and not sub_layers):
        augmented, layer_names = batch, []
    else:
        layer_names = [type(layer).__name__ for layer in sub_layers] if sub_layers else [type(augmentation).__name__]
        seed_states = [v for v in augmentation.variables if v.name == "seed_generator_state"]
        mapping = [(v, np.array([seed + i, 0], dtype=v.dtype)) for i, v in enumerate(seed_states)]
        with keras.StatelessScope(state_mapping=mapping):
            augmented = keras.ops.convert_to_numpy(augmentation(batch, training=True))
    augmented = np.clip(np.round(augmented), 0, 255).astype("uint8")
    return augmented.reshape(len(images), n_augmented, *augmented.shape[1:]), layer_names


def plot_augmentation_examples(
    model: Any, history: dict[str, Any], test_split: dict[str, np.ndarray], params: dict[str, Any]
) -> Figure:
    """Original test images beside draws of the model's own augmentation (as the study showed)."""
    n_images, n_augmented = int(params["n_images"]), int(params["n_augmented"])
    cell, seed = float(params["cell_size"]), int(params["seed"])
    images = test_split["images"]
    indices = np.sort(np.random.default_rng(seed).choice(len(images), min(n_images, len(images)), replace=False))
    originals = images[indices]
    augmented, layer_names = augment_examples(model, originals, n_augmented, seed)

    fig = Figure(figsize=((1 + n_augmented) * cell, len(originals) * cell), layout="constrained")
    axes = fig.subplots(len(originals), 1 + n_augmented, squeeze=False)
    for row, original in enumerate(originals):
        panels = [original, *augmented[row]]
        for col, image in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(image)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title("original" if col == 0 else f"augmented {col}", fontsize=9)
    description = " → ".join(layer_names) if layer_names else "none (identity)"
    fig.suptitle(f"{_label(history)} — augmentation: {description}")
    return fig


def plot_model_comparison(model_comparison: pd.DataFrame, params: dict[str, Any]) -> Figure:
    """Bar charts of the comparison: test accuracy (interval, study's figure), train / val / test
    accuracy, parameters, training time and prediction speed."""
    table = model_comparison
    models = list(table["model"])
    x = np.arange(len(models))
    fig = Figure(figsize=tuple(params["figsize"]), layout="constrained")
    ax_test, ax_split, ax_params, ax_time, ax_speed = fig.subplots(1, 5)

    errors = np.vstack([table["test_accuracy"] - table["test_accuracy_ci_low"],
                        table["test_accuracy_ci_high"] - table["test_accuracy"]])
    ax_test.bar(x, table["test_accuracy"], yerr=errors, capsize=6, color=[f"C{i}" for i in x], label="this run")
    study = table["study_test_accuracy"]
    if study.notna().any():
        ax_test.scatter(x[study.notna()], study[study.notna()], marker="_", s=900, color="black", zorder=3,
                        label="original study")
    for i, value in zip(x, table["test_accuracy"]):
        ax_test.text(i, value / 2, f"{value:.2%}", ha="center", color="white", fontweight="bold")
    ax_test.set_title("Test accuracy (error bar: Wilson interval)")
    ax_test.legend(fontsize=8)

    width = 0.27
    for offset, column, label in [(-width, "final_train_accuracy", "final train"),
                                  (0, "final_val_accuracy", "final val"),
                                  (width, "test_accuracy", "test")]:
        ax_split.bar(x + offset, table[column], width, label=label)
    ax_split.set_title("Accuracy: train vs validation vs test")
    ax_split.legend(fontsize=8)

    ax_params.bar(x - 0.2, table["params_total"] / 1e6, 0.4, label="total")
    ax_params.bar(x + 0.2, table["params_trainable"] / 1e6, 0.4, label="trainable (final stage)")
    ax_params.set_title("Parameters (millions)")
    ax_params.legend(fontsize=8)

    ax_time.bar(x, table["train_seconds"], color=[f"C{i}" for i in x])
    ax_time.set_title("Training time (s)")
    ax_speed.bar(x, table["predict_images_per_second"], color=[f"C{i}" for i in x])
    ax_speed.set_title("Prediction speed (images/s)")

    for ax in (ax_test, ax_split, ax_params, ax_time, ax_speed):
        ax.set_xticks(x, models)
        ax.grid(axis="y", alpha=0.3)
    for ax in (ax_test, ax_split):
        ax.set_ylim(0, 1)
    fig.suptitle("Model comparison on the CIFAR-10 test split (ranked by test accuracy)")
    return fig


def plot_fine_tune_experiments(params: dict[str, Any], *histories: dict[str, Any]) -> Figure:
    """Validation accuracy per epoch of every recorded fine-tune variant; the selected one bold."""
    fig = Figure(figsize=tuple(params["figsize"]), layout="constrained")
    ax = fig.subplots()
    n_plotted = 0
    for history in histories:
        for experiment in history.get("experiments") or []:
            records = experiment.get("epochs") or []
            selected = experiment["name"] == history.get("selected_experiment")
            ax.plot(range(1, len(records) + 1), [r["val_accuracy"] for r in records], "o-", ms=3,
                    lw=3 if selected else 1.2,
                    label=f"{history['model']}: {experiment['name']} (fine_tune_at={experiment.get('fine_tune_at')}, "
                          f"lr={experiment.get('learning_rate')}){' — selected' if selected else ''}")
            n_plotted += 1
    if n_plotted:
        ax.set_xlabel("epoch of the variant's fine-tuning")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("validation accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    else:
        ax.axis("off")
        ax.text(0.5, 0.5, "No fine-tune variants recorded", ha="center", va="center", fontsize=14)
    fig.suptitle("Fine-tune variants: validation accuracy")
    return fig


# ----------------------------------------------------------------------------- the report


def _pct(value: float | None, decimals: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{100 * value:.{decimals}f}%"


def _pp(value: float, decimals: int) -> str:
    return f"{100 * value:+.{decimals}f} pp"


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _lr(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def _overfitting_verdict(gap: float, thresholds: dict[str, Any]) -> str:
    if gap > float(thresholds["strong"]):
        return "strong overfitting"
    if gap > float(thresholds["mild"]):
        return "mild overfitting"
    if gap < 0:
        return "no overfitting (validation above training — regularisation is active while training)"
    return "no meaningful overfitting"


def _top_confusions(summary: dict[str, Any], n: int) -> list[tuple[str, str, int, float]]:
    counts = np.asarray(summary["confusion_matrix"])
    names = summary["class_names"]
    off_diagonal = [(counts[i, j], i, j) for i in range(len(names)) for j in range(len(names)) if i != j]
    off_diagonal.sort(key=lambda item: (-item[0], item[1], item[2]))
    result = []
    for count, i, j in off_diagonal[:n]:
        if count == 0:
            break
        support = counts[i].sum()
        result.append((names[i], names[j], int(count), float(count / support) if support else 0.0))
    return result


def _build_markdown(
    model_comparison: pd.DataFrame,
    paired_comparison: dict[str, Any],
    fine_tune_experiments: pd.DataFrame,
    run_metadata: dict[str, Any],
    params: dict[str, Any],
    summaries: dict[str, dict[str, Any]],
    figure_names: list[str],
    image_src: Any,
) -> str:
    report = params["report"]
    d = int(report["percent_decimals"])
    m = int(report["metric_decimals"])
    study = params["study_reference"]
    table = model_comparison
    rows = table.to_dict("records")
    best, worst = rows[0], rows[-1]
    data = run_metadata["data"]
    placed: set[str] = set()

    def figure(name: str, caption: str) -> str:
        if name not in figure_names:
            return ""
        placed.add(name)
        return f"![{caption}]({image_src(name)})\n\n*{caption}* (`{name}`)\n"

    matches = data["test_split_matches_manifest"]
    match_text = {True: "matches the data manifest ✓", False: "**does NOT match the data manifest ✗**",
                  None: "no manifest digest to compare"}[matches]
    accelerators = ", ".join(run_metadata["device"]["accelerators"])
    out: list[str] = [
        f"# {report['title']}",
        "",
        f"Report version `{SAVE_VERSION}` · generated {run_metadata['generated_at']} · "
        f"Keras {run_metadata['packages'].get('keras')} on the **{run_metadata['keras_backend']}** backend "
        f"({accelerators}) · data source **{data['source']}**, test split of {data['test_images']:,} images, "
        f"sha256 `{data['test_split_sha256'][:16]}…` {match_text}.",
        "",
        "Every number below is computed by the `reporting` pipeline from the versioned models' predictions on "
        "the test split (scikit-learn) and from their versioned training histories.",
        "",
    ]
    if data["source"] == "synthetic":
        out += ["> **Demo data — these are not CIFAR-10 numbers.** The splits were generated by the `demo` "
                "environment (synthetic images in the CIFAR-10 file format, with demo training settings). "
                "Run `kedro run` in the base environment for the real study.", ""]
    reference = study.get("test_accuracy") or {}
    if reference:
        listed = ", ".join(f"{model} {_pct(value, d)}" for model, value in reference.items())
        out += [f"> **Reference — {study['label']}:** {listed}. These are the study's figures, not this run's.", ""]

    # -- summary
    out += ["## Summary", ""]
    if len(rows) > 1:
        gap = best["test_accuracy"] - worst["test_accuracy"]
        pair = next((p for p in paired_comparison["pairs"]
                     if {p["model_a"], p["model_b"]} == {best["model"], worst["model"]}), None)
        significance = ""
        if pair is not None:
            alpha = 1 - float(params["metrics"]["confidence"])
            verdict = "significant" if pair["mcnemar_p_value"] < alpha else "not significant"
            verdict += f" at α = {alpha:.2g}"
            significance = f" (McNemar p = {pair['mcnemar_p_value']:.3g}, {verdict})"
        out.append(f"- **{best['model']}** ({best['architecture']}) ranks first with test accuracy "
                   f"**{_pct(best['test_accuracy'], d)}**, {_pp(gap, d)} over **{worst['model']}** "
                   f"({_pct(worst['test_accuracy'], d)}){significance}.")
        smallest = table.loc[table["params_total"].idxmin()]
        for row in rows:
            if row["model"] != smallest["model"]:
                ratio = row["params_total"] / smallest["params_total"]
                out.append(f"- {row['model']} has {ratio:.2f}× the parameters "
                           f"of {smallest['model']} ({row['params_total']:,} vs {int(smallest['params_total']):,}) "
                           "and trained "
                           f"{row['train_seconds'] / smallest['train_seconds']:.2f}× as long "
                           f"({row['train_seconds']:.0f} s vs {smallest['train_seconds']:.0f} s).")
    for row in rows:
        out.append(f"- {row['model']}: overfitting gap {_pp(row['overfit_gap'], d)} — "
                   f"{_overfitting_verdict(row['overfit_gap'], params['overfitting'])}.")
    out += ["", figure("model_comparison_chart", "Model comparison"), ""]

    # -- test accuracy
    conf = f"{100 * float(params['metrics']['confidence']):g}"
    out += ["## Test accuracy", "",
            _table(["rank", "model", "architecture", "test accuracy", f"{conf}% interval (Wilson)", "test loss",
                    "macro F1", "images", "study's figure", "this run − study"],
                   [[r["rank"], r["model"], r["architecture"], _pct(r["test_accuracy"], d),
                     f"{_pct(r['test_accuracy_ci_low'], d)} – {_pct(r['test_accuracy_ci_high'], d)}",
                     f"{r['test_loss']:.{m}f}", f"{r['macro_f1']:.{m}f}", f"{r['n_test_images']:,}",
                     _pct(r["study_test_accuracy"], d),
                     "—" if math.isnan(r["study_test_accuracy"])
                     else _pp(r["test_accuracy"] - r["study_test_accuracy"], d)]
                    for r in rows]),
            "", "Test loss is the mean cross-entropy (scikit-learn `log_loss`) of the predicted probabilities.", ""]
    if paired_comparison["pairs"]:
        out += ["Paired comparison on the same test images (McNemar's test):", "",
                _table(["models", "both right", "only first right", "only second right", "both wrong",
                        "agreement", "accuracy difference", "p-value", "test"],
                       [[f"{p['model_a']} vs {p['model_b']}", f"{p['both_correct']:,}", f"{p['only_a_correct']:,}",
                         f"{p['only_b_correct']:,}", f"{p['both_wrong']:,}", _pct(p["agreement"], d),
                         _pp(p["accuracy_difference"], d), f"{p['mcnemar_p_value']:.3g}", p["mcnemar_method"]]
                        for p in paired_comparison["pairs"]]), ""]

    # -- validation accuracy
    out += ["## Validation accuracy", "",
            _table(["model", "best val accuracy", "best epoch", "final val accuracy",
                    "delivered model on validation", "validation images", "delivered val − test"],
                   [[r["model"], _pct(r["best_val_accuracy"], d), f"{r['best_val_epoch']} of {r['epochs']}",
                     _pct(r["final_val_accuracy"], d), _pct(r["evaluated_val_accuracy"], d),
                     f"{summaries[r['model']]['n_val_images']:,}",
                     _pp(r["evaluated_val_accuracy"] - r["test_accuracy"], d)] for r in rows]),
            "", "*Delivered model on validation* is the saved model re-evaluated on the validation split after "
            "training; *best / final* come from the per-epoch history.", ""]

    # -- overfitting
    out += ["## Overfitting analysis", "",
            _table(["model", "final train accuracy", "final val accuracy", "gap (train − val)",
                    "final train loss", "final val loss", "verdict"],
                   [[r["model"], _pct(r["final_train_accuracy"], d), _pct(r["final_val_accuracy"], d),
                     _pp(r["overfit_gap"], d), f"{r['final_train_loss']:.{m}f}", f"{r['final_val_loss']:.{m}f}",
                     _overfitting_verdict(r["overfit_gap"], params["overfitting"])] for r in rows]),
            "",
            f"Gap thresholds: mild above {_pp(float(params['overfitting']['mild']), d)}, strong above "
            f"{_pp(float(params['overfitting']['strong']), d)}. Training accuracy is Keras' running mean over each "
            "epoch with augmentation and dropout active, so the gap understates the difference on clean images.",
            ""]
    for row in rows:
        out += [figure(f"{row['model']}_training_curves", f"{row['model']}: training history"), ""]

    # -- training configuration
    config_rows = []
    for r in rows:
        summary = summaries[r["model"]]
        stages = "; ".join(
            f"{s['stage']}: epochs {s['first_epoch']}–{s['last_epoch']} ({s['epochs']}), lr "
            f"{_lr(s['learning_rate_start'])}→{_lr(s['learning_rate_end'])} (max {_lr(s['learning_rate_max'])}), "
            f"{s['seconds']:.0f} s" for s in summary["stages"])
        config_rows.append([r["model"], r["architecture"], r["epochs"], r["batch_size"], stages,
                            f"{r['train_seconds']:.1f}", f"{r['train_seconds'] / r['epochs']:.1f}",
                            summary["selected_experiment"] or "—"])
    out += ["## Training configuration", "",
            _table(["model", "architecture", "epochs", "batch size", "stages", "train seconds", "s / epoch",
                    "selected variant"], config_rows), ""]
    if len(fine_tune_experiments):
        out += ["Fine-tune variants (compared on validation accuracy; only the selected variant's model is "
                "delivered and tested):", "",
                _table(["model", "variant", "fine_tune_at", "learning rate", "epochs", "best val accuracy",
                        "final val accuracy", "selected"],
                       [[e["model"], e["name"], e["fine_tune_at"], _lr(e["learning_rate"]), e["epochs"],
                         _pct(e["best_val_accuracy"], d), _pct(e["final_val_accuracy"], d),
                         "✓" if e["selected"] else ""] for e in fine_tune_experiments.to_dict("records")]),
                "", figure("fine_tune_experiments_chart", "Fine-tune variants"), ""]
    else:
        out += ["No fine-tune variants were recorded.", ""]
    out += ["The full training parameters of each pipeline are listed under *Run metadata*.", ""]

    # -- model complexity
    smallest_params = table["params_total"].min()
    out += ["## Model complexity", "",
            _table(["model", "parameters", "trainable (final stage)", "× smallest", "train seconds",
                    "prediction images/s", "prediction batch"],
                   [[r["model"], f"{r['params_total']:,}", f"{r['params_trainable']:,}",
                     f"{r['params_total'] / smallest_params:.2f}×", f"{r['train_seconds']:.1f}",
                     f"{r['predict_images_per_second']:,.0f}",
                     summaries[r["model"]]["predict_batch_size"]]
                    for r in rows]),
            "", "Training seconds are each history's `train_seconds`: everything its pipeline trained, fine-tune "
            "variants included. Prediction speed is timed over the whole test split after a warm-up batch, on the "
            "device above.", ""]

    # -- ranking
    out += ["## Ranking", ""]
    for r in rows:
        out.append(f"{r['rank']}. **{r['model']}** ({r['architecture']}) — "
                   f"{_pct(r['test_accuracy'], d)} test accuracy, "
                   f"{r['params_total']:,} parameters, {r['train_seconds']:.0f} s training")
    out += ["", "Ranked by test accuracy; the paired test above says whether the difference is beyond chance.", ""]

    # -- the full comparison table (model_comparison.csv)
    out += ["## Comparison table", "", "The rows of `model_comparison.csv`:", "",
            _table(list(table.columns), [[_cell(v) for v in r.values()] for r in rows]), ""]

    # -- per model
    n_classes = int(report["n_best_worst_classes"])
    for r in rows:
        summary = summaries[r["model"]]
        per_class = summary["per_class"]
        by_f1 = sorted(per_class, key=lambda name: per_class[name]["f1_score"])
        best_classes = ", ".join(f"{n} ({per_class[n]['f1_score']:.3f})" for n in reversed(by_f1[-n_classes:]))
        worst_classes = ", ".join(f"{n} ({per_class[n]['f1_score']:.3f})" for n in by_f1[:n_classes])
        out += [f"## {r['model']} ({r['architecture']}) in detail", "",
                f"Best classes by F1: {best_classes}; worst: {worst_classes}.", ""]
        confusions = _top_confusions(summary, int(report["n_confused_pairs"]))
        if confusions:
            out += ["Most frequent confusions: " + "; ".join(
                f"{t} → {p}: {c:,} ({_pct(s, d)} of {t})" for t, p, c, s in confusions) + ".", ""]
        out += [_table(["class", "precision", "recall", "F1", "support"],
                       [[name, f"{v['precision']:.{m}f}", f"{v['recall']:.{m}f}", f"{v['f1_score']:.{m}f}",
                         f"{v['support']:,}"]
                        for name, v in per_class.items()]), ""]
        for kind, caption in MODEL_FIGURES.items():
            if kind != "training_curves":
                out += [figure(f"{r['model']}_{kind}", f"{r['model']}: {caption.lower()}"), ""]

    others = [name for name in figure_names if name not in placed]
    if others:
        out += ["## Other figures", ""]
        out += [figure(name, name) for name in others]

    # -- run metadata
    device = run_metadata["device"]
    out += ["## Run metadata", "",
            f"- Keras backend: **{run_metadata['keras_backend']}**, dtype policy `{run_metadata['dtype_policy']}`",
            f"- Device: {accelerators}; CPU {device['cpu']} × {device['cpu_count']}; {device['platform']}",
            f"- Python {run_metadata['python']}",
            f"- Data source: **{data['source']}**; test split sha256 `{data['test_split_sha256']}` — {match_text}",
            "", "Packages:", "",
            _table(["package", "version"], [[p, v or "not installed"] for p, v in run_metadata["packages"].items()]),
            ""]
    if data["splits"]:
        out += ["Data splits (from the data manifest):", "",
                _table(["split", "images", "sha256"],
                       [[name, f"{info.get('count', 0):,}", f"`{info.get('sha256', '')}`"]
                        for name, info in data["splits"].items()]),
                ""]
    if data["checksums"]:
        out += ["Source files (MD5):", "",
                _table(["file", "md5"], [[f, f"`{md5}`"] for f, md5 in data["checksums"].items()]), ""]
    out += ["Parameters:", ""]
    for name, value in run_metadata["parameters"].items():
        out += [f"`{name}`:", "", "```json", json.dumps(value, indent=2, sort_keys=True, default=str), "```", ""]
    return "\n".join(line for line in out if line is not None).rstrip() + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def _png_bytes(figure: bytes | Figure) -> bytes:
    if isinstance(figure, bytes | bytearray):
        return bytes(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


_HTML_STYLE = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; max-width: 1200px; margin: 2em auto;
       padding: 0 1em; line-height: 1.5; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }
th { background: #f2f2f2; }
img { max-width: 100%; border: 1px solid #eee; }
blockquote { border-left: 4px solid #e0a800; background: #fff8e1; margin: 1em 0; padding: 0.5em 1em; }
code, pre { background: #f6f8fa; }
pre { padding: 0.8em; overflow-x: auto; }
"""


def write_comparison_report(
    model_comparison: pd.DataFrame,
    model_summaries: dict[str, dict[str, Any]],
    paired_comparison: dict[str, Any],
    fine_tune_experiments: pd.DataFrame,
    run_metadata: dict[str, Any],
    params: dict[str, Any],
    **figures: bytes,
) -> tuple[str, str]:
    """The comparison report, as markdown linking the plots and as HTML embedding them.

    The markdown links each figure with ``params['report']['figure_link']``, its ``{version}`` left
    as ``SAVE_VERSION`` for the versioned text dataset to fill in, so the links point at the plots
    of the same run. ``figures`` maps each figure's dataset name to its PNG bytes (as
    ``FigureDataset`` loads them) or to the ``Figure`` itself (an in-memory run).
    """
    by_model = model_summaries
    names = list(figures)
    pngs = {name: _png_bytes(figure) for name, figure in figures.items()}
    link = params["report"]["figure_link"]
    markdown = _build_markdown(
        model_comparison, paired_comparison, fine_tune_experiments, run_metadata, params, by_model, names,
        image_src=lambda name: link.format(name=name, version=SAVE_VERSION),
    )
    embedded = _build_markdown(
        model_comparison, paired_comparison, fine_tune_experiments, run_metadata, params, by_model, names,
        image_src=lambda name: "data:image/png;base64," + base64.b64encode(pngs[name]).decode("ascii"),
    )
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(embedded)
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(params['report']['title'])}</title>\n<style>{_HTML_STYLE}</style>\n</head>\n"
        f"<body>\n{body}</body>\n</html>\n"
    )
    return markdown, page
