"""cnn_training: wiring only."""

from kedro.pipeline import Node, Pipeline

from .nodes import build_model, input_statistics, train_model, validation_metrics


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                input_statistics,
                ["train_split", "params:cnn_training"],
                "cnn_input_statistics",
                name="compute_cnn_input_statistics",
            ),
            Node(
                build_model,
                ["class_names", "cnn_input_statistics", "params:cnn_training", "params:runtime"],
                "cnn_untrained",
                name="build_cnn_model",
            ),
            Node(
                train_model,
                ["cnn_untrained", "train_split", "validation_split", "class_names", "params:cnn_training",
                 "params:runtime"],
                ["cnn_model", "cnn_history"],
                name="train_cnn_model",
            ),
            Node(
                validation_metrics,
                ["cnn_model", "validation_split", "params:cnn_training.eval_batch_size"],
                "cnn_validation_metrics",
                name="evaluate_cnn_model",
            ),
        ]
    )
