"""Experiment tracking with MLflow through kedro-mlflow — optional (``pip install -e ".[mlflow]"``).

kedro-mlflow makes each ``kedro run`` an MLflow run and logs the nodes' parameters; its
configuration is ``conf/base/mlflow.yml``. This module adds what the plugin leaves to the catalog,
read from the datasets the run saves, so that no node and no catalog entry knows about MLflow:

* the training histories become per-epoch metrics (``transfer/val_accuracy`` at step = epoch,
  one series per model across its stages; ``transfer/<experiment>/…`` for every fine-tuning
  experiment);
* validation and test metrics become single metrics (``cnn/test/accuracy``, ``cnn/validation/loss``);
* every file the run writes in the ``reporting`` and ``model_output`` layers (the comparison report,
  plots, tables, histories) is logged as an artifact under its layer's name, as the bytes Kedro saved;
* each delivered model is logged as an MLflow model (``models:/…``, Keras flavour, loadable with
  ``mlflow.keras.load_model``).

Without kedro-mlflow installed ``hooks()`` is empty and runs are exactly as before.
"""

from __future__ import annotations

import math
import re
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.framework.hooks import hook_impl
from pydantic import BaseModel

from cifar_kedro.datasets import filesystem
from cifar_kedro.study import FINAL_MODELS


try:  # the optional extra
    import mlflow
    from kedro_mlflow.framework.hooks import MlflowHook as _PluginHook
    from mlflow.entities import RunStatus
except ImportError:  # pragma: no cover - exercised by the test that hides the extra
    mlflow = _PluginHook = None

HISTORY = re.compile(r"^(?P<model>\w+)_history$")
SCALARS = re.compile(r"^(?P<model>\w+)_(?P<split>validation|test)_metrics$")
ARTIFACT_LAYERS = ("model_output", "reporting")
EPOCH_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "images_per_second", "seconds")
MODEL_REQUIREMENTS = ("keras", "numpy")


def hooks() -> tuple:
    """The project's tracking hooks: kedro-mlflow's (registered here, see ``settings.py``) and
    ``RunArtifacts``; none without the extra."""
    if _PluginHook is None:
        return ()
    return (MlflowParamsHook(), RunArtifacts())


if _PluginHook is not None:

    class MlflowParamsHook(_PluginHook):
        """kedro-mlflow's hook, fed plain dicts: Kedro's parameter validation hands the nodes
        Pydantic objects, which the plugin would log as one long string instead of flattening.

        It also closes, as killed, a run it started that no hook closed — a pipeline interrupted
        by Ctrl-C reaches no ``on_pipeline_error`` — so that the next session in the same process
        (a notebook, a test) gets a run of its own instead of logging into the stale one.
        """

        @hook_impl
        def after_context_created(self, context):
            while (active := mlflow.active_run()) is not None and active.info.run_id == self.run_id:
                mlflow.end_run(RunStatus.to_string(RunStatus.KILLED))
            super().after_context_created(context)

        @hook_impl
        def before_node_run(self, node, catalog, inputs, is_async):
            plain = {k: v.model_dump(mode="json") if isinstance(v, BaseModel) else v for k, v in inputs.items()}
            super().before_node_run(node=node, catalog=catalog, inputs=plain, is_async=is_async)


class RunArtifacts:
    """Logs metrics, artifacts and models into the active MLflow run as the catalog saves them."""

    def __init__(self) -> None:
        self._catalog = None
        self._save_version: str | None = None

    @hook_impl
    def after_catalog_created(self, catalog, save_version) -> None:
        self._catalog, self._save_version = catalog, save_version

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node) -> None:
        if self._catalog is None or mlflow.active_run() is None:
            return  # tracking is off for this pipeline (mlflow.yml: disable_tracking)
        config = self._catalog.config_resolver.resolve_pattern(dataset_name)
        if not config.get("filepath"):
            return  # in memory: not an output of the run
        if match := HISTORY.match(dataset_name):
            log_history(match["model"], data)
        elif match := SCALARS.match(dataset_name):
            log_scalars(f"{match['model']}/{match['split']}", data)
        if dataset_name in FINAL_MODELS:
            log_model(dataset_name, data)
        else:
            self._log_file(config)

    def _log_file(self, config: dict[str, Any]) -> None:
        """The file a dataset of an artifact layer just wrote (this run's version of it)."""
        layer = (config.get("metadata") or {}).get("kedro-viz", {}).get("layer")
        if layer not in ARTIFACT_LAYERS:
            return
        path = config["filepath"]
        if config.get("versioned"):
            path = f"{path}/{self._save_version}/{PurePosixPath(path).name}"
        _, fs_path, fs = filesystem(path, config.get("credentials"), config.get("fs_args"))
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / PurePosixPath(fs_path).name
            fs.get(fs_path, str(local))
            mlflow.log_artifact(str(local), artifact_path=layer)


def log_model(name: str, model) -> None:
    """A delivered Keras model as an MLflow model, with the requirements it needs named (so
    MLflow does not load it in a new process to infer them)."""
    from importlib.metadata import version

    requirements = [f"{package}=={version(package)}" for package in MODEL_REQUIREMENTS]
    mlflow.keras.log_model(model, name=name, pip_requirements=requirements)


def log_history(model: str, history: dict[str, Any]) -> None:
    """A history's epochs as ``<model>/<key>`` at step = epoch, and each fine-tuning experiment's
    own epochs as ``<model>/<experiment>/<key>``."""
    series = [(model, history.get("epochs", []))]
    series += [(f"{model}/{experiment['name']}", experiment["epochs"]) for experiment in history.get("experiments", [])]
    for prefix, epochs in series:
        for number, record in enumerate(epochs, start=1):
            values = {f"{prefix}/{key}": float(record[key]) for key in EPOCH_KEYS if _finite(record.get(key))}
            mlflow.log_metrics(values, step=int(record.get("epoch", number)))
    log_scalars(model, {"train_seconds": history.get("train_seconds"), "params_total": history.get("params_total")})


def log_scalars(prefix: str, metrics: dict[str, Any]) -> None:
    """The numbers of a flat metrics dict as ``<prefix>/<key>`` (a ``val_`` or ``test_`` on the key
    dropped: the prefix says it)."""
    values = {f"{prefix}/{re.sub('^(val|test)_', '', key)}": float(value) for key, value in metrics.items()
              if _finite(value)}
    if values:
        mlflow.log_metrics(values)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
