"""The Kedro project as a whole: registry, configuration, catalog layers."""

from __future__ import annotations

import pytest
from kedro.framework.project import pipelines
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from tests.conftest import PROJECT_ROOT

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
    # Joined through the catalog: the only free inputs of the whole study are the raw batches and parameters.
    assert {name for name in default.inputs() if not name.startswith("params:")} == {"raw_source"}
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
    assert params["transfer_training"].head_learning_rate == pytest.approx(1e-2)  # from conf/demo
    assert params["transfer_training"].batch_size == 128  # from conf/base, kept by the soft merge
    assert params["cnn_training"].resnet9.network.width == 0.25
    assert params["cnn_training"].resnet9.network.bn_momentum == 0.9  # from conf/base
