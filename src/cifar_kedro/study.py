"""The study's models, in one place: each model's name → the pipeline that trains it.

A model ``<name>`` is the catalog's ``<name>_model`` (with ``<name>_history``, ``<name>_…``). The
reporting and predict pipelines, the ``predict`` command, experiment tracking and the checkpoint
clean-up all derive their lists from here: a third model is one entry, plus its pipeline.
"""

from __future__ import annotations

TRAINED_BY = {"transfer": "transfer_training", "cnn": "cnn_training"}
MODELS = tuple(TRAINED_BY)


def model_dataset(model: str) -> str:
    """The catalog entry of ``model``'s delivered Keras model."""
    return f"{model}_model"


# Delivered model dataset → the training pipeline that saved it.
FINAL_MODELS = {model_dataset(model): pipeline for model, pipeline in TRAINED_BY.items()}
