"""Nodes of the ``reporting`` pipeline that draw figures.

Figures are built with the object-oriented matplotlib API (``matplotlib.figure.Figure``, no
pyplot): nothing is registered with pyplot, so no figure leaks and no backend is switched.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import (
    ConfusionMatrixDisplay,
)

from cifar_kedro.augmentation import build_augmentation
from cifar_kedro.schemas import Augmentation

from .nodes import rate_text, training_stages
from .schema import ReportingParams

# ----------------------------------------------------------------------------- plots


def _label(record: dict[str, Any]) -> str:
    return f"{record['model']} ({record['architecture']})"


def plot_confusion_matrix(summary: dict[str, Any], params: ReportingParams) -> Figure:
    """Confusion matrix of the test split: counts and row-normalized (recall on the diagonal)."""
    counts = np.asarray(summary["confusion_matrix"])
    row_sums = counts.sum(axis=1, keepdims=True)
    normalized = np.divide(counts, row_sums, out=np.zeros(counts.shape, dtype=float), where=row_sums > 0)
    names = summary["class_names"]

    fig = Figure(figsize=tuple(params.plots.confusion_matrix.figsize), layout="constrained")
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
    params: ReportingParams,
) -> Figure:
    """A grid of test images, true → predicted class with the confidence; mistakes framed in red.

    The images are a seeded random draw, the same for every model.
    """
    grid = params.plots.sample_predictions
    rows, cols, cell = grid.rows, grid.cols, grid.cell_size
    images, labels = test_split["images"], predictions["labels"]
    n_shown = min(rows * cols, len(images))
    indices = np.sort(np.random.default_rng(grid.seed).choice(len(images), n_shown, replace=False))
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


def plot_training_curves(history: dict[str, Any], params: ReportingParams) -> Figure:
    """Accuracy, loss and learning rate per epoch, train vs validation; stage boundaries marked."""
    epochs = history["epochs"]
    x = [record["epoch"] for record in epochs]
    stages = training_stages(epochs)
    best = max(epochs, key=lambda record: record["val_accuracy"])

    fig = Figure(figsize=tuple(params.plots.training_curves.figsize), layout="constrained")
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


def augment_examples(config: dict[str, Any], images: np.ndarray, n_augmented: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """``n_augmented`` seeded draws of the augmentation ``config`` (as recorded in a model's
    history) for each image, built by the same module that trained the model.

    Returns the (n_images, n_augmented, H, W, C) uint8 draws and the augmentation's layer names
    (empty when nothing is switched on).
    """
    import keras

    layer = build_augmentation(Augmentation.model_validate(config), seed=seed)
    batch = np.repeat(images, n_augmented, axis=0)
    layer_names = [type(step).__name__ for step in getattr(layer, "layers", [])]
    augmented = keras.ops.convert_to_numpy(layer(batch.astype("float32"), training=True)) if layer_names else batch
    augmented = np.clip(np.round(augmented), 0, 255).astype("uint8")
    return augmented.reshape(len(images), n_augmented, *augmented.shape[1:]), layer_names


def plot_augmentation_examples(
    history: dict[str, Any], test_split: dict[str, np.ndarray], params: ReportingParams
) -> Figure:
    """Original test images beside draws of the augmentation the model was trained with (as the study showed)."""
    examples = params.plots.augmentation_examples
    n_images, n_augmented, cell, seed = examples.n_images, examples.n_augmented, examples.cell_size, examples.seed
    images = test_split["images"]
    indices = np.sort(np.random.default_rng(seed).choice(len(images), min(n_images, len(images)), replace=False))
    originals = images[indices]
    augmented, layer_names = augment_examples(history["augmentation"], originals, n_augmented, seed)

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


def plot_model_comparison(model_comparison: pd.DataFrame, params: ReportingParams) -> Figure:
    """Bar charts of the comparison: test accuracy (interval, study's figure), train / val / test
    accuracy, parameters, training time and prediction speed."""
    table = model_comparison
    models = list(table["model"])
    x = np.arange(len(models))
    fig = Figure(figsize=tuple(params.plots.model_comparison.figsize), layout="constrained")
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


def plot_fine_tune_experiments(params: ReportingParams, *histories: dict[str, Any]) -> Figure:
    """Validation accuracy per epoch of every recorded fine-tune variant; the selected one bold."""
    fig = Figure(figsize=tuple(params.plots.fine_tune_experiments.figsize), layout="constrained")
    ax = fig.subplots()
    n_plotted = 0
    for history in histories:
        for experiment in history.get("experiments") or []:
            records = experiment.get("epochs") or []
            selected = experiment["name"] == history.get("selected_experiment")
            ax.plot(range(1, len(records) + 1), [r["val_accuracy"] for r in records], "o-", ms=3,
                    lw=3 if selected else 1.2,
                    label=f"{history['model']}: {experiment['name']} (fine_tune_at={experiment.get('fine_tune_at')}, "
                          f"lr {rate_text(experiment.get('learning_rate'))}){' — selected' if selected else ''}")
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


def plot_accuracy_against_time(equal_time: dict[str, Any], params: ReportingParams) -> Figure:
    """Validation accuracy against training minutes, one line per model (``compare_at_equal_time``),
    with the compared minutes marked."""
    fig = Figure(figsize=tuple(params.plots.accuracy_against_time.figsize), layout="constrained")
    ax = fig.subplots()
    for i, (model, curve) in enumerate(equal_time["curves"].items()):
        if curve:
            ax.plot([p["minutes"] for p in curve], [p["val_accuracy"] for p in curve], "o-", ms=3, color=f"C{i}",
                    label=f"{model} ({equal_time['total_minutes'][model]:.0f} min in all)")
    for minutes in equal_time["minutes"]:
        ax.axvline(minutes, color="grey", lw=0.8, ls="--")
        ax.text(minutes, 0.02, f" {minutes:g} min", color="grey", fontsize=8, transform=ax.get_xaxis_transform())
    ax.set_xlabel("training minutes on this machine (time outside epochs counted first)")
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.suptitle("Equal CPU time: validation accuracy against training minutes")
    return fig
