"""Kedro datasets this project needs and kedro-datasets does not have.

* ``CIFAR10BatchesDataset`` reads the official CIFAR-10 Python batches from a folder, safely, and
  gets them first when the folder is missing (the official archive, or a synthetic stand-in).
* ``ImageFolderDataset`` reads a class-per-folder tree of images (your own data).
* ``NpzDataset`` stores a dict of NumPy arrays (no pickles, so loading runs no code).
* ``KerasModelDataset`` stores a Keras 3 ``.keras`` file on any Keras backend (kedro-datasets'
  TensorFlowModelDataset imports TensorFlow) and loads it with ``safe_mode``.

The two sources load into the one shape ``cifar_kedro.sources`` describes, so the pipelines take
either. The two writers are atomic: a file is written beside its target and renamed into place, so a
killed run never leaves a half-written version for the next run to load.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from kedro.io import AbstractDataset, AbstractVersionedDataset, DatasetError, Version

from cifar_kedro.sources import cifar10, download, image_folder, synthetic


@contextmanager
def atomic_path(target: Path, suffix: str) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` only on success."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".part{suffix}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


class _LocalVersionedDataset(AbstractVersionedDataset):
    """Shared plumbing of the local, versioned, atomically written datasets below."""

    def __init__(self, *, filepath: str, version: Version | None = None, metadata: dict | None = None):
        super().__init__(filepath=PurePosixPath(filepath), version=version, exists_function=os.path.exists)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "version": self._version}

    def _exists(self) -> bool:
        try:
            return Path(self._get_load_path()).exists()
        except DatasetError:
            return False


class NpzDataset(_LocalVersionedDataset):
    """A ``dict[str, np.ndarray]`` in an uncompressed ``.npz`` file, loaded without pickle.

    Example catalog entry::

        train_split:
          type: cifar_kedro.datasets.NpzDataset
          filepath: data/05_model_input/train_split.npz
          versioned: true
    """

    def load(self) -> dict[str, np.ndarray]:
        path = Path(self._get_load_path())
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}

    def save(self, data: dict[str, np.ndarray]) -> None:
        if not isinstance(data, dict) or not all(isinstance(v, np.ndarray) for v in data.values()):
            raise DatasetError(f"{self._filepath}: NpzDataset saves a dict of NumPy arrays, got {type(data).__name__}.")
        target = Path(self._get_save_path())
        with atomic_path(target, ".npz") as tmp:
            with open(tmp, "wb") as file:
                np.savez(file, **data)


class KerasModelDataset(_LocalVersionedDataset):
    """A Keras 3 model in the native ``.keras`` format, on whatever Keras backend is active.

    ``safe_mode`` (default true) refuses to deserialize arbitrary Python code such as lambdas;
    the project's custom layers are registered with ``keras.saving.register_keras_serializable``.
    """

    def __init__(self, *, filepath: str, safe_mode: bool = True, version: Version | None = None,
                 metadata: dict | None = None):
        if not filepath.endswith(".keras"):
            raise DatasetError(f"KerasModelDataset filepath must end in '.keras', got '{filepath}'.")
        super().__init__(filepath=filepath, version=version, metadata=metadata)
        self._safe_mode = safe_mode

    def load(self) -> Any:
        import keras

        return keras.saving.load_model(self._get_load_path(), safe_mode=self._safe_mode)

    def save(self, model: Any) -> None:
        target = Path(self._get_save_path())
        with atomic_path(target, ".keras") as tmp:
            model.save(tmp)

    def _describe(self) -> dict[str, Any]:
        return {**super()._describe(), "safe_mode": self._safe_mode}


class CIFAR10BatchesDataset(AbstractDataset):
    """The CIFAR-10 Python batches in a ``cifar-10-batches-py`` folder (read only).

    Loading returns the source (``cifar_kedro.sources``) after a safe, validated read of every file,
    with ``"source": "download" | "synthetic"``.

    When the folder is missing it is filled first, once, according to ``source``:

    * ``download`` — the official archive from ``url``, checked against ``md5`` before it is
      unpacked; offline, a short error says where to put the files by hand;
    * ``synthetic`` — a small, deterministic, learnable stand-in in exactly the same format
      (``synthetic`` holds the generator's options), for the ``demo`` environment and tests.
    """

    def __init__(self, *, path: str, source: str = "download", url: str = cifar10.ARCHIVE_URL,
                 md5: str = cifar10.ARCHIVE_MD5, timeout: float = 10.0,
                 synthetic: dict[str, Any] | None = None, metadata: dict | None = None):
        if source not in ("download", "synthetic"):
            raise DatasetError(f"CIFAR10BatchesDataset 'source' must be 'download' or 'synthetic', got '{source}'.")
        self._path = Path(path)
        self._source = source
        self._url = url
        self._md5 = md5
        self._timeout = timeout
        self._synthetic = dict(synthetic or {})
        self.metadata = metadata

    def load(self) -> dict[str, Any]:
        if not self._path.exists():
            if self._source == "download":
                download.download_and_extract(self._path, url=self._url, md5=self._md5, timeout=self._timeout)
            else:
                synthetic.write_synthetic_cifar10(self._path, **self._synthetic)
        return {**cifar10.load(self._path), "source": self._source}

    def save(self, data: Any) -> None:
        raise DatasetError(f"{self._path} holds the original CIFAR-10 batches and is read only.")

    def _exists(self) -> bool:
        return self._path.exists()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "source": self._source}


class ImageFolderDataset(AbstractDataset):
    """Your own images: a class-per-folder tree (optionally split in ``train/`` and ``test/``), read
    by ``sources.image_folder`` at ``image_size`` × ``image_size``, read only.

    Example catalog entry (``conf/images/catalog.yml``)::

        raw_source:
          type: cifar_kedro.datasets.ImageFolderDataset
          path: data/01_raw/images
          image_size: 64
          crop: false             # true: centre-crop to square before resizing (else stretch)
          skip_unreadable: false  # true: leave corrupt files out, listed in the data report
    """

    def __init__(self, *, path: str, image_size: int, crop: bool = False, skip_unreadable: bool = False,
                 workers: int | None = None, metadata: dict | None = None):
        if int(image_size) < 8:
            raise DatasetError(f"ImageFolderDataset image_size must be at least 8 pixels, got {image_size}.")
        self._path = Path(path)
        self._image_size = int(image_size)
        self._crop = bool(crop)
        self._skip_unreadable = bool(skip_unreadable)
        self._workers = workers
        self.metadata = metadata

    def load(self) -> dict[str, Any]:
        try:
            source = image_folder.load(self._path, image_size=self._image_size, crop=self._crop,
                                       skip_unreadable=self._skip_unreadable, workers=self._workers)
        except image_folder.ImageFolderError as error:
            raise DatasetError(str(error)) from error
        return {**source, "source": "image_folder"}

    def save(self, data: Any) -> None:
        raise DatasetError(f"{self._path} holds your source images and is read only.")

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "image_size": self._image_size, "crop": self._crop,
                "skip_unreadable": self._skip_unreadable}
