"""Every CNN block trains and evaluates on JAX and on TensorFlow with the `gpu` env's settings.

The README's GPU command (`KERAS_BACKEND=jax kedro run --env gpu`) once crashed at the first train
step of every airbench block: the per-variable learning rates were foreign objects inside JAX's
traced, stateless step. Here each block, at a tiny width, takes a few steps through the
cnn_training nodes with what the `gpu` env sets that a CPU can run (``jit_compile``, mixed
bfloat16, ``lr_scales`` and ``trains_for_epochs``, Lookahead, test-time augmentation), in a fresh
process per backend (``tests/block_check.py``), and must learn.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT

BLOCKS = {"airbench94_muon", "airbench94", "airbench96", "resnet9", "seed_cnn"}
# Measured (Intel Xeon, 3 epochs of 512 images): the last epoch's loss is 0.48–0.65 of the first's,
# the delivered models reach 0.77–0.91 validation accuracy (chance 0.1).
LOSS_RATIO_BAR = 0.85
# airbench94_muon's logits start tiny (÷ 256), so its label-smoothed loss falls slowly at this size:
# measured 0.89 of the first epoch's (TensorFlow), at 0.80 validation accuracy.
LOSS_RATIO_BARS = {"airbench94_muon": 0.95}
ACCURACY_BAR = 0.4


@pytest.mark.slow  # every block 3 epochs, per backend in a subprocess (45–120 s each)
@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_every_cnn_block_learns_with_the_gpu_settings(backend, tmp_path):
    pytest.importorskip(backend)
    env = {**os.environ, "KERAS_BACKEND": backend, "COLUMNS": "200"}
    result = subprocess.run([sys.executable, "-m", "tests.block_check", str(tmp_path / "batches")], cwd=PROJECT_ROOT,
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    checks = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert {c["architecture"] for c in checks} == BLOCKS
    for check in checks:
        assert (check["backend"], check["policy"], check["jit_compile"]) == (backend, "mixed_bfloat16", True)
        first, *_, last = check["losses"]
        assert last < LOSS_RATIO_BARS.get(check["architecture"], LOSS_RATIO_BAR) * first, check
        assert check["val_accuracy"] > ACCURACY_BAR, check
    delivered = {c["architecture"]: c["delivered"] for c in checks}
    assert delivered["airbench96"] == "airbench96_tta_flip_shift1" and delivered["resnet9"] == "resnet9_tta_flip"


@pytest.mark.skipif(os.environ.get("KERAS_BACKEND") == "jax", reason="already on JAX")
def test_the_optimizer_ingredients_hold_on_jax():
    """The per-variable learning rates (a multiplier of 0 set mid-run freezes), Muon's step and
    Lookahead's average, as ``tests/test_airbench.py`` checks them, under JAX's stateless train step."""
    pytest.importorskip("jax")
    tests = ["tests/test_airbench.py::test_per_variable_learning_rates_and_a_bias_that_trains_for_two_epochs",
             "tests/test_airbench.py::test_lookahead_ends_on_the_average_of_the_weights",
             "tests/test_airbench.py::test_a_pattern_matching_no_variable_stops_with_the_pattern_named",
             "tests/test_airbench.py::test_muon_moves_the_filters_it_names_by_the_orthogonalized_momentum_and_the_rest_by_sgd"]
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
                            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and f"{len(tests)} passed" in result.stdout, result.stdout[-3000:] + result.stderr[-2000:]
