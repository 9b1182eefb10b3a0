"""The models: the study's sizes, preprocessing inside the model, BatchNorm kept frozen, weights."""

from __future__ import annotations

import socket
import time

import keras
import numpy as np
import pytest

from cifar_kedro import models, training
from tests.conftest import runtime, stage


def small_transfer_model(**kwargs):
    """MobileNetV2 at 32 px, alpha 0.35, random weights: the tests' stand-in for the 96 px study model."""
    args = dict(num_classes=10, image_size=32, weights="none", alpha=0.35, dropout=0.0) | kwargs
    return models.build_transfer_model(**args)


def batchnorm_state(model: keras.Model) -> list[np.ndarray]:
    base = model.get_layer(models.BACKBONE)
    return [
        keras.ops.convert_to_numpy(w)
        for layer in base.layers
        if isinstance(layer, keras.layers.BatchNormalization)
        for w in layer.weights
    ]


def test_transfer_model_has_the_study_parameter_count():
    model = models.build_transfer_model(num_classes=10, image_size=96, weights="none")
    assert model.count_params() == 2_270_794
    assert training.count_params(model)["params_trainable"] == 1280 * 10 + 10  # only the head
    assert model.input.dtype == "uint8" and tuple(model.input.shape) == (None, 32, 32, 3)


def test_seed_cnn_is_the_study_network():
    model = models.build_seed_cnn(num_classes=10)
    non_trainable = sum(int(np.prod(w.shape)) for w in model.non_trainable_weights)
    assert (model.count_params(), non_trainable) == (622_282, 960)
    assert [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)] == [32, 64, 128]


