"""cnn_training: a CNN from scratch — the study's network, or ResNet-9 on a 94% recipe."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
