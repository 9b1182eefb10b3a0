"""A data split as it travels through the catalog: images and labels together, never apart."""

from __future__ import annotations

import hashlib

import numpy as np

Split = dict[str, np.ndarray]  # {"images": uint8 (N, 32, 32, 3) NHWC, "labels": int64 (N,)}


def split_sha256(split: Split) -> str:
    """The checksum a split is known by: SHA-256 of its image bytes followed by its int64 label bytes."""
    digest = hashlib.sha256(np.ascontiguousarray(split["images"]).tobytes())
    digest.update(np.asarray(split["labels"]).astype(np.int64).tobytes())
    return digest.hexdigest()
