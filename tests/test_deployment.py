"""Deployment: `kedro package` builds a wheel and a configuration archive that run the pipelines
from another folder; `kedro airflow create` turns the project into an Airflow DAG of its pipelines."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT, versions

# `kedro package` (a wheel build) and `kedro` subprocesses from a copy of the project; the DAG
# template in this process, in the everyday suite: tests/test_airflow_dag.py.
pytestmark = pytest.mark.slow

ENV = {**os.environ, "DO_NOT_TRACK": "1", "KEDRO_DISABLE_TELEMETRY": "true"}


def kedro(*args: str, cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "kedro", *args], cwd=cwd, env=env or ENV, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def source_tree(path: Path) -> Path:
    """The project as a clone has it: sources, configuration, README and the build metadata."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT_ROOT / name, path / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "local")
    for name in ("src", "conf", "deploy"):
        shutil.copytree(PROJECT_ROOT / name, path / name, ignore=ignore)
    (path / "conf" / "local").mkdir()
    return path


def wheel_of_installed(name: str, folder: Path) -> Path:
    """A wheel of an installed pure-Python distribution, from its files: so that the isolated build
    `kedro package` starts (`python -m build`) finds its backend offline."""
    dist = importlib.metadata.distribution(name)
    wheel = folder / f"{dist.metadata['Name'].replace('-', '_')}-{dist.version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for file in dist.files:
            located = Path(file.locate())
            if ".." not in file.parts and "__pycache__" not in file.parts and located.is_file():
                archive.write(located, file.as_posix())
    return wheel


@pytest.fixture(scope="module")
def packaged(tmp_path_factory) -> Path:
    """`kedro package` on a copy of the project, offline: dist/ with the wheel and conf archive."""
    project = source_tree(tmp_path_factory.mktemp("project"))
    wheelhouse = tmp_path_factory.mktemp("wheelhouse")
    for backend in ("setuptools", "wheel"):
        wheel_of_installed(backend, wheelhouse)
    kedro("package", cwd=project, env={**ENV, "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse)})
    return project / "dist"


def test_kedro_package_builds_a_wheel_of_the_code_and_an_archive_of_the_configuration(packaged):
    (wheel,) = packaged.glob("cifar_kedro-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"cifar_kedro/settings.py", "cifar_kedro/pipelines/reporting/pipeline.py"} <= set(names)
    assert not [n for n in names if n.startswith(("conf/", "data/", "tests/"))]
    configuration = tarfile.open(packaged / "conf-cifar_kedro.tar.gz").getnames()
    assert {"conf/base/catalog.yml", "conf/demo/catalog.yml", "conf/base/mlflow.yml"} <= set(configuration)
    assert not [n for n in configuration if n.startswith("conf/local/") and n.endswith(".yml")]


def test_the_packaged_project_runs_its_pipelines_from_another_folder(packaged, tmp_path):
    (wheel,) = packaged.glob("cifar_kedro-*.whl")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(site),
                    str(wheel)], check=True, capture_output=True, env=ENV, timeout=300)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**ENV, "PYTHONPATH": str(site)}  # the wheel's code, not this checkout's
    where = subprocess.run([sys.executable, "-c", "import cifar_kedro; print(cifar_kedro.__file__)"], cwd=elsewhere,
                           env=env, capture_output=True, text=True, check=True)
    assert where.stdout.strip().startswith(str(site))

    result = subprocess.run(
        [sys.executable, "-m", "cifar_kedro", "--conf-source", str(packaged / "conf-cifar_kedro.tar.gz"),
         "--env", "demo", "--pipelines", "data_processing"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for split in ("train", "validation", "test"):
        assert len(versions(elsewhere, f"data/05_model_input/{split}_split.npz")) == 1


def test_kedro_airflow_makes_a_dag_of_the_pipelines(tmp_path):
    pytest.importorskip("kedro_airflow")
    project = source_tree(tmp_path)
    kedro("airflow", "create", "--env", "demo", "--jinja-file", "deploy/airflow_dag.j2", "--target-dir", "dags",
          cwd=project)
    (dag,) = (project / "dags").glob("*.py")
    tree = ast.parse(dag.read_text())  # valid Python (Airflow itself is not installed here)
    tasks = {node.args[0].value: node for node in ast.walk(tree) if isinstance(node, ast.Call)
             and getattr(node.func, "id", None) == "_run_pipeline"}
    assert set(tasks) == {"data_processing", "transfer_training", "cnn_training", "reporting"}
    text = dag.read_text()
    # Each pipeline is one task (one Kedro session: one version for all its outputs); the
    # trainings wait for the data and run side by side; the report waits for both.
    assert 'tasks["data_processing"] >> tasks["transfer_training"]' in text
    assert 'tasks["data_processing"] >> tasks["cnn_training"]' in text
    assert 'tasks["transfer_training"] >> tasks["reporting"]' in text
    assert 'tasks["cnn_training"] >> tasks["reporting"]' in text
    assert 'env = "demo"' in text
