"""The study's models, each readable top to bottom.

Every model takes raw ``uint8`` images (CIFAR-10: 32×32×3) and returns class probabilities. Input
scaling lives inside the model, so the splits stay small, the saved ``.keras`` file needs no
outside preprocessing, and the reporting pipeline treats all models alike. Training-time
augmentation is not part of these models: ``training.fit`` puts it in front while training, so a
delivered model holds only Keras' built-in layers and loads with plain
``keras.saving.load_model(path)`` wherever Keras runs, without this project installed.
Backend-agnostic Keras 3: no TensorFlow here.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Sequence
from typing import Literal, NamedTuple

import keras
from keras import layers

import numpy as np

INPUT_SHAPE = (32, 32, 3)
BACKBONE = "backbone"

# Input sizes and widths for which Keras publishes ImageNet weights of MobileNetV2.
IMAGENET_SIZES = (96, 128, 160, 192, 224)
IMAGENET_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
# Seconds a socket may stay silent while the ImageNet weights download, so offline fails fast.
DOWNLOAD_SOCKET_TIMEOUT = 30


class WeightsUnavailableError(RuntimeError):
    """The requested pretrained weights cannot be had (offline, or no such weights)."""


def _image_input(input_shape: Sequence[int] = INPUT_SHAPE) -> keras.KerasTensor:
    return keras.Input(tuple(input_shape), dtype="uint8", name="image")


# ---------------------------------------------------------------------------- transfer learning
def build_transfer_model(
    *,
    num_classes: int,
    input_shape: Sequence[int] = INPUT_SHAPE,
    image_size: int = 96,
    weights: str | None = "imagenet",
    alpha: float = 1.0,
    dropout: float = 0.2,
) -> keras.Model:
    """MobileNetV2 (frozen) → global average pooling → dropout → dense softmax.

    With 10 classes, 96 px and ``alpha=1`` this is the study's 2,270,794-parameter model.
    """
    base = mobilenet_v2_backbone(image_size=image_size, weights=weights, alpha=alpha)
    base.trainable = False

    inputs = _image_input(input_shape)
    x = layers.Rescaling(1 / 127.5, offset=-1, name="preprocess")(inputs)  # MobileNetV2 wants [-1, 1]
    x = layers.Resizing(image_size, image_size, name="resize")(x)
    x = base(x, training=False)  # inference mode while frozen; see unfreeze_backbone for fine-tuning
    x = layers.GlobalAveragePooling2D(name="pooling")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="classifier")(x)
    return keras.Model(inputs, outputs, name="transfer_mobilenet_v2")


def feature_extractor(model: keras.Model) -> keras.Model:
    """The transfer model up to its pooled backbone features (augmentation is off at inference)."""
    return keras.Model(model.inputs, model.get_layer("pooling").output, name="feature_extractor")


def head_on_features(model: keras.Model) -> keras.Model:
    """The transfer model's own dropout and classifier (weights shared) on pooled features, so the
    head can train on features computed once by ``feature_extractor``."""
    features = keras.Input(model.get_layer("pooling").output.shape[1:], name="features")
    outputs = model.get_layer("classifier")(model.get_layer("dropout")(features))
    return keras.Model(features, outputs, name="transfer_head")


class FineTuneSplit(NamedTuple):
    boundary: str  # the backbone layer whose output ``bottom`` returns
    bottom: keras.Model
    top: keras.Model


def split_for_fine_tuning(model: keras.Model, fine_tune_at: int) -> FineTuneSplit | None:
    """The transfer model cut in two where fine-tuning from layer ``fine_tune_at`` begins.

    ``bottom`` maps images to the backbone's activation at the last layer before ``fine_tune_at``
    that everything after it depends on alone (a block boundary: MobileNetV2's residual blocks
    cannot be cut inside); ``top`` maps that activation to class probabilities. Both share the
    model's layers, so training ``top`` trains the model. The frozen ``bottom`` can then run once
    over the data instead of every epoch. ``None`` when there is no such layer before
    ``fine_tune_at`` (fine-tuning from the first block on).
    """
    base = model.get_layer(BACKBONE)
    for cut in range(min(fine_tune_at, len(base.layers)) - 1, 0, -1):
        boundary = base.layers[cut].output
        try:
            rest = keras.Model(boundary, base.output, name=f"{BACKBONE}_from_{base.layers[cut].name}")
        except ValueError:  # a residual connection jumps over this layer
            continue
        upto = keras.Model(base.input, boundary, name=f"{BACKBONE}_to_{base.layers[cut].name}")
        bottom = keras.Model(model.inputs, upto(model.get_layer("resize").output), name="frozen_bottom")
        activations = keras.Input(boundary.shape[1:], name="activations")
        x = rest(activations)
        for name in ("pooling", "dropout", "classifier"):
            x = model.get_layer(name)(x)
        return FineTuneSplit(base.layers[cut].name, bottom, keras.Model(activations, x, name="fine_tuned_top"))
    return None


def unfreeze_backbone(model: keras.Model, fine_tune_at: int,
                      batchnorm: Literal["frozen", "train"] = "frozen", batchnorm_momentum: float = 0.99) -> None:
    """Make the backbone's layers from index ``fine_tune_at`` on trainable. Re-compile afterwards.

    ``batchnorm="frozen"`` keeps every BatchNormalization layer frozen, which in Keras 3 also keeps
    it in inference mode: it normalizes with, and never updates, its ImageNet moving statistics.
    ``base(x, training=False)`` alone does not ensure that — a functional model passes its own
    ``training`` flag down to a nested model. ``batchnorm="train"`` trains the unfrozen
    BatchNormalization layers as well: in training they normalize with the batch's statistics and
    update their moving statistics (with ``batchnorm_momentum``; MobileNetV2's own 0.999 lags
    behind a short fine-tuning) — the usual full fine-tuning, which adapts the statistics to the
    new images. Either way training and inference differ only where the statistics are learnt.
    """
    base = model.get_layer(BACKBONE)
    if not 0 <= fine_tune_at <= len(base.layers):
        raise ValueError(
            f"Fine-tuning from layer at={fine_tune_at} is outside the backbone's 0..{len(base.layers)} layers; fix "
            "transfer_training.fine_tune.at or fine_tune_experiments in conf/base/parameters_transfer_training.yml."
        )
    base.trainable = True
    for index, layer in enumerate(base.layers):
        is_norm = isinstance(layer, layers.BatchNormalization)
        layer.trainable = index >= fine_tune_at and (batchnorm == "train" or not is_norm)
        if is_norm and layer.trainable:
            layer.momentum = batchnorm_momentum


def calibrate_batchnorm(model: keras.Model, images: np.ndarray, *, batch_size: int, include_frozen: bool = False) -> None:
    """Set the moving statistics of ``model``'s BatchNormalization layers to those of ``images``.

    "Precise BatchNorm" (Wu & Johnson, 2021): ``images`` go forward in training mode, batch by
    batch, with momentum k/(k+1) at batch k, so each layer ends on the plain average of its batch
    statistics under the current weights; nothing else changes. Moving statistics updated with a
    fixed momentum (Keras' 0.99) lag behind the weights: after the few hundred steps of a small
    data set they still lean on their start (mean 0, variance 1), and the model then classifies
    every image alike at inference though it learnt in training (see ``training.fit``).

    Only the layers that train are recalibrated. ``include_frozen`` takes the frozen ones too: a
    randomly initialised backbone (``weights: none``), which in inference mode would normalize
    with mean 0 and variance 1 and let the signal die out over its 50-odd layers.
    """
    norms = [layer for layer in all_layers(model) if isinstance(layer, layers.BatchNormalization)
             and (include_frozen or layer.trainable)]
    if not norms or not len(images):
        return
    usable = len(images) - len(images) % batch_size if len(images) >= batch_size else len(images)
    saved = [(bn.momentum, bn.trainable) for bn in norms]
    try:
        for bn in norms:
            bn.trainable = True  # a frozen BatchNormalization layer ignores training=True
        for k, start in enumerate(range(0, usable, batch_size)):
            for bn in norms:
                bn.momentum = k / (k + 1)
            model(images[start:start + batch_size], training=True)
    finally:
        for bn, (momentum, trainable) in zip(norms, saved):
            bn.momentum, bn.trainable = momentum, trainable


def all_layers(model: keras.layers.Layer):
    """Every layer of ``model``, nested models' layers included."""
    for layer in getattr(model, "layers", []):
        yield layer
        yield from all_layers(layer)


def mobilenet_v2_backbone(*, image_size: int, weights: str | None, alpha: float) -> keras.Model:
    """``keras.applications.MobileNetV2`` without its top, with ImageNet, file or random weights."""
    weights = None if is_random_init(weights) else weights
    if weights == "imagenet":
        _check_imagenet_available(image_size, alpha)
    elif weights is not None and not os.path.exists(weights):
        raise WeightsUnavailableError(
            f"transfer_training.weights points to '{weights}', which does not exist; give the path of a "
            "'.weights.h5' file saved from a MobileNetV2 of the same image_size and alpha, 'imagenet', or 'none'."
        )
    kwargs = dict(input_shape=(image_size, image_size, 3), include_top=False, alpha=alpha, name=BACKBONE)
    if weights != "imagenet":
        return keras.applications.MobileNetV2(weights=weights, **kwargs)
    try:
        with _socket_timeout(DOWNLOAD_SOCKET_TIMEOUT):
            return keras.applications.MobileNetV2(weights="imagenet", **kwargs)
    except Exception as error:  # Keras raises a bare Exception on a failed fetch
        if "URL fetch failure" not in str(error) and not isinstance(error, OSError):
            raise
        raise WeightsUnavailableError(_offline_message(image_size, alpha)) from None


def is_random_init(weights: str | None) -> bool:
    """Whether the ``weights`` parameter asks for random initialisation."""
    return weights is None or str(weights).lower() == "none"


def imagenet_weights_file(image_size: int, alpha: float) -> str:
    """The file name Keras caches MobileNetV2's no-top ImageNet weights under."""
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{image_size}_no_top.h5"


def _check_imagenet_available(image_size: int, alpha: float) -> None:
    if image_size not in IMAGENET_SIZES or alpha not in IMAGENET_ALPHAS:
        raise WeightsUnavailableError(
            f"MobileNetV2 has ImageNet weights only for image_size in {IMAGENET_SIZES} and alpha in "
            f"{IMAGENET_ALPHAS}, not image_size={image_size}, alpha={alpha}: change "
            "transfer_training.image_size/alpha, or set transfer_training.weights to a file or 'none'."
        )


def _offline_message(image_size: int, alpha: float) -> str:
    cache = os.path.join(os.environ.get("KERAS_HOME", os.path.join(os.path.expanduser("~"), ".keras")), "models")
    return (
        "Could not download MobileNetV2's ImageNet weights (no network?). Either place the file "
        f"'{imagenet_weights_file(image_size, alpha)}' (from "
        "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/) in "
        f"'{cache}', or set transfer_training.weights to a local '.weights.h5' file or to 'none' "
        '(random initialisation), e.g. kedro run --params "transfer_training.weights=none".'
    )


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


# ---------------------------------------------------------------------------- the study's CNN
def build_seed_cnn(
    *,
    num_classes: int,
    input_shape: Sequence[int] = INPUT_SHAPE,
    filters: Sequence[int] = (32, 64, 128),
    dense_units: int = 256,
    dropout: float = 0.5,
) -> keras.Model:
    """The study's custom CNN: 3 × (conv 3×3 ReLU → BN → max-pool) → dense ReLU → BN → dropout → softmax.

    With the defaults and 10 classes: 622,282 parameters, 960 of them non-trainable.
    """
    inputs = _image_input(input_shape)
    x = layers.Rescaling(1 / 255, name="preprocess")(inputs)
    for i, n in enumerate(filters, start=1):
        x = layers.Conv2D(n, 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = layers.BatchNormalization(name=f"bn{i}")(x)
        x = layers.MaxPooling2D(name=f"pool{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense_units, activation="relu", name="dense")(x)
    x = layers.BatchNormalization(name="bn_dense")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="classifier")(x)
    return keras.Model(inputs, outputs, name="seed_cnn")


# ---------------------------------------------------------------------------- ResNet-9
def build_resnet9(
    *,
    num_classes: int,
    input_shape: Sequence[int] = INPUT_SHAPE,
    channel_mean: Sequence[float],
    channel_std: Sequence[float],
    width: float = 1.0,
    logit_scale: float = 0.125,
    bn_momentum: float = 0.9,
) -> keras.Model:
    """ResNet-9 after David Page, "How to train your ResNet" (94% on CIFAR-10 in 24 epochs).

    prep conv 64 → [conv 128, pool, residual 2 × conv 128] → [conv 256, pool] →
    [conv 512, pool, residual 2 × conv 512] → global max-pool → dense (no bias) × ``logit_scale``.
    Every conv is conv-BN-ReLU; ``width`` scales every channel count (1.0 is the published net).
    Inputs are normalized per channel with the training images' statistics (in 0..255 units).
    """

    def conv_bn(x, filters, name):
        x = layers.Conv2D(int(filters * width), 3, padding="same", use_bias=False, name=f"{name}_conv")(x)
        x = layers.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(x)
        return layers.ReLU(name=f"{name}_relu")(x)

    def residual(x, filters, name):
        y = conv_bn(conv_bn(x, filters, f"{name}a"), filters, f"{name}b")
        return layers.Add(name=f"{name}_add")([x, y])

    inputs = _image_input(input_shape)
    x = layers.Normalization(
        mean=list(channel_mean), variance=[s**2 for s in channel_std], name="preprocess"
    )(inputs)
    x = conv_bn(x, 64, "prep")
    x = layers.MaxPooling2D(name="pool1")(conv_bn(x, 128, "layer1"))
    x = residual(x, 128, "res1")
    x = layers.MaxPooling2D(name="pool2")(conv_bn(x, 256, "layer2"))
    x = layers.MaxPooling2D(name="pool3")(conv_bn(x, 512, "layer3"))
    x = residual(x, 512, "res3")
    x = layers.GlobalMaxPooling2D(name="pooling")(x)
    x = layers.Dense(num_classes, use_bias=False, name="classifier")(x)
    x = layers.Rescaling(logit_scale, name="logit_scale")(x)
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="resnet9")


# ---------------------------------------------------------------------------- airbench
def build_airbench(
    *,
    num_classes: int,
    whitening_kernel: np.ndarray,
    channel_mean: Sequence[float],
    channel_std: Sequence[float],
    input_shape: Sequence[int] = INPUT_SHAPE,
    widths: Sequence[int] = (64, 256, 256),
    convs_per_block: int = 2,
    residual: bool = False,
    bn_momentum: float = 0.6,
    logit_scale: float = 1 / 9,
    classifier_std: float | None = None,
    name: str = "airbench",
) -> keras.Model:
    """airbench after K. Jordan, "94% on CIFAR-10 in 3.29 Seconds on a Single GPU" (2024).

    normalize → patch-whitening conv (``whitening_kernel``: fixed, from the training images'
    patch statistics; ``whitening_filters``) → GELU → one block per width: [conv → max-pool → BN →
    GELU, then conv → BN → GELU (``convs_per_block`` - 1 times; with ``residual`` the last adds the
    block's first activation before its GELU)] → global max-pool → dense (no bias) × ``logit_scale``.
    airbench94: widths 64/256/256, 2 convs, BN momentum 0.6; airbench96: 128/384/512, 3 convs,
    residual, momentum 0.9. Convolutions have no bias and start as identity on their first
    channels (``identity_init``); BatchNorm learns offsets only (no scale), epsilon 1e-12.
    ``classifier_std`` rescales the dense kernel to that standard deviation (airbench94_muon: 1,
    with ``logit_scale`` 1/width).
    """

    def conv(x, width, name):
        layer = layers.Conv2D(width, 3, padding="same", use_bias=False, kernel_initializer=TORCH_DEFAULT, name=name)
        y = layer(x)
        identity_init(layer)
        return y

    def norm(x, name):
        return layers.BatchNormalization(momentum=bn_momentum, epsilon=1e-12, scale=False, name=name)(x)

    inputs = _image_input(input_shape)
    x = layers.Normalization(mean=list(channel_mean), variance=[s**2 for s in channel_std], name="preprocess")(inputs)
    whiten = layers.Conv2D(whitening_kernel.shape[-1], whitening_kernel.shape[:2], padding="valid", name="whiten")
    x = layers.Activation("gelu", name="whiten_gelu")(whiten(x))
    whiten.set_weights([whitening_kernel.astype("float32"), np.zeros(whitening_kernel.shape[-1], "float32")])
    whiten.kernel.trainable = False  # fixed; its bias trains (for a few epochs, see the recipe)
    for b, width in enumerate(widths, start=1):
        x = conv(x, width, f"block{b}_conv1")
        x = layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
        x = first = layers.Activation("gelu", name=f"block{b}_gelu1")(norm(x, f"block{b}_bn1"))
        for c in range(2, convs_per_block + 1):
            x = norm(conv(x, width, f"block{b}_conv{c}"), f"block{b}_bn{c}")
            if residual and c == convs_per_block:
                x = layers.Add(name=f"block{b}_add")([x, first])
            x = layers.Activation("gelu", name=f"block{b}_gelu{c}")(x)
    x = layers.GlobalMaxPooling2D(name="pooling")(x)
    classifier = layers.Dense(num_classes, use_bias=False, kernel_initializer=TORCH_DEFAULT, name="classifier")
    x = layers.Rescaling(logit_scale, name="logit_scale")(classifier(x))
    if classifier_std is not None:
        kernel = keras.ops.convert_to_numpy(classifier.kernel)
        classifier.kernel.assign(kernel * (classifier_std / kernel.std()))
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name=name)


