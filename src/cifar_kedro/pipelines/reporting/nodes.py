"""Nodes of the ``reporting`` pipeline that compute numbers.

Each model is predicted once on the test split (``predict_test_split``); every number of the report
is computed from those predictions with scikit-learn, or read from the model's training history.
The per-model functions are applied to every model alike; the comparison functions take any
number of models. The figures are in ``plots.py``, the written report in ``report.py``.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel
from scipy import stats
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    log_loss,
)

from cifar_kedro import training
from cifar_kedro.splits import split_sha256

from .schema import ReportingParams

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

# ----------------------------------------------------------------------------- per model: numbers


def predict_test_split(model: Any, test_split: dict[str, np.ndarray], params: ReportingParams) -> dict[str, np.ndarray]:
    """Predict the test split once; time the prediction after a warm-up.

    The warm-up predicts one full batch (and the last, partial batch's shape) so that graph
    tracing / compilation is not counted in ``images_per_second``.

    Returns:
        ``probabilities`` float32 (N, C), ``predictions`` and ``labels`` int64 (N,), and the
        0-d arrays ``predict_seconds``, ``images_per_second``, ``batch_size``.
    """
    images = test_split["images"]
    labels = np.asarray(test_split["labels"], dtype="int64")
    batch_size = params.predict.batch_size
    n_images = len(images)
    if n_images == 0:
        raise ValueError("The test split is empty.")

    warm_up = [images[:batch_size]]
    if n_images > batch_size and n_images % batch_size:
        warm_up.append(images[-(n_images % batch_size):])
    for batch in warm_up:
        training.predict(model, batch, batch_size)

    start = time.perf_counter()
    probabilities = training.predict(model, images, batch_size)
    seconds = time.perf_counter() - start

    return {
        "probabilities": probabilities,
        "predictions": probabilities.argmax(axis=1).astype("int64"),
        "labels": labels,
        "predict_seconds": np.asarray(seconds, dtype="float64"),
        "images_per_second": np.asarray(n_images / seconds, dtype="float64"),
        "batch_size": np.asarray(batch_size, dtype="int64"),
    }


def wilson_interval(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (``scipy.stats.binomtest``)."""
    if n == 0:
        return (0.0, 1.0)
    interval = stats.binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(interval.low), float(interval.high)


def evaluate_predictions(
    predictions: dict[str, np.ndarray], class_names: list[str], params: ReportingParams
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
    ci_low, ci_high = wilson_interval(int(np.sum(y_true == y_pred)), n_images, params.metrics.confidence)

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
        "confidence": params.metrics.confidence,
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


def training_stages(epochs: list[dict[str, Any]]) -> list[dict[str, Any]]:
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
        "stages": training_stages(epochs),
        "selected_experiment": history.get("selected_experiment"),
        "n_experiments": len(history.get("experiments") or []),
        "per_class": test_metrics["per_class"],
        "class_names": test_metrics["class_names"],
        "confusion_matrix": test_metrics["confusion_matrix"],
    }


# ----------------------------------------------------------------------------- comparison: numbers


def build_model_comparison(
    params: ReportingParams, *summaries: dict[str, Any]
) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """The comparison table — one row per model, ranked by test accuracy (1 = best) — and the
    models' summaries keyed by model name, in the same order.

    ``study_test_accuracy`` is the original study's hand-written figure for that model (NaN where
    the study had none) — a reference, not a result of this run.
    """
    names = [summary["model"] for summary in summaries]
    if len(set(names)) != len(names):
        raise ValueError(f"Duplicate model names in the summaries: {names}.")
    reference = params.study_reference.test_accuracy
    rows = [{column: summary.get(column) for column in COMPARISON_COLUMNS} for summary in summaries]
    table = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    table["study_test_accuracy"] = [float(reference.get(model, np.nan)) for model in table["model"]]
    table["rank"] = table["test_accuracy"].rank(ascending=False, method="min").astype(int)
    table = table.sort_values(["rank", "model"], kind="stable").reset_index(drop=True)
    by_model = {summary["model"]: summary for summary in summaries}
    return table, {model: by_model[model] for model in table["model"]}


def mcnemar_test(only_a: int, only_b: int, exact_below: int) -> tuple[float, str]:
    """Two-sided McNemar test on the discordant pairs: exact binomial for few pairs, else χ² (1 dof)
    with continuity correction (``scipy.stats``)."""
    discordant = only_a + only_b
    if discordant == 0:
        return 1.0, "no discordant pairs"
    if discordant < exact_below:
        return float(stats.binomtest(only_a, discordant, 0.5).pvalue), "exact binomial"
    chi2 = (abs(only_a - only_b) - 1) ** 2 / discordant
    return float(stats.chi2.sf(chi2, df=1)), "chi-squared with continuity correction"


def compare_paired_predictions(params: ReportingParams, **predictions: dict[str, np.ndarray]) -> dict[str, Any]:
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
        p_value, method = mcnemar_test(only_a, only_b, params.metrics.mcnemar_exact_below)
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


def rate_text(rate: Any) -> str:
    """A learning rate as a history records it — a number, or a schedule's knots — in words:
    ``1e-05``, or ``0 → 0.0003 → 0`` for a schedule."""
    if isinstance(rate, dict):
        return " → ".join(f"{value:g}" for _, value in rate["knots"])
    return "—" if rate is None else f"{float(rate):g}"


def tabulate_fine_tune_experiments(*histories: dict[str, Any]) -> pd.DataFrame:
    """The fine-tune variants each history records (none for the CNN), with the selected one flagged."""
    rows = []
    for history in histories:
        for experiment in history.get("experiments") or []:
            rows.append({
                "model": history["model"],
                "name": experiment["name"],
                "fine_tune_at": experiment.get("fine_tune_at"),
                "learning_rate": rate_text(experiment.get("learning_rate")),
                "epochs": len(experiment.get("epochs") or []),
                "best_val_accuracy": experiment.get("best_val_accuracy"),
                "final_val_accuracy": experiment.get("final_val_accuracy"),
                "selected": experiment["name"] == history.get("selected_experiment"),
            })
    return pd.DataFrame(rows, columns=EXPERIMENT_COLUMNS)


def accuracy_against_time(history: dict[str, Any]) -> list[dict[str, float]]:
    """A model's validation accuracy after each epoch against the minutes its training node had
    run by then. Time the node spent outside epochs (caching features, calibrating) is counted
    up front, so no epoch is placed earlier than it could have ended."""
    epochs = [r for r in history["epochs"] if "val_accuracy" in r and "seconds" in r]
    outside = max(float(history.get("train_seconds", 0.0)) - sum(r["seconds"] for r in epochs), 0.0)
    elapsed, curve = outside, []
    for record in epochs:
        elapsed += record["seconds"]
        curve.append({"minutes": elapsed / 60, "val_accuracy": float(record["val_accuracy"]),
                      "stage": record.get("stage", "train"), "epoch": int(record["epoch"])})
    return curve


def compare_at_equal_time(params: ReportingParams, *histories: dict[str, Any]) -> dict[str, Any]:
    """The study's question at equal cost: each model's validation accuracy after each of
    ``params.equal_time.minutes`` of training on this machine (the last epoch ended by then; None
    if none had), the leader at each, and every model's whole curve (``accuracy_against_time``).
    A point of the curve is a model this run held at that time, in the middle of its schedule:
    what a shorter run, annealed to its budget, would reach is ``budget_minutes``' question."""
    curves = {h["model"]: accuracy_against_time(h) for h in histories}
    rows = []
    for minutes in params.equal_time.minutes:
        reached = {model: next((p for p in reversed(curve) if p["minutes"] <= minutes), None)
                   for model, curve in curves.items()}
        scored = {model: p["val_accuracy"] for model, p in reached.items() if p is not None}
        leader = max(scored, key=scored.get) if scored else None
        rows.append({"minutes": minutes, "leader": leader,
                     "models": {model: (None if p is None else p["val_accuracy"]) for model, p in reached.items()}})
    return {"minutes": list(params.equal_time.minutes), "at": rows, "curves": curves,
            "total_minutes": {h["model"]: float(h.get("train_seconds", 0.0)) / 60 for h in histories}}


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
    data_manifest: dict[str, Any], test_split: dict[str, np.ndarray], reporting: ReportingParams, **training: Any
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
        "packages": {package: _version(package) for package in reporting.report.packages},
        "data": {
            "source": data_manifest.get("source"),
            "checksums": data_manifest.get("checksums") or {},
            "splits": data_manifest.get("splits") or {},
            "test_images": int(len(test_split["labels"])),
            "test_split_sha256": digest,
            "test_split_matches_manifest": None if expected is None else digest == expected,
        },
        # A pipeline run on its own gets the other pipelines' parameters unvalidated (plain dicts).
        "parameters": {
            name: params.model_dump(mode="json") if isinstance(params, BaseModel) else params
            for name, params in {"reporting": reporting, **training}.items()
        },
    }
