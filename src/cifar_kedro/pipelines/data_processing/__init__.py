"""data_processing: the official CIFAR-10 batches in, validated, versioned splits out."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
