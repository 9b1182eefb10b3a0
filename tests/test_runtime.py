"""Run-wide state is set once, before the run; each stage draws its randomness from its own seed,
so a pipeline trains the same whether it runs alone or inside the full run."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from cifar_kedro import runtime
from cifar_kedro.pipelines.cnn_training import create_pipeline as cnn_pipeline
from cifar_kedro.pipelines.cnn_training.schema import CNNTrainingParams
from cifar_kedro.pipelines.transfer_training import create_pipeline as transfer_pipeline
from cifar_kedro.pipelines.transfer_training.schema import TransferTrainingParams
from tests.conftest import PROJECT_ROOT, deep_merge, runtime as make_runtime, synthetic_splits


def base(name: str) -> dict:
    return yaml.safe_load((PROJECT_ROOT / f"conf/base/parameters_{name}.yml").read_text())[name]


# Both trainings at a tiny size: what matters is which random numbers each stage draws.
CNN = CNNTrainingParams.model_validate(deep_merge(base("cnn_training"), {
    "architecture": "seed_cnn", "checkpoint_dir": None, "batchnorm_calibration_images": 64,
    "seed_cnn": {"epochs": 1, "batch_size": 32, "network": {"filters": [8, 8, 8], "dense_units": 16}},
}))
TRANSFER = TransferTrainingParams.model_validate(deep_merge(base("transfer_training"), {
    "image_size": 32, "alpha": 0.35, "weights": "none", "checkpoint_dir": None, "cached_views": ["original", "augmented"],
    "head": {"epochs": 1, "batch_size": 32}, "fine_tune": {"epochs": 1, "batch_size": 32},
}))


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    train, validation, names = synthetic_splits(tmp_path_factory.mktemp("runtime") / "batches",
                                                images_per_batch=40, seed=2)
    return train, validation, names


def first_epoch_loss(pipeline, splits, settings) -> float:
    train, validation, names = splits
    runtime.apply(settings)  # what RuntimeHooks does before every run
    catalog = DataCatalog({
        "train_split": MemoryDataset(train), "validation_split": MemoryDataset(validation),
        "class_names": MemoryDataset(names), "params:cnn_training": MemoryDataset(CNN),
        "params:cnn_training.eval_batch_size": MemoryDataset(CNN.eval_batch_size),
        "params:transfer_training": MemoryDataset(TRANSFER),
        "params:transfer_training.eval_batch_size": MemoryDataset(TRANSFER.eval_batch_size),
        "params:runtime": MemoryDataset(settings), "cnn_history": MemoryDataset(),
        # Models pass between nodes as themselves, as conf/base/catalog.yml has them.
        **{name: MemoryDataset(copy_mode="assign") for name in
           ("cnn_untrained", "cnn_model", "transfer_untrained", "transfer_head_model", "transfer_model")},
    })
    SequentialRunner().run(pipeline, catalog)
    return catalog["cnn_history"].load()["epochs"][0]["loss"]


def test_a_pipeline_alone_trains_as_it_does_inside_the_full_run(splits):
    """In the full run the transfer model's stages run between the CNN's build and its training
    (Kedro orders the nodes so); they draw random numbers and build layers of their own."""
    settings = make_runtime(seed=42)
    full = transfer_pipeline() + cnn_pipeline()
    assert [n.name for n in full.nodes].index("train_transfer_head") < [n.name for n in full.nodes].index("train_cnn_model")
    alone = first_epoch_loss(cnn_pipeline(), splits, settings)
    together = first_epoch_loss(full, splits, settings)
    assert together == alone
    # …and the loss does depend on the seed, so the equality is not vacuous.
    assert first_epoch_loss(cnn_pipeline(), splits, make_runtime(seed=7)) != alone


def test_stage_seeds_are_stable_and_distinct():
    assert runtime.stage_seed(42, "cnn_training/train") == runtime.stage_seed(42, "cnn_training/train")
    seeds = {runtime.stage_seed(seed, name) for seed in (0, 1, 42)
             for name in ("cnn_training/build", "cnn_training/train", "transfer_training/head")}
    assert len(seeds) == 9
    runtime.seed_stage(42, "a")
    first = keras.random.uniform((4,)), np.random.random(4)
    runtime.seed_stage(42, "a")
    second = keras.random.uniform((4,)), np.random.random(4)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(first[0]), keras.ops.convert_to_numpy(second[0]))
    np.testing.assert_array_equal(first[1], second[1])


def test_apply_sets_the_dtype_policy_for_every_layer_built_after_it():
    try:
        runtime.apply(make_runtime(precision="mixed_bfloat16"))
        layer = keras.layers.Dense(2)
        assert (layer.compute_dtype, layer.variable_dtype) == ("bfloat16", "float32")
    finally:
        runtime.apply(make_runtime())
    assert keras.layers.Dense(2).compute_dtype == "float32"
