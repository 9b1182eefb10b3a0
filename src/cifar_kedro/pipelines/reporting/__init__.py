"""The ``reporting`` pipeline: every number, plot and the comparison report, from the versioned
models, histories and test split."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
