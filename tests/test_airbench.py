"""airbench's ingredients, each on its own: whitening, identity init, alternating flip, the
optimizer's per-variable rates, Lookahead; and a narrow airbench learning the demo data."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import yaml

from cifar_kedro import models, training
from cifar_kedro.layers import AlternatingFlip
from cifar_kedro.pipelines.cnn_training import nodes
from cifar_kedro.pipelines.cnn_training.schema import CNNTrainingParams
from cifar_kedro.schemas import Lookahead, Optimizer
from tests.conftest import PROJECT_ROOT, deep_merge, runtime, stage, synthetic_splits

RNG = np.random.default_rng(0)


def test_whitening_filters_are_the_patch_covariance_eigenvectors():
    images = RNG.normal(size=(6, 5, 5, 3)).astype("float32")
    images[..., 1] += 0.8 * images[..., 0]  # correlated channels, so whitening has work to do
    kernel, eigenvalues = models.whitening_filters(images, kernel_size=2, epsilon=1e-6)
    assert kernel.shape == (2, 2, 3, 24)
    patches = np.stack([images[n, i:i + 2, j:j + 2].reshape(-1) for n in range(6) for i in range(4) for j in range(4)])
    covariance = patches.T.astype("float64") @ patches / len(patches)
    expected_values, expected_vectors = np.linalg.eigh(covariance)
    np.testing.assert_allclose(eigenvalues, expected_values[::-1], rtol=1e-6)
    filters = kernel.reshape(12, 24)
    np.testing.assert_allclose(filters[:, 12:], -filters[:, :12])
    # Each filter, rescaled by √eigenvalue, is the eigenvector (up to sign) of that eigenvalue.
    unscaled = filters[:, :12] * np.sqrt(eigenvalues + 1e-6)
    overlap = np.abs(unscaled.T @ expected_vectors[:, ::-1])
    np.testing.assert_allclose(overlap, np.eye(12), atol=1e-4)
    # So the first half of the conv's outputs is decorrelated with unit variance.
    whitened = patches @ filters[:, :12]
    np.testing.assert_allclose(whitened.T @ whitened / len(patches), np.eye(12), atol=1e-3)


def test_identity_init_makes_a_block_conv_start_as_the_identity():
    layer = keras.layers.Conv2D(8, 3, padding="same", use_bias=False)
    x = RNG.normal(size=(2, 6, 6, 5)).astype("float32")
    layer(x)
    models.identity_init(layer)
    y = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(y[..., :5], x, atol=1e-6)  # the first in-channels pass through
    assert np.abs(y[..., 5:]).sum() > 0  # the others keep their random init


def test_alternating_flip_shows_each_image_mirrored_in_every_other_epoch():
    images = RNG.integers(0, 256, (512, 8, 8, 3), dtype=np.uint8)  # 512: the half is 0.5 ± 0.022
    layer = AlternatingFlip()
    seen = []
    for epoch in range(4):
        layer.epoch.assign(epoch)
        out = keras.ops.convert_to_numpy(layer(images, training=True))
        mirrored = np.array([np.array_equal(o, i[:, ::-1]) and not np.array_equal(o, i) for o, i in zip(out, images)])
        assert all(np.array_equal(o, i) or m for o, i, m in zip(out, images, mirrored))
        seen.append(mirrored)
    assert np.all(seen[0] != seen[1]) and np.all(seen[0] == seen[2]) and np.all(seen[1] == seen[3])
    assert 0.25 < seen[0].mean() < 0.75  # about half the images start mirrored
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(images, training=False)), images)


def tiny_conv_model() -> keras.Model:
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="whiten")(inputs)
    x = keras.layers.BatchNormalization(scale=False, name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="classifier")(x))


def test_per_variable_learning_rates_and_a_bias_that_trains_for_two_epochs():
    x = RNG.normal(size=(64, 8, 8, 3)).astype("float32")
    y = RNG.integers(0, 3, 64)
    model = tiny_conv_model()
    model.get_layer("whiten").kernel.trainable = False
    snapshots = []

    class Snapshot(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append({w.path: keras.ops.convert_to_numpy(w).copy() for w in model.weights})

    # With weight decay: a variable that stops training (or has rate 0) is not decayed either.
    options = {"momentum": 0.9, "weight_decay": 0.05, "lr_scales": {"beta": 0.0}, "trains_for_epochs": {"whiten/bias": 2}}
    initial = {w.path: keras.ops.convert_to_numpy(w).copy() for w in model.weights}
    training.fit(model, (x, y), (x, y), stage(epochs=4, batch_size=16, learning_rate=0.1, optimizer_options=options),
                 name="scales", runtime=runtime(), callbacks=[Snapshot()])
    bias, kernel, beta = "whiten/bias", "whiten/kernel", "bn/beta"
    np.testing.assert_array_equal(snapshots[-1][kernel], initial[kernel])  # never trains
    np.testing.assert_array_equal(snapshots[-1][beta], initial[beta])  # learning-rate scale 0
    assert not np.array_equal(snapshots[1][bias], initial[bias])  # trains in epochs 1-2 …
    np.testing.assert_array_equal(snapshots[3][bias], snapshots[1][bias])  # … then stays put
    assert not np.array_equal(snapshots[3]["classifier/kernel"], snapshots[1]["classifier/kernel"])


def test_a_pattern_matching_no_variable_stops_with_the_pattern_named():
    x = RNG.normal(size=(16, 8, 8, 3)).astype("float32")
    y = RNG.integers(0, 3, 16)
    for name, options in (("sgd", {"lr_scales": {"beta": 2.0, "gamma_typo": 0.5}}),
                          ("adam", {"trains_for_epochs": {"whitten/bias": 1}})):
        typo = [*options.get("lr_scales", {}), *options.get("trains_for_epochs", {})][-1]
        with pytest.raises(ValueError, match=f"'{typo}'.*match no trainable variable"):
            training.fit(tiny_conv_model(), (x, y), (x, y),
                         stage(batch_size=8, optimizer=name, learning_rate=0.1, optimizer_options=options),
                         name="typo", runtime=runtime())


def newton_schulz(matrix: np.ndarray, steps: int) -> np.ndarray:
    """airbench94_muon's orthogonalization, in NumPy (float64), for a matrix with rows <= columns."""
    a, b, c = 3.4445, -4.7750, 2.0315
    x = matrix / (np.linalg.norm(matrix) + 1e-7)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x


