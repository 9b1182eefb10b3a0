"""The ``predict`` pipeline: a versioned model asked about new images, files or folders."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
