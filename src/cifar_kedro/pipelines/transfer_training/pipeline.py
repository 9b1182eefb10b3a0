"""transfer_training: wiring only."""

from kedro.pipeline import Node, Pipeline

from .nodes import build_model, fine_tune, train_head, validation_metrics


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                build_model,
                ["train_split", "class_names", "params:transfer_training", "params:runtime"],
                "transfer_untrained",
                name="build_transfer_model",
            ),
            Node(
                train_head,
                ["transfer_untrained", "train_split", "validation_split", "params:transfer_training", "params:runtime"],
                ["transfer_head_model", "transfer_head_history"],
                name="train_transfer_head",
            ),
            Node(
                fine_tune,
                [
                    "transfer_head_model",
                    "transfer_head_history",
                    "train_split",
                    "validation_split",
                    "class_names",
                    "params:transfer_training",
                    "params:runtime",
                ],
                ["transfer_model", "transfer_history"],
                name="fine_tune_transfer_model",
            ),
            Node(
                validation_metrics,
                ["transfer_model", "validation_split", "params:transfer_training.eval_batch_size"],
                "transfer_validation_metrics",
                name="evaluate_transfer_model",
            ),
        ]
    )
