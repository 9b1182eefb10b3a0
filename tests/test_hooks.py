"""The project's hooks on their own, with a stand-in for the Kedro context: the run-wide state set
from the ``runtime`` parameters, and resume checkpoints cleared once a model is saved. (The
parameter check is tests/test_parameters.py; a whole run with them, tests/test_demo_run.py.)"""

from __future__ import annotations

import logging
import os
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from PIL import Image

from cifar_kedro import hooks
from cifar_kedro.hooks import TrainingCheckpointHooks
from cifar_kedro.runtime import apply
from cifar_kedro.settings import HOOKS
from tests.conftest import run_session, runtime


def context(**params):
    return SimpleNamespace(params=params)


def checkpoints(tmp_path, *pipelines):
    folders = {}
    for pipeline in pipelines:
        folders[pipeline] = tmp_path / "checkpoints" / pipeline
        (folders[pipeline] / f"{pipeline}-head-0123").mkdir(parents=True)
        (folders[pipeline] / f"{pipeline}-head-0123" / "done.json").write_text("[]")
    return folders


def test_a_pipelines_checkpoints_go_once_its_final_model_is_saved_and_not_before(tmp_path):
    folders = checkpoints(tmp_path, "cnn_training", "transfer_training")
    hooks = TrainingCheckpointHooks()
    hooks.after_context_created(context(
        cnn_training=SimpleNamespace(checkpoint_dir=str(folders["cnn_training"])),
        transfer_training=SimpleNamespace(checkpoint_dir=str(folders["transfer_training"]))))
    for name in ("cnn_history", "cnn_validation_metrics", "transfer_head_model", "transfer_history"):
        hooks.after_dataset_saved(dataset_name=name, data=None, node=None)
    assert folders["cnn_training"].exists() and folders["transfer_training"].exists()  # the run may still fail
    hooks.after_dataset_saved(dataset_name="cnn_model", data=None, node=None)
    assert not folders["cnn_training"].exists() and folders["transfer_training"].exists()  # only its own
    hooks.after_dataset_saved(dataset_name="transfer_model", data=None, node=None)
    assert not folders["transfer_training"].exists()
    hooks.after_dataset_saved(dataset_name="transfer_model", data=None, node=None)  # already gone: fine


def test_no_checkpoint_dir_or_no_context_leaves_everything(tmp_path):
    folders = checkpoints(tmp_path, "cnn_training")
    TrainingCheckpointHooks().after_dataset_saved(dataset_name="cnn_model", data=None, node=None)
    hooks = TrainingCheckpointHooks()
    hooks.after_context_created(context(cnn_training=SimpleNamespace(checkpoint_dir=None)))
    hooks.after_dataset_saved(dataset_name="cnn_model", data=None, node=None)
    assert folders["cnn_training"].exists()


def test_the_runtime_block_is_applied_before_the_pipeline_runs(project, caplog):
    """Through a real session (``--params runtime.…``), whatever the pipeline: here data_processing
    on a tiny image folder, which builds no model, still leaves the run-wide state set."""
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (project / "data/01_raw/images" / name).mkdir(parents=True)
        for index in range(10):
            Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(
                project / "data/01_raw/images" / name / f"{index}.png")
    try:
        with caplog.at_level(logging.INFO, logger="cifar_kedro.hooks"):
            run_session(project, "images", {"runtime": {"seed": 3, "precision": "mixed_bfloat16"}},
                        pipeline_names=["data_processing"])
        layer = keras.layers.Dense(2)  # built after the run: under the policy the hook set
        assert (layer.compute_dtype, layer.variable_dtype) == ("bfloat16", "float32")
        assert "Runtime: seed 3, precision mixed_bfloat16, distribution none" in caplog.text
    finally:
        apply(runtime())
    assert keras.layers.Dense(2).compute_dtype == "float32"


def test_settings_register_the_checks_before_the_trackers():
    """pluggy calls the last registered first: the parameter check must come after tracking in
    HOOKS so that a bad parameter stops the run before MLflow starts one."""
    names = [type(hook).__name__ for hook in HOOKS]
    assert names[-4:] == ["ParameterCheckHooks", "RuntimeHooks", "TrainingCheckpointHooks", "ReleaseMemoryHooks"]
    assert set(names[:-4]) <= {"MlflowParamsHook", "RunArtifacts"}


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(hooks._malloc_trim() is None or not os.path.exists("/proc/self/statm"),
                    reason="glibc's malloc_trim and /proc are Linux's")
def test_after_each_node_freed_memory_goes_back_to_the_system():
    """Small blocks freed between survivors stay with the allocator (free() cannot give back the
    middle of the heap); the hook hands them back."""
    blocks = [np.ones(8_000, dtype="float64") for _ in range(8_000)]  # 64 KB each: the heap, not mmap
    survivors = blocks[::10]
    del blocks
    before = _resident_bytes()
    hooks.ReleaseMemoryHooks().after_node_run(node=None, catalog=None, inputs={}, outputs={})
    released = before - _resident_bytes()
    assert released > 200_000_000, f"{released / 1e6:.0f} MB given back of about 460 MB freed"
    assert len(survivors) == 800