# PyTorch's default for conv and dense kernels (uniform ±1/√fan_in), which airbench's recipe assumes.
TORCH_DEFAULT = keras.initializers.VarianceScaling(scale=1 / 3, mode="fan_in", distribution="uniform")


def identity_init(layer: keras.layers.Conv2D) -> None:
    """Make a 3×3 convolution's first ``in_channels`` filters the identity (``torch.nn.init.dirac_``
    on them), so a block starts by passing its input through; the other filters keep their init."""
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    size, _, channels_in, channels_out = kernel.shape
    n = min(channels_in, channels_out)
    kernel[:, :, :, :n] = 0.0
    kernel[size // 2, size // 2, np.arange(n), np.arange(n)] = 1.0
    layer.kernel.assign(kernel)


def whitening_filters(images: np.ndarray, *, kernel_size: int = 2, epsilon: float = 5e-4) -> tuple[np.ndarray, np.ndarray]:
    """airbench's patch-whitening filters from (already normalized) ``images`` (N, H, W, C).

    The covariance (uncentred, as airbench) of every ``kernel_size``² patch; its eigenvectors,
    largest eigenvalue first, scaled by 1/√(eigenvalue + epsilon), and their negatives: a kernel
    (k, k, C, 2·k²·C) whose first half maps the patches to decorrelated, unit-variance channels.
    Returns the kernel and the eigenvalues (descending).
    """
    windows = np.lib.stride_tricks.sliding_window_view(images, (kernel_size, kernel_size), axis=(1, 2))
    patches = windows.transpose(0, 1, 2, 4, 5, 3).reshape(-1, kernel_size * kernel_size * images.shape[-1])
    patches = patches.astype("float64")
    covariance = patches.T @ patches / len(patches)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    filters = eigenvectors / np.sqrt(eigenvalues + epsilon)
    kernel = np.concatenate([filters, -filters], axis=1)
    return kernel.reshape(kernel_size, kernel_size, images.shape[-1], -1).astype("float32"), eigenvalues


# ---------------------------------------------------------------------------- test-time augmentation
def with_tta(model: keras.Model, *, flip: bool = True, translate: int = 0) -> keras.Model:
    """``model`` predicting the average of its outputs over views of each image.

    ``flip``: each image and its mirror image, averaged. ``translate``: also the images shifted by
    ``translate`` pixels up-left and down-right (reflected at the border), each with its mirror;
    the original pair and the shifted views then weigh half each, as airbench's TTA does. Built
    from Keras' own layers only, so the delivered model loads without this project.
    """
    inputs = _image_input(model.input.shape[1:])

    def mirrored_pair(images):
        return [model(images), model(_mirror(images))] if flip else [model(images)]

    views = mirrored_pair(inputs)
    outputs = _average(views, "tta_views")
    if translate:
        shifted = [view for step in (-translate, translate) for view in mirrored_pair(_translate(inputs, step))]
        outputs = _average([outputs, _average(shifted, "tta_shifted")], "tta")
    name = "_".join(["tta", *(["flip"] if flip else []), *([f"shift{translate}"] if translate else [])])
    return keras.Model(inputs, outputs, name=f"{model.name}_{name}")


def _average(tensors: list, name: str):
    return tensors[0] if len(tensors) == 1 else layers.Average(name=name, dtype="float32")(tensors)


def _mirror(images):
    """Images flipped left-right, exactly: a fixed reversal matrix applied along the width."""
    width = images.shape[2]
    x = layers.Permute((1, 3, 2))(images)  # (H, C, W): width last
    reverse = layers.Dense(width, use_bias=False, trainable=False, dtype="float32")
    x = reverse(x)
    reverse.set_weights([np.eye(width, dtype="float32")[::-1]])
    return layers.Permute((1, 3, 2))(x)


def _translate(images, step: int):
    """Images shifted by ``step`` pixels along both axes (down-right if positive), the uncovered
    border filled by reflection, like ``F.pad(x, mode='reflect')`` followed by a crop."""
    height, width = images.shape[1:3]
    n = abs(step)
    for axis, size in ((1, height), (2, width)):
        def crop(start, stop):
            cropping = ((start, size - stop), (0, 0)) if axis == 1 else ((0, 0), (start, size - stop))
            return layers.Cropping2D(cropping)(images)

        if step > 0:  # new rows/cols 0..n-1 mirror original n..1; the rest is the original shifted
            parts = [crop(i, i + 1) for i in range(n, 0, -1)] + [crop(0, size - n)]
        else:
            parts = [crop(n, size)] + [crop(size - 1 - i, size - i) for i in range(1, n + 1)]
        images = layers.Concatenate(axis=axis)(parts)
    return images