def test_muon_moves_the_filters_it_names_by_the_orthogonalized_momentum_and_the_rest_by_sgd():
    kernel = keras.Variable(RNG.normal(size=(3, 3, 4, 8)), dtype="float32", name="block1_conv1_kernel")
    beta = keras.Variable(RNG.normal(size=(8,)), dtype="float32", name="bn_beta")
    gradients = [RNG.normal(size=(3, 3, 4, 8)).astype("float32"), RNG.normal(size=(8,)).astype("float32")]
    before = [keras.ops.convert_to_numpy(v).astype("float64") for v in (kernel, beta)]
    muon = {"variables": ["_conv"], "learning_rate": 0.24, "momentum": 0.6, "nesterov": True, "newton_schulz_steps": 3}
    options = Optimizer(name="sgd", learning_rate=0.1, momentum=0.85, nesterov=True, weight_decay=0.01, muon=muon)
    optimizer = training.make_optimizer(options, total_steps=10)
    optimizer.apply_gradients(zip(gradients, [kernel, beta]))

    # The filter: rescaled to norm √8, then moved by 0.24 × the orthogonalized Nesterov momentum
    # (1 + 0.6) g, as a matrix of output channels × the rest; no weight decay.
    direction = (1.6 * gradients[0].astype("float64")).reshape(-1, 8).T
    step = newton_schulz(direction, 3).T.reshape(3, 3, 4, 8)
    expected = before[0] * np.sqrt(8) / np.linalg.norm(before[0]) - 0.24 * step
    np.testing.assert_allclose(keras.ops.convert_to_numpy(kernel), expected, rtol=1e-4, atol=1e-5)
    singular = np.linalg.svd(newton_schulz(direction, 3), compute_uv=False)
    assert 0.6 < singular.min() and singular.max() < 1.3  # near-orthogonal: every direction moves alike
    # The offset: Keras' Nesterov SGD, -lr (1 + momentum) g, after decoupled decay lr × 0.01.
    expected_beta = before[1] * (1 - 0.1 * 0.01) - 0.1 * 1.85 * gradients[1]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(beta), expected_beta, rtol=1e-5, atol=1e-6)


