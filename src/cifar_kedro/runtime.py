"""Run-wide state: set once per run, before any node, from the ``runtime`` parameters.

``hooks.RuntimeHooks`` calls ``apply`` before the pipeline runs: the Keras dtype policy, the
device distribution and (on TensorFlow) deterministic kernels are then the same for every node,
whichever pipeline runs first. Randomness is per stage instead: each stage (a model's build, each
training stage) calls ``seed_stage`` with its own name, so what it draws does not depend on what
ran before it — ``kedro run --pipelines cnn_training`` trains the same network as ``kedro run``.
"""

from __future__ import annotations

import logging
import zlib

import keras
import numpy as np

from cifar_kedro.schemas import Runtime

logger = logging.getLogger(__name__)


def apply(runtime: Runtime) -> None:
    """Set the global dtype policy, the distribution and op determinism; seed everything once.

    ``distribution: data_parallel`` is Keras' ``DataParallel`` over every device
    ``keras.distribution.list_devices()`` finds: each holds a copy of the weights and takes an
    equal share of every batch, gradients are summed across them, so ``batch_size`` is the global
    batch and the learning rates stay as they are.
    """
    keras.utils.set_random_seed(runtime.seed)
    keras.mixed_precision.set_global_policy(runtime.precision)
    strategy = None
    if runtime.distribution == "data_parallel":
        devices = keras.distribution.list_devices()
        strategy = keras.distribution.DataParallel(devices=devices)
        logger.info("Data-parallel training on %d devices: %s.", len(devices), ", ".join(devices))
    keras.distribution.set_distribution(strategy)
    if runtime.deterministic_ops and keras.config.backend() == "tensorflow":
        import tensorflow as tf  # the one backend switch: TensorFlow picks kernels per op, JAX on a CPU does not

        tf.config.experimental.enable_op_determinism()


def stage_seed(seed: int, name: str) -> int:
    """The seed of the stage ``name`` in a run seeded ``seed``: stable across runs and processes."""
    return (seed + zlib.crc32(name.encode())) % 2**31


def seed_stage(seed: int, name: str) -> int:
    """Seed Python, NumPy and Keras (its global seed generator too) for the stage ``name``; returns
    the stage's seed for what takes one explicitly (augmentation layers, sampling)."""
    derived = stage_seed(seed, name)
    keras.utils.set_random_seed(derived)
    return derived


def devices_per_batch() -> int:
    """How many devices share each batch (1 without a distribution)."""
    strategy = keras.distribution.distribution()
    return 1 if strategy is None else int(np.prod(strategy.device_mesh.shape))
