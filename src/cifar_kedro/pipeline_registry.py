"""Project pipelines."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    Returns:
        A mapping from pipeline names to ``Pipeline`` objects.
    """
    pipelines = find_pipelines(raise_errors=True)
    # The study: everything but `predict`, which asks a trained model about new images on demand.
    pipelines["__default__"] = sum(pipeline for name, pipeline in pipelines.items() if name != "predict")
    return pipelines
