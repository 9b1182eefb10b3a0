"""cnn_training: a CNN from scratch — input statistics → build → train → validation metrics.

``cnn_training.architecture`` picks the network and its own recipe: ``airbench94_muon`` (the
default, and the ``cpu`` env's), ``airbench94``, ``airbench96`` (the ``gpu`` env), ``resnet9`` or
``seed_cnn``, the study's network.
"""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
