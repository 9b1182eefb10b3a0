"""The Kedro project as a whole: registry, configuration, catalog layers."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys

import pytest
from kedro.framework.project import pipelines
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from tests.conftest import PROJECT_ROOT, tomllib

LAYERS = ["raw", "intermediate", "primary", "model_input", "models", "model_output", "reporting"]
PIPELINES = {"data_processing", "transfer_training", "cnn_training", "reporting"}  # the study (__default__)


@pytest.fixture(scope="module")
def context():
    bootstrap_project(PROJECT_ROOT)
    with KedroSession.create(project_path=PROJECT_ROOT, env="demo") as session:
        yield session.load_context()


def test_registry_has_the_four_pipelines_and_a_default_joining_them(context):
    assert set(pipelines) == PIPELINES | {"predict", "__default__"}
    default = pipelines["__default__"]
    assert len(default.nodes) == sum(len(pipelines[name].nodes) for name in PIPELINES)
    # Joined through the catalog: the only free inputs of the whole study are the raw batches and
    # parameters, and stored_versions: a read-only view of how the run's own raw batches and splits
    # were stored, for the data manifest (datasets.StoredVersionsDataset).
    assert {name for name in default.inputs() if not name.startswith("params:")} == {"raw_source", "stored_versions"}
    assert all(node.name for node in default.nodes)


def test_every_dataset_has_a_layer_and_data_flows_forward_through_layers(context):
    catalog = context.catalog
    default = pipelines["__default__"]

    def layer(name):
        metadata = catalog.get(name).metadata or {}
        return metadata.get("kedro-viz", {}).get("layer")

    datasets = [name for name in default.datasets() if not name.startswith("params:")]
    assert [name for name in datasets if layer(name) not in LAYERS] == []
    backwards = [
        (node.name, source, target)
        for node in default.nodes
        for source in node.inputs if not source.startswith("params:")
        for target in node.outputs
        if LAYERS.index(layer(source)) > LAYERS.index(layer(target))
    ]
    assert backwards == []


def test_environments_override_single_keys(context):
    params = context.params  # validated: each pipeline's block is its typed schema
    assert params["transfer_training"].image_size == 32  # from conf/demo
    assert params["transfer_training"].head.optimizer.learning_rate == pytest.approx(1e-2)  # from conf/demo
    assert params["transfer_training"].head.optimizer.name == "adam"  # from conf/base, kept by the soft merge
    assert params["transfer_training"].head.batch_size == 128
    assert params["cnn_training"].airbench94_muon.network.widths == [32, 64, 64]
    assert params["cnn_training"].airbench94_muon.network.bn_momentum == 0.6  # from conf/base


# Imported only inside a function, as what happens to be installed: the Keras backends other than
# the declared TensorFlow (a run records the versions of those present).
OPTIONAL_BACKENDS = {"jax", "torch"}


def _imports(tree: ast.Module) -> tuple[set[str], set[str]]:
    """The top-level package names ``tree`` imports unconditionally when loaded, and those it
    imports only inside a function or a ``try`` (optional: the code says what to install)."""
    always, deferred = set(), set()

    def visit(node: ast.AST, is_deferred: bool) -> None:
        for child in ast.iter_child_nodes(node):
            names = []
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom) and child.level == 0:
                names = [child.module]
            (deferred if is_deferred else always).update(name.split(".")[0] for name in names)
            visit(child, is_deferred or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Try))

    visit(tree, False)
    return always, deferred


def _normalized(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.-]+", requirement).group()).lower()


def test_every_package_the_source_imports_is_declared():
    """A worker installed with `pip install cifar-kedro` alone must import the package: what
    ``src/`` imports is declared, not left to arrive through kedro-viz or another dependency."""
    project = tomllib().loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    required = {_normalized(r) for r in project["dependencies"]}
    extras = {_normalized(r) for group in project["optional-dependencies"].values() for r in group}
    distributions = importlib.metadata.packages_distributions()
    local = {"cifar_kedro", *sys.stdlib_module_names}
    always, deferred = set(), set()
    for path in (PROJECT_ROOT / "src").rglob("*.py"):
        imported, optional = _imports(ast.parse(path.read_text(), filename=str(path)))
        always |= imported - local
        deferred |= optional - local

    def declared(package: str, allowed: set[str]) -> bool:
        return any(_normalized(d) in allowed for d in distributions.get(package, [package]))

    assert {"keras", "kedro", "pydantic"} <= always and {"PIL", "mlflow"} <= deferred  # the scan sees them
    assert sorted(p for p in always if not declared(p, required)) == []
    assert sorted(p for p in deferred - OPTIONAL_BACKENDS if not declared(p, required | extras)) == []
