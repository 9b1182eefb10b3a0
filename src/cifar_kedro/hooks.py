"""Project hooks."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)

# Final model dataset -> the training pipeline whose resume checkpoints it makes obsolete.
FINAL_MODELS = {"transfer_model": "transfer_training", "cnn_model": "cnn_training"}


class TrainingCheckpointHooks:
    """Delete a training pipeline's resume checkpoints once its final model is saved.

    Training writes a checkpoint after every epoch (and keeps finished stages) under the
    pipeline's ``checkpoint_dir`` parameter, so a killed run picks up where it stopped. Once the
    catalog has written the final model version, those checkpoints are spent: the next run
    trains afresh instead of resuming a finished run.
    """

    def __init__(self) -> None:
        self._params: dict[str, Any] = {}

    @hook_impl
    def after_context_created(self, context) -> None:
        self._params = context.params

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node) -> None:
        pipeline = FINAL_MODELS.get(dataset_name)
        checkpoint_dir = (self._params.get(pipeline) or {}).get("checkpoint_dir") if pipeline else None
        if checkpoint_dir and Path(checkpoint_dir).exists():
            shutil.rmtree(checkpoint_dir)
            logger.info("Removed the resume checkpoints in %s: '%s' is saved.", checkpoint_dir, dataset_name)
