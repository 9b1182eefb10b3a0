"""Every CNN block through the cnn_training nodes, at a tiny width, with the ``gpu`` env's settings.

Run as ``KERAS_BACKEND=<backend> python -m tests.block_check FOLDER``: the backend and the global
dtype policy are process-wide, so ``tests/test_blocks.py`` runs this in a fresh process per backend.
Prints one JSON line per block: the loss of each epoch and the delivered model's validation accuracy.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import keras
from cifar_kedro import runtime
from cifar_kedro.pipelines.cnn_training import nodes
from cifar_kedro.pipelines.cnn_training.schema import CNNTrainingParams
from cifar_kedro.schemas import Runtime
from tests.conftest import PROJECT_ROOT, deep_merge, synthetic_splits

EPOCHS = 3
# Each block at a tiny width; everything else as the `gpu` env has it (jit_compile, mixed precision,
# per-variable learning rates, Lookahead, test-time augmentation).
TINY = {
    # At batch 64 the SGD rates are the reference's per-image rates × 64 (106 × 64 / 2000).
    "airbench94_muon": {"network": {"widths": [16, 32, 32]}, "optimizer": {"learning_rate": {"knots": [[0, 3.39], [1, 0.0]]}}},
    "airbench94": {"network": {"widths": [16, 32, 32]}},
    "airbench96": {"network": {"widths": [16, 32, 32]}, "optimizer": {"trains_for_epochs": {"whiten/bias": 1}}},
    "resnet9": {"network": {"width": 0.125}},
    "seed_cnn": {"network": {"filters": [8, 16, 32], "dense_units": 32}},
}
COMMON = {"epochs": EPOCHS, "batch_size": 64}


def gpu_env_parameters() -> dict:
    """The parameters as ``kedro run --env gpu`` resolves them (base, then the gpu env on top)."""
    from kedro.config import OmegaConfigLoader

    from cifar_kedro.settings import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), **CONFIG_LOADER_ARGS | {"default_run_env": "gpu"})
    return loader["parameters"]


def check(architecture: str, splits, settings: Runtime) -> dict:
    train, validation, names = splits
    raw = gpu_env_parameters()["cnn_training"]
    raw = raw | {"architecture": architecture, "checkpoint_dir": None,
                 architecture: deep_merge(raw[architecture], COMMON | TINY[architecture])}
    params = CNNTrainingParams.model_validate(raw)
    model = nodes.build_model(names, nodes.input_statistics(train, params), params, settings)
    delivered, history = nodes.train_model(model, train, validation, names, params, settings)
    return {
        "architecture": architecture,
        "backend": keras.backend.backend(),
        "policy": keras.mixed_precision.global_policy().name,
        "jit_compile": settings.jit_compile,
        "losses": [r["loss"] for r in history["epochs"]],
        "val_accuracy": nodes.validation_metrics(delivered, validation, 256)["val_accuracy"],
        "delivered": delivered.name,
    }


def main(folder: str) -> None:
    splits = synthetic_splits(Path(folder), images_per_batch=128, seed=11)
    settings = Runtime.model_validate(gpu_env_parameters()["runtime"])
    runtime.apply(settings)  # as RuntimeHooks does before a run
    for architecture in TINY:
        print(json.dumps(check(architecture, splits, settings)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
