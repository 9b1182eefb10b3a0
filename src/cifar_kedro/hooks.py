"""Project hooks."""

from __future__ import annotations

import ctypes
import gc
import logging
import shutil
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from cifar_kedro import parameters, runtime
from cifar_kedro.schemas import Runtime
from cifar_kedro.study import FINAL_MODELS

logger = logging.getLogger(__name__)


class ParameterCheckHooks:
    """Check every parameter against the pipelines' schemas as soon as the context exists.

    A misspelt, misplaced, mistyped or out-of-range parameter stops the run here — before any
    data is read or any model built — with the key, where it was set and what is allowed.
    """

    @hook_impl
    def after_context_created(self, context) -> None:
        from kedro.framework.project import pipelines

        loader = context.config_loader
        envs = [loader.base_env, loader.env or loader.default_run_env]
        sources = parameters.parameter_sources(loader.conf_source, [e for e in envs if e], loader.runtime_params,
                                               loader.config_patterns["parameters"])
        parameters.raise_if_invalid(loader["parameters"], parameters.schemas(pipelines), sources,
                                    known=parameters.known_blocks())


class RuntimeHooks:
    """Set the run-wide state from the ``runtime`` parameters once, before any node runs
    (``cifar_kedro.runtime.apply``): every pipeline then builds and trains under the same dtype
    policy and distribution, whichever runs first."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        settings = catalog.load("params:runtime")
        settings = settings if isinstance(settings, Runtime) else Runtime.model_validate(settings)
        runtime.apply(settings)
        logger.info("Runtime: seed %d, precision %s, distribution %s, jit_compile %s, deterministic ops %s.",
                    settings.seed, settings.precision, settings.distribution, settings.jit_compile,
                    settings.deterministic_ops)


class TrainingCheckpointHooks:
    """Delete a training pipeline's resume checkpoints once its final model is saved.

    Training writes a checkpoint after every epoch (and keeps finished stages) under the
    pipeline's ``checkpoint_dir`` parameter, so a killed run picks up where it stopped. Once the
    catalog has written the final model version, those checkpoints are spent: the next run
    trains afresh instead of resuming a finished run.
    """

    def __init__(self) -> None:
        self._context = None

    @hook_impl
    def after_context_created(self, context) -> None:
        self._context = context

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node) -> None:
        pipeline = FINAL_MODELS.get(dataset_name)
        if pipeline is None or self._context is None:
            return
        checkpoint_dir = getattr(self._context.params.get(pipeline), "checkpoint_dir", None)
        if checkpoint_dir and Path(checkpoint_dir).exists():
            shutil.rmtree(checkpoint_dir)
            logger.info("Removed the resume checkpoints in %s: '%s' is saved.", checkpoint_dir, dataset_name)


class ReleaseMemoryHooks:
    """Hand memory that a finished node freed back to the system before the next node runs.

    A training node frees its arrays and tensors, but the C allocator keeps most of the freed
    memory for reuse, so the next node's peak adds to the last one's: the cached activations of
    transfer training plus airbench94_muon's activations came to more than either alone. Collecting
    Python's garbage and ``malloc_trim`` (glibc; nothing elsewhere) after each node returns it.
    """

    def __init__(self) -> None:
        self._trim = _malloc_trim()

    @hook_impl
    def after_node_run(self, node, catalog, inputs, outputs) -> None:
        gc.collect()
        if self._trim is not None:
            self._trim(0)


def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, Windows, musl)."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return None