def test_resnet9_follows_page_layout():
    model = models.build_resnet9(num_classes=10, channel_mean=[125.3, 123.0, 113.9], channel_std=[63.0, 62.1, 66.7])
    convs = [layer.filters for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert convs == [64, 128, 128, 128, 256, 512, 512, 512]
    assert model.get_layer("logit_scale").scale == 0.125
    assert model.output_shape == (None, 10)


def test_transfer_preprocessing_maps_pixels_to_minus_one_one():
    model = small_transfer_model()
    scaled = keras.Model(model.inputs, model.get_layer("preprocess").output)
    images = np.zeros((3, 32, 32, 3), dtype="uint8")
    images[1] = 255
    images[2, ..., 0] = 0
    images[2, ..., 1] = 128
    images[2, ..., 2] = 255
    out = np.asarray(scaled.predict(images, verbose=0))
    np.testing.assert_allclose(out[0], -1.0)
    np.testing.assert_allclose(out[1], 1.0)
    np.testing.assert_allclose(out[2, 0, 0], [-1.0, 128 / 127.5 - 1, 1.0], atol=1e-6)


def test_transfer_model_resizes_inside_the_model():
    model = models.build_transfer_model(num_classes=10, image_size=64, weights="none", alpha=0.35)
    assert model.get_layer("resize").output.shape[1:3] == (64, 64)


def test_fine_tuning_unfreezes_from_fine_tune_at_and_batchnorm_only_when_asked():
    model = small_transfer_model()
    base = model.get_layer(models.BACKBONE)
    models.unfreeze_backbone(model, 100)
    for index, layer in enumerate(base.layers):
        expected = index >= 100 and not isinstance(layer, keras.layers.BatchNormalization)
        assert layer.trainable == expected, (index, layer.name)
    models.unfreeze_backbone(model, 100, batchnorm="train", batchnorm_momentum=0.9)
    norms = [(i, layer) for i, layer in enumerate(base.layers) if isinstance(layer, keras.layers.BatchNormalization)]
    assert all(layer.trainable == (i >= 100) for i, layer in norms)
    assert {layer.momentum for i, layer in norms if i >= 100} == {0.9}
    assert {layer.momentum for i, layer in norms if i < 100} == {0.999}  # MobileNetV2's own, untouched
    with pytest.raises(ValueError, match="at=999"):
        models.unfreeze_backbone(model, 999)


def test_batchnorm_statistics_unchanged_by_head_training_and_fine_tuning(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (96, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 96)
    model = small_transfer_model()
    models.calibrate_batchnorm(model, images, batch_size=len(images), include_frozen=True)
    before = batchnorm_state(model)
    one_epoch = stage(optimizer="adam", learning_rate=1e-2)
    training.fit(model, (images, labels), (images[:32], labels[:32]), one_epoch, name="head", runtime=runtime())
    for after_w, before_w in zip(batchnorm_state(model), before):
        np.testing.assert_array_equal(after_w, before_w)
    models.unfreeze_backbone(model, 0)
    kernel_before = keras.ops.convert_to_numpy(model.get_layer(models.BACKBONE).get_layer("Conv1").kernel)
    training.fit(model, (images, labels), (images[:32], labels[:32]), one_epoch, name="fine_tune", runtime=runtime())
    for after_w, before_w in zip(batchnorm_state(model), before):
        np.testing.assert_array_equal(after_w, before_w)
    # …while the convolutions did train, so the test is not vacuous.
    assert not np.allclose(keras.ops.convert_to_numpy(model.get_layer(models.BACKBONE).get_layer("Conv1").kernel), kernel_before)


def test_training_and_inference_agree_after_unfreezing():
    """The study's failure: with batch statistics in training, train and test outputs diverge."""
    images = np.random.default_rng(1).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
    model = small_transfer_model()
    models.calibrate_batchnorm(model, images, batch_size=len(images), include_frozen=True)
    models.unfreeze_backbone(model, 0)
    np.testing.assert_allclose(
        np.asarray(model(images, training=True)), np.asarray(model(images, training=False)), atol=1e-6
    )


def test_random_backbone_without_calibration_gives_every_image_the_same_features():
    """Why ``weights: none`` calibrates BatchNorm: uncalibrated, the frozen random base is blind."""
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    model = small_transfer_model()
    features = keras.Model(model.inputs, model.get_layer("pooling").output)
    spread_before = np.asarray(features.predict(images, verbose=0)).std(axis=0).mean()
    models.calibrate_batchnorm(model, images, batch_size=len(images), include_frozen=True)
    spread_after = np.asarray(features.predict(images, verbose=0)).std(axis=0).mean()
    assert spread_after > 100 * spread_before


def test_imagenet_weights_only_for_published_sizes():
    with pytest.raises(models.WeightsUnavailableError, match="image_size=100"):
        models.build_transfer_model(num_classes=10, image_size=100, weights="imagenet")


def test_missing_weights_file_is_refused(tmp_path):
    with pytest.raises(models.WeightsUnavailableError, match="does not exist"):
        small_transfer_model(weights=str(tmp_path / "nope.weights.h5"))


def test_imagenet_offline_fails_fast_with_the_file_to_place(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network is unreachable (stubbed by the test)")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    monkeypatch.setattr(keras.src.utils.file_utils, "get_file", _get_file_in(tmp_path / "keras_home"))
    start = time.perf_counter()
    with pytest.raises(models.WeightsUnavailableError) as error:
        models.build_transfer_model(num_classes=10, image_size=96, weights="imagenet")
    assert time.perf_counter() - start < 10
    message = str(error.value)
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5" in message
    assert "transfer_training.weights" in message and "none" in message


def _get_file_in(cache_dir):
    """Keras' own get_file, with the cache in the test's folder so no cached weights are found."""
    original = keras.src.utils.file_utils.get_file

    def get_file(*args, **kwargs):
        kwargs["cache_dir"] = str(cache_dir)
        return original(*args, **kwargs)

    return get_file


def test_flip_tta_averages_image_and_mirror_image():
    model = models.build_seed_cnn(num_classes=10)
    wrapped = models.with_tta(model, flip=True)
    images = np.random.default_rng(3).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    expected = (model.predict(images, verbose=0) + model.predict(images[:, :, ::-1], verbose=0)) / 2
    np.testing.assert_allclose(wrapped.predict(images, verbose=0), expected, atol=1e-6)


def test_translate_tta_weighs_the_original_pair_and_the_shifted_views_half_each():
    """airbench's views: the image and its mirror (½), and both shifted one pixel up-left and
    down-right with reflection at the border, each with its mirror (½ together)."""
    model = models.build_seed_cnn(num_classes=10)
    images = np.random.default_rng(4).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    down_right, up_left = padded[:, :32, :32], padded[:, 2:, 2:]

    def pair(x):
        return (model.predict(x, verbose=0) + model.predict(x[:, :, ::-1], verbose=0)) / 2

    expected = pair(images) / 2 + (pair(down_right) + pair(up_left)) / 4
    wrapped = models.with_tta(model, flip=True, translate=1)
    np.testing.assert_allclose(wrapped.predict(images, verbose=0), expected, atol=1e-6)


def test_fine_tuning_split_is_the_model_cut_at_a_block_boundary():
    model = small_transfer_model()
    images = np.random.default_rng(5).integers(0, 256, (8, 32, 32, 3), dtype=np.uint8)
    models.calibrate_batchnorm(model, images, batch_size=len(images), include_frozen=True)
    split = models.split_for_fine_tuning(model, 100)
    base = model.get_layer(models.BACKBONE)
    assert split.boundary == "block_10_project_BN"  # layer 100 is inside block 11, which adds block 10's output
    assert [layer.name for layer in base.layers].index(split.boundary) < 100
    composed = split.top.predict(split.bottom.predict(images, verbose=0), verbose=0)
    np.testing.assert_allclose(composed, model.predict(images, verbose=0), atol=1e-5)
    # The top shares the model's layers: training it trains the model.
    assert split.top.get_layer("classifier") is model.get_layer("classifier")
    assert models.split_for_fine_tuning(model, 1) is None  # nothing frozen to cache
