"""cnn_training: a CNN from scratch — input statistics → build → train → validation metrics.

``cnn_training.architecture`` picks the network and its own recipe: ``resnet9`` (the default),
``airbench94``, ``airbench96`` (the ``gpu`` env) or ``seed_cnn``, the study's network (the ``cpu`` env).
"""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