def test_muon_variables_matching_nothing_stop_with_the_pattern_named():
    x = RNG.normal(size=(16, 8, 8, 3)).astype("float32")
    y = RNG.integers(0, 3, 16)
    muon = {"variables": ["block_cnov"], "learning_rate": 0.1, "momentum": 0.6, "nesterov": True, "newton_schulz_steps": 3}
    with pytest.raises(ValueError, match="optimizer.muon.variables.*'block_cnov'.*match no trainable variable"):
        training.fit(tiny_conv_model(), (x, y), (x, y), stage(batch_size=8, learning_rate=0.1, optimizer_options={"muon": muon}),
                     name="typo", runtime=runtime())


def test_muon_is_an_sgd_option():
    with pytest.raises(ValueError, match="muon apply to name: sgd only"):
        Optimizer(name="adam", learning_rate=0.1, muon={"variables": ["conv"], "learning_rate": 0.1, "momentum": 0.6,
                                                         "nesterov": True, "newton_schulz_steps": 3})


def test_lookahead_ends_on_the_average_of_the_weights():
    x = RNG.normal(size=(32, 8, 8, 3)).astype("float32")
    y = RNG.integers(0, 3, 32)
    model = tiny_conv_model()
    averaged = {}

    class Capture(training.LookaheadEMA):
        def on_train_end(self, logs=None):
            super().on_train_end(logs)
            averaged.update({v.path: a.copy() for v, a in zip(training._float_weights(self.model), self.average)})

    # Lookahead through fit is covered by the airbench test below; here its last step directly.
    training.fit(model, (x, y), (x, y), stage(epochs=2, batch_size=8, learning_rate=0.1), name="ema", runtime=runtime(),
                 callbacks=[Capture(Lookahead(every=2, decay=0.7738, power=3.0))])
    for weight in model.weights:
        if weight.path in averaged:
            np.testing.assert_allclose(keras.ops.convert_to_numpy(weight), averaged[weight.path])
    assert averaged  # the float weights were averaged


@pytest.fixture(scope="module")
def demo_splits(tmp_path_factory):
    return synthetic_splits(tmp_path_factory.mktemp("airbench") / "batches", images_per_batch=400, seed=3)


# The blocks at a narrow width; airbench94_muon at batch 128, its SGD rates scaled from batch 2000 by
# 128 / 2000 as the reference's summed loss would (Muon's rate does not depend on the batch).
NARROW = {
    "airbench94": {"network": {"widths": [16, 32, 32]}, "batch_size": 128},
    "airbench94_muon": {"network": {"widths": [16, 32, 32]}, "batch_size": 128,
                        "optimizer": {"learning_rate": {"knots": [[0, 6.78], [1, 0.0]]}}},
}


def narrow_airbench(architecture: str, epochs: int) -> CNNTrainingParams:
    base = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_cnn_training.yml").read_text())["cnn_training"]
    return CNNTrainingParams.model_validate(base | {
        "architecture": architecture, "checkpoint_dir": None,
        architecture: deep_merge(base[architecture], NARROW[architecture] | {"epochs": epochs}),
    })


@pytest.mark.parametrize("architecture", [
    pytest.param("airbench94", marks=pytest.mark.slow),  # 4 epochs of 3,200 images (about 20 s)
    "airbench94_muon",  # about 10 s
])
def test_a_narrow_airbench_learns_the_demo_data_and_reloads_identically(architecture, demo_splits, tmp_path):
    train, validation, names = demo_splits
    params = narrow_airbench(architecture, epochs=4)
    statistics = nodes.input_statistics(train, params)
    assert statistics["whitening_kernel"].shape == (2, 2, 3, 24)
    model = nodes.build_model(names, statistics, params, runtime())
    delivered, history = nodes.train_model(model, train, validation, names, params, runtime())
    accuracy = nodes.validation_metrics(delivered, validation, 256)["val_accuracy"]
    assert accuracy > 0.6, history["epochs"]  # chance is 0.1
    np.testing.assert_allclose(  # the whitening kernel stayed as computed
        keras.ops.convert_to_numpy(model.get_layer("whiten").kernel), statistics["whitening_kernel"])
    path = tmp_path / "airbench.keras"
    delivered.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    images = validation["images"][:32]
    np.testing.assert_array_equal(reloaded.predict(images, verbose=0), delivered.predict(images, verbose=0))
