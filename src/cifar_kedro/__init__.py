"""cifar-kedro: MobileNetV2 transfer learning against a custom CNN on CIFAR-10, as a Kedro project."""

import os

# TensorFlow turns its oneDNN kernels on by default only on CPUs with AVX-512-class features; on
# an AVX2 CPU (AMD EPYC here) they double MobileNetV2's speed (100 → 199 images/s inference at
# 96 px, benchmarks/README.md). Set before Keras imports TensorFlow; an explicit setting wins,
# and other Keras backends ignore it.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
