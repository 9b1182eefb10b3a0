"""Shared fixtures: a throw-away copy of the project, and one full demo run for the whole session."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# With the `mlflow` extra every run is tracked (conf/base/mlflow.yml): into one throw-away store
# for the whole test session rather than a new mlflow.db in each test's project. The demo run
# has a store of its own (tests/test_tracking.py reads it).
os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tempfile.mkdtemp(prefix='cifar-kedro-mlflow-')}/mlflow.db")

from cifar_kedro.datasets import newest_version, versions  # noqa: E402,F401  (the tests import them from here)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATA_FOLDERS = ("01_raw", "02_intermediate", "03_primary", "04_feature", "05_model_input", "06_models",
                "07_model_output", "08_reporting")


def make_project(path: Path) -> Path:
    """A copy of the project's configuration in ``path`` with an empty data/ tree."""
    shutil.copy(PROJECT_ROOT / "pyproject.toml", path / "pyproject.toml")
    shutil.copytree(PROJECT_ROOT / "conf", path / "conf", ignore=shutil.ignore_patterns("local"))
    (path / "conf" / "local").mkdir()
    (path / "src").mkdir()  # the package itself is the installed one
    for folder in DATA_FOLDERS:
        (path / "data" / folder).mkdir(parents=True)
    return path


def run_session(project: Path, env: str, params: dict | None = None, **run_args) -> dict:
    """``kedro run --env ENV --params … …`` through a KedroSession, from inside ``project``.

    ``params`` is nested like the parameters files: ``{"transfer_training": {"head": {"epochs": 1}}}``.
    """
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project)
    cwd = os.getcwd()
    os.chdir(project)  # relative parameters (checkpoint_dir) resolve against the project, like the CLI
    try:
        with KedroSession.create(project_path=project, env=env, runtime_params=params) as session:
            return session.run(**run_args)
    finally:
        os.chdir(cwd)


def synthetic_splits(folder: Path, *, images_per_batch: int, seed: int, test_images: int = 10):
    """Training and validation splits (and class names) of a generated CIFAR-10 stand-in, made by
    the data_processing nodes as the pipeline makes them (80/20, split seed 0)."""
    from cifar_kedro.pipelines.data_processing import nodes
    from cifar_kedro.pipelines.data_processing.schema import DataProcessingParams
    from cifar_kedro.sources import cifar10, synthetic

    synthetic.write_synthetic_cifar10(folder, images_per_batch=images_per_batch, test_images=test_images, seed=seed)
    params = DataProcessingParams(validation_fraction=0.2, seed=0, sample_images_per_class=1)
    raw, _ = nodes.ingest_source({**cifar10.load(folder), "source": "synthetic"})
    pool, _, names = nodes.assemble_splits(raw, params)
    return (*nodes.split_train_validation(pool, names, params), names)


def tomllib():
    """The TOML reader: the standard library's from Python 3.11, ``tomli`` (the test extra) before."""
    try:
        import tomllib as reader
    except ModuleNotFoundError:  # Python 3.10
        import tomli as reader
    return reader


def stage(*, epochs: int = 1, batch_size: int = 32, optimizer: str = "sgd", learning_rate=0.0, **fields):
    """A ``schemas.Stage`` for the tests: ``optimizer`` by name (its options in ``optimizer_options``)."""
    from cifar_kedro.schemas import Optimizer, Stage

    options = fields.pop("optimizer_options", {})
    return Stage(epochs=epochs, batch_size=batch_size, optimizer=Optimizer(name=optimizer, learning_rate=learning_rate,
                                                                           **options), **fields)


def runtime(**fields):
    """``schemas.Runtime`` as conf/base sets it, with ``fields`` changed."""
    from cifar_kedro.schemas import Runtime

    return Runtime(**{"seed": 0, "precision": "float32", "distribution": "none", "jit_compile": "auto",
                      "deterministic_ops": False, **fields})


def deep_merge(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` applied key by key at every depth (as the `soft` merge of envs)."""
    return {key: deep_merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
            for key, value in {**base, **changes}.items()}


@pytest.fixture
def project(tmp_path) -> Path:
    return make_project(tmp_path)


@contextmanager
def environment(**variables: str):
    """Environment variables set for the duration of a block."""
    before = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def tracking_uri(project: Path) -> str:
    """The MLflow store of a project's own runs (the demo run's)."""
    return f"sqlite:///{project / 'mlflow.db'}"


@pytest.fixture(scope="session")
def demo_project(tmp_path_factory) -> Path:
    """The whole default pipeline run once with ``--env demo`` (about two minutes on 2 cores),
    tracked (with the `mlflow` extra) in the project's own MLflow store."""
    project = make_project(tmp_path_factory.mktemp("demo_project"))
    with environment(MLFLOW_TRACKING_URI=tracking_uri(project)):
        run_session(project, "demo")
    return project
