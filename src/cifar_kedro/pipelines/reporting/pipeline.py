"""Wiring of the ``reporting`` pipeline.

Per model, one modular pipeline instantiated under the model's namespace (kedro-viz draws each as a
collapsible group): predict the test split once → test metrics and per-class report → summary →
plots (confusion matrix, sample predictions, training curves, augmentation examples). Its inputs
and outputs are the catalog's ``<model>_…`` datasets, so another model needs only its name in
``cifar_kedro.study.MODELS``. Across models: the comparison table, a paired significance test, the fine-tune
variants, the run metadata, and the report (markdown linking the plots, HTML embedding them).
"""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from cifar_kedro.study import MODELS, TRAINED_BY

from . import nodes, plots, report
MODEL_INPUTS = ("model", "history", "validation_metrics")  # <model>_<input> in the catalog
SHARED_INPUTS = {"test_split", "class_names"}
MODEL_OUTPUTS = ("test_predictions", "test_metrics", "classification_report", "summary", *report.MODEL_FIGURES)


def _figure_names(model: str) -> list[str]:
    return [f"{model}_{kind}" for kind in report.MODEL_FIGURES]


def model_report() -> Pipeline:
    """The per-model template, in the model's own terms (``model``, ``history``, …)."""
    return Pipeline([
        Node(nodes.predict_test_split, ["model", "test_split", "params:reporting"], "test_predictions",
             name="predict_test_split"),
        Node(nodes.evaluate_predictions, ["test_predictions", "class_names", "params:reporting"],
             ["test_metrics", "classification_report"], name="evaluate_test_predictions"),
        Node(nodes.summarise_model, ["history", "validation_metrics", "test_metrics"], "summary", name="summarise"),
        Node(plots.plot_confusion_matrix, ["summary", "params:reporting"], "confusion_matrix",
             name="plot_confusion_matrix"),
        Node(plots.plot_sample_predictions, ["summary", "test_split", "test_predictions", "params:reporting"],
             "sample_predictions", name="plot_sample_predictions"),
        Node(plots.plot_training_curves, ["history", "params:reporting"], "training_curves",
             name="plot_training_curves"),
        Node(plots.plot_augmentation_examples, ["history", "test_split", "params:reporting"],
             "augmentation_examples", name="plot_augmentation_examples"),
    ])


def report_for(model: str) -> Pipeline:
    """``model_report`` under the namespace ``model``, wired to the catalog's ``<model>_…`` datasets."""
    return Pipeline(
        model_report(),
        namespace=model,
        inputs={**{name: f"{model}_{name}" for name in MODEL_INPUTS}, **{name: name for name in SHARED_INPUTS}},
        outputs={name: f"{model}_{name}" for name in MODEL_OUTPUTS},
        parameters={"params:reporting"},
    )


def create_pipeline(**kwargs) -> Pipeline:
    return sum((report_for(model) for model in MODELS), comparison())


def comparison() -> Pipeline:
    """Across the models: the comparison table and chart, the paired test, the fine-tune
    variants, the run's metadata, and the report."""
    histories = [f"{model}_history" for model in MODELS]
    figures = [name for model in MODELS for name in _figure_names(model)]
    figures += ["model_comparison_chart", "fine_tune_experiments_chart", "accuracy_against_time_chart"]
    summaries = [f"{model}_summary" for model in MODELS]
    predictions = {model: f"{model}_test_predictions" for model in MODELS}
    training = {pipeline: f"params:{pipeline}" for pipeline in TRAINED_BY.values()}
    report_inputs = ("model_comparison", "model_summaries", "paired_comparison", "fine_tune_experiments",
                     "equal_time", "run_metadata", *figures)
    return Pipeline([
        Node(nodes.build_model_comparison, ["params:reporting", *summaries], ["model_comparison", "model_summaries"],
             name="build_model_comparison"),
        Node(nodes.compare_paired_predictions, {"params": "params:reporting", **predictions}, "paired_comparison",
             name="compare_paired_predictions"),
        Node(plots.plot_model_comparison, ["model_comparison", "params:reporting"], "model_comparison_chart",
             name="plot_model_comparison"),
        Node(nodes.tabulate_fine_tune_experiments, histories, "fine_tune_experiments",
             name="tabulate_fine_tune_experiments"),
        Node(plots.plot_fine_tune_experiments, ["params:reporting", *histories], "fine_tune_experiments_chart",
             name="plot_fine_tune_experiments"),
        Node(nodes.compare_at_equal_time, ["params:reporting", *histories], "equal_time",
             name="compare_at_equal_time"),
        Node(plots.plot_accuracy_against_time, ["equal_time", "params:reporting"], "accuracy_against_time_chart",
             name="plot_accuracy_against_time"),
        Node(nodes.collect_run_metadata,
             {"data_manifest": "data_manifest", "test_split": "test_split", "reporting": "params:reporting",
              "runtime": "params:runtime", **training},
             "run_metadata", name="collect_run_metadata"),
        Node(report.write_comparison_report, {"params": "params:reporting", **{name: name for name in report_inputs}},
             ["comparison_report", "comparison_report_html"], name="write_comparison_report"),
    ])
