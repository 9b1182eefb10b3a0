"""``runtime: {distribution: data_parallel}`` set up on two virtual JAX CPU devices, in seconds: the
weights held on both, every batch split over them, and predictions for a count of images that does
not split evenly. (Training data-parallel against one device: tests/test_distribution.py, slow.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.conftest import PROJECT_ROOT
from cifar_kedro.hidden_packages import write_blocker

SCRIPT = textwrap.dedent('''
    import json
    import logging

    import keras
    import numpy as np

    from cifar_kedro import runtime, training
    from tests.conftest import runtime as settings

    logging.basicConfig(level=logging.INFO)
    runtime.apply(settings(distribution="data_parallel"))  # as RuntimeHooks does before a run
    inputs = keras.Input((4,))
    dense = keras.layers.Dense(3, activation="softmax")
    model = keras.Model(inputs, dense(inputs))
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")  # 5 rows over 2 devices
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in dense.weights)
    logits = x @ kernel + bias
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    print("RESULTS " + json.dumps({
        "devices": len(keras.distribution.list_devices()),
        "devices_per_batch": runtime.devices_per_batch(),
        "weights_on": sorted({str(d) for w in model.weights for d in w.value.sharding.device_set}),
        "predictions": training.predict(model, x, batch_size=4).tolist(),
        "expected": expected.tolist(),
    }))
''')


def test_data_parallel_holds_the_weights_on_every_device_and_predicts_every_image(tmp_path):
    pytest.importorskip("jax")
    # TensorFlow hidden, as on a JAX-only GPU machine (and Keras then starts in a few seconds).
    blocker = write_blocker(tmp_path / "no_tensorflow", ("tensorflow",))
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "PYTHONPATH": os.pathsep.join([str(blocker), str(PROJECT_ROOT)])}
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Data-parallel training on 2 devices: cpu:0, cpu:1" in result.stderr + result.stdout
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULTS "))
    results = json.loads(line.removeprefix("RESULTS "))
    assert results["devices"] == 2 and results["devices_per_batch"] == 2
    assert len(results["weights_on"]) == 2
    assert len(results["predictions"]) == 5  # the padding that evens out the batch is dropped again
    np.testing.assert_allclose(results["predictions"], results["expected"], atol=1e-5)
