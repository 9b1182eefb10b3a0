"""data_processing: wiring only."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    assemble_splits,
    build_data_manifest,
    build_data_report,
    ingest_source,
    plot_sample_images,
    split_train_validation,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(ingest_source, "raw_source", ["raw_batches", "raw_source_info"], name="ingest_source"),
            Node(
                assemble_splits,
                ["raw_batches", "params:data_processing"],
                ["training_pool", "test_split", "class_names"],
                name="assemble_splits",
            ),
            Node(
                split_train_validation,
                ["training_pool", "class_names", "params:data_processing"],
                ["train_split", "validation_split"],
                name="split_train_validation",
            ),
            Node(
                build_data_manifest,
                ["raw_source_info", "train_split", "validation_split", "test_split", "class_names",
                 "stored_versions"],
                "data_manifest",
                name="build_data_manifest",
            ),
            Node(
                build_data_report,
                ["raw_source_info", "train_split", "validation_split", "test_split", "class_names"],
                "data_report",
                name="build_data_report",
            ),
            Node(
                plot_sample_images,
                ["train_split", "class_names", "params:data_processing"],
                "sample_images",
                name="plot_sample_images",
            ),
        ]
    )
