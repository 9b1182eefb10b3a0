"""Data-parallel training (`distribution: data_parallel`) on several devices: two virtual JAX CPU
devices stand in for a machine with several accelerators."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import PROJECT_ROOT

# One process with two devices trains the demo's CNN (the cnn_training nodes, the demo
# parameters) twice from the same seed: on one device, then data-parallel on both.
SCRIPT = textwrap.dedent('''
    import json, sys
    from pathlib import Path

    import jax
    import numpy as np
    from kedro.config import OmegaConfigLoader

    from cifar_kedro import runtime, training
    from cifar_kedro.pipelines.cnn_training import nodes
    from cifar_kedro.pipelines.cnn_training.schema import CNNTrainingParams
    from cifar_kedro.schemas import Runtime
    from tests.conftest import synthetic_splits

    conf, workdir = sys.argv[1], Path(sys.argv[2])
    loader = OmegaConfigLoader(conf, env="demo", base_env="base", default_run_env="local",
                               merge_strategy={"parameters": "soft"})
    demo, settings = loader["parameters"]["cnn_training"], loader["parameters"]["runtime"]
    train, validation, names = synthetic_splits(workdir, images_per_batch=250, seed=0)
    # An odd count of validation images: the last batch does not split evenly over two devices.
    train, validation = ({key: split[key][:count] for key in ("images", "labels")}
                         for split, count in ((train, 1000), (validation, 249)))
    results = {"devices": [str(d) for d in jax.devices()]}
    for distribution in ("none", "data_parallel"):
        params = CNNTrainingParams(**{**demo, "checkpoint_dir": None})
        run = Runtime(**{**settings, "distribution": distribution})
        runtime.apply(run)  # as RuntimeHooks does before a run
        statistics = nodes.input_statistics(train, params)
        model = nodes.build_model(names, statistics, params, run)
        initial = [np.array(v) for v in model.trainable_variables]
        delivered, history = nodes.train_model(model, train, validation, names, params, run)
        replicas = [[np.asarray(shard.data) for shard in v.value.addressable_shards] for v in model.trainable_variables]
        results[distribution] = {
            "devices_per_batch": runtime.devices_per_batch(),
            "weights_on": sorted({str(d) for v in model.trainable_variables for d in v.value.sharding.device_set}),
            "replicas_agree": all(np.array_equal(r[0], other) for r in replicas for other in r[1:]),
            "weights_moved": any(not np.array_equal(r[0], i) for r, i in zip(replicas, initial)),
            "train_accuracy": history["epochs"][-1]["accuracy"],
            "epoch_val_accuracy": history["epochs"][-1]["val_accuracy"],
            "validation": training.validation_metrics(delivered, validation, 256),
            "seconds": history["train_seconds"],
        }
    print("RESULTS " + json.dumps(results))
''')


@pytest.fixture(scope="module")
def one_and_two_devices(tmp_path_factory) -> dict:
    pytest.importorskip("jax")
    workdir = tmp_path_factory.mktemp("distribution")
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "PYTHONPATH": str(PROJECT_ROOT)}
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(PROJECT_ROOT / "conf"), str(workdir / "data")],
                            env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULTS "))
    return json.loads(line.removeprefix("RESULTS "))


@pytest.mark.slow  # the fixture trains the demo CNN twice on JAX in a subprocess (minutes)
def test_data_parallel_training_runs_on_both_devices(one_and_two_devices):
    parallel = one_and_two_devices["data_parallel"]
    assert len(one_and_two_devices["devices"]) == 2
    assert parallel["devices_per_batch"] == 2
    assert len(parallel["weights_on"]) == 2  # every weight held on both devices …
    assert parallel["replicas_agree"] and parallel["weights_moved"]  # … trained, and the copies kept equal
    single = one_and_two_devices["none"]
    assert single["devices_per_batch"] == 1 and len(single["weights_on"]) == 1


@pytest.mark.slow
def test_data_parallel_reaches_the_accuracy_of_one_device(one_and_two_devices):
    single, parallel = one_and_two_devices["none"], one_and_two_devices["data_parallel"]
    assert single["validation"]["val_accuracy"] > 0.5  # the demo data are learnable; chance is 0.1
    # The same global batch, learning rate and seed: the same training, up to the order of sums.
    assert parallel["validation"]["val_accuracy"] == pytest.approx(single["validation"]["val_accuracy"], abs=0.05)
    assert parallel["train_accuracy"] == pytest.approx(single["train_accuracy"], abs=0.05)
    assert parallel["validation"]["n_images"] == single["validation"]["n_images"]  # every validation image counted


def test_data_parallel_needs_the_jax_backend():
    import keras
    from pydantic import TypeAdapter, ValidationError

    from cifar_kedro.schemas import Distribution

    if keras.config.backend() == "jax":
        pytest.skip("this process runs JAX")
    assert TypeAdapter(Distribution).validate_python("none") == "none"
    with pytest.raises(ValidationError, match="KERAS_BACKEND=jax"):
        TypeAdapter(Distribution).validate_python("data_parallel")
