"""Wiring of the ``reporting`` pipeline.

Per model (transfer, cnn) — the same functions for both:
predict the test split once → test metrics and per-class report → summary → plots (confusion
matrix, sample predictions, training curves, augmentation examples).
Across models: the comparison table, a paired significance test, the fine-tune variants, the run
metadata, and the report (markdown linking the plots, HTML embedding them).
"""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from . import nodes, plots, report

MODELS = ("transfer", "cnn")


def _figure_names(model: str) -> list[str]:
    return [f"{model}_{kind}" for kind in report.MODEL_FIGURES]


def _model_nodes(model: str) -> list[Node]:
    predictions = f"{model}_test_predictions"
    summary = f"{model}_summary"
    return [
        Node(
            nodes.predict_test_split,
            inputs=[f"{model}_model", "test_split", "params:reporting"],
            outputs=predictions,
            name=f"predict_{model}_test_split",
        ),
        Node(
            nodes.evaluate_predictions,
            inputs=[predictions, "class_names", "params:reporting"],
            outputs=[f"{model}_test_metrics", f"{model}_classification_report"],
            name=f"evaluate_{model}_test_predictions",
        ),
        Node(
            nodes.summarise_model,
            inputs=[f"{model}_history", f"{model}_validation_metrics", f"{model}_test_metrics"],
            outputs=summary,
            name=f"summarise_{model}",
        ),
        Node(
            plots.plot_confusion_matrix,
            inputs=[summary, "params:reporting"],
            outputs=f"{model}_confusion_matrix",
            name=f"plot_{model}_confusion_matrix",
        ),
        Node(
            plots.plot_sample_predictions,
            inputs=[summary, "test_split", predictions, "params:reporting"],
            outputs=f"{model}_sample_predictions",
            name=f"plot_{model}_sample_predictions",
        ),
        Node(
            plots.plot_training_curves,
            inputs=[f"{model}_history", "params:reporting"],
            outputs=f"{model}_training_curves",
            name=f"plot_{model}_training_curves",
        ),
        Node(
            plots.plot_augmentation_examples,
            inputs=[f"{model}_history", "test_split", "params:reporting"],
            outputs=f"{model}_augmentation_examples",
            name=f"plot_{model}_augmentation_examples",
        ),
    ]


def create_pipeline(**kwargs) -> Pipeline:
    histories = [f"{model}_history" for model in MODELS]
    figures = [name for model in MODELS for name in _figure_names(model)]
    figures += ["model_comparison_chart", "fine_tune_experiments_chart"]
    comparison_nodes = [
        Node(
            nodes.build_model_comparison,
            inputs=["params:reporting", *(f"{model}_summary" for model in MODELS)],
            outputs=["model_comparison", "model_summaries"],
            name="build_model_comparison",
        ),
        Node(
            nodes.compare_paired_predictions,
            inputs={"params": "params:reporting", **{model: f"{model}_test_predictions" for model in MODELS}},
            outputs="paired_comparison",
            name="compare_paired_predictions",
        ),
        Node(
            plots.plot_model_comparison,
            inputs=["model_comparison", "params:reporting"],
            outputs="model_comparison_chart",
            name="plot_model_comparison",
        ),
        Node(
            nodes.tabulate_fine_tune_experiments,
            inputs=histories,
            outputs="fine_tune_experiments",
            name="tabulate_fine_tune_experiments",
        ),
        Node(
            plots.plot_fine_tune_experiments,
            inputs=["params:reporting", *histories],
            outputs="fine_tune_experiments_chart",
            name="plot_fine_tune_experiments",
        ),
        Node(
            nodes.collect_run_metadata,
            inputs={
                "data_manifest": "data_manifest",
                "test_split": "test_split",
                "reporting": "params:reporting",
                **{f"{model}_training": f"params:{model}_training" for model in MODELS},
            },
            outputs="run_metadata",
            name="collect_run_metadata",
        ),
        Node(
            report.write_comparison_report,
            inputs={
                "model_comparison": "model_comparison",
                "model_summaries": "model_summaries",
                "paired_comparison": "paired_comparison",
                "fine_tune_experiments": "fine_tune_experiments",
                "run_metadata": "run_metadata",
                "params": "params:reporting",
                **{name: name for name in figures},
            },
            outputs=["comparison_report", "comparison_report_html"],
            name="write_comparison_report",
        ),
    ]
    model_nodes = [node for model in MODELS for node in _model_nodes(model)]
    return Pipeline(model_nodes + comparison_nodes)
