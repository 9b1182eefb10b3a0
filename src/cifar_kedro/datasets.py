"""Kedro datasets this project needs and kedro-datasets does not have.

* ``CIFAR10BatchesDataset`` reads the official CIFAR-10 Python batches from a folder, safely, and
  gets them first when the folder is missing (the official archive, or a synthetic stand-in).
* ``ImageFolderDataset`` reads a class-per-folder tree of images (your own data).
* ``NpzDataset`` stores a dict of NumPy arrays (no pickles, so loading runs no code).
* ``KerasModelDataset`` stores a Keras 3 ``.keras`` file on any Keras backend (kedro-datasets'
  TensorFlowModelDataset imports TensorFlow) and loads it with ``safe_mode``.

The two sources load into the one shape ``cifar_kedro.sources`` describes, so the pipelines take
either.

Every path may be local or on any fsspec filesystem (``s3://``, ``gs://``, ``abfs://``, ``file://``),
with ``credentials`` and ``fs_args`` in the catalog entry, as kedro-datasets' own datasets take them.
The two writers never leave a half-written version for the next run to load: locally a file is
written beside its target and renamed into place; on an object store it is written to a local
temporary file and then uploaded in one request (or one multipart upload), and the object store shows
an object only once it is complete. The sources read a remote folder through a local temporary copy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
import numpy as np
from kedro.io import AbstractDataset, AbstractVersionedDataset, DatasetError, Version
from kedro.io.core import get_filepath_str, get_protocol_and_path

from cifar_kedro.sources import cifar10, download, image_folder, synthetic

logger = logging.getLogger(__name__)


def versions(root: str | os.PathLike, relative: str) -> list[Path]:
    """The saved versions of the versioned local dataset at ``root/relative``, oldest first. Kedro
    writes each to ``<filepath>/<version>/<file name>``, and versions are timestamps that sort in time."""
    return sorted(Path(root, relative).glob(f"*/{Path(relative).name}"))


def newest_version(root: str | os.PathLike, relative: str) -> Path | None:
    """The newest saved version of ``root/relative`` (see ``versions``), or None before the first save."""
    saved = versions(root, relative)
    return saved[-1] if saved else None


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


def filesystem(path: str, credentials: dict | None = None, fs_args: dict | None = None,
               version: Version | None = None) -> tuple[str, str, fsspec.AbstractFileSystem]:
    """``(protocol, path without protocol, filesystem)`` for a catalog path, as kedro-datasets do."""
    protocol, bare = get_protocol_and_path(path, version)
    return protocol, bare, fsspec.filesystem(protocol, **(credentials or {}), **(fs_args or {}))


class _VersionedFileDataset(AbstractVersionedDataset):
    """Shared plumbing of the versioned, whole-or-nothing file datasets below."""

    def __init__(self, *, filepath: str, version: Version | None = None, credentials: dict | None = None,
                 fs_args: dict | None = None, metadata: dict | None = None):
        self._protocol, path, self._fs = filesystem(filepath, credentials, fs_args, version)
        super().__init__(filepath=PurePosixPath(path), version=version, exists_function=self._fs.exists,
                         glob_function=self._fs.glob)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "protocol": self._protocol, "version": self._version}

    def _exists(self) -> bool:
        try:
            path = get_filepath_str(self._get_load_path(), self._protocol)
        except DatasetError:
            return False
        return self._fs.exists(path)

    @contextmanager
    def _local_load_path(self) -> Iterator[Path]:
        """The version to load as a local file: the file itself, or a temporary download of it."""
        path = get_filepath_str(self._get_load_path(), self._protocol)
        if self._protocol == "file":
            yield Path(path)
            return
        with tempfile.TemporaryDirectory(prefix="cifar-kedro-") as folder:
            local = Path(folder) / PurePosixPath(path).name
            self._fs.get_file(path, str(local))
            yield local

    @contextmanager
    def _local_save_path(self, suffix: str) -> Iterator[Path]:
        """A local temporary file to write the data to; once written it becomes the save version
        whole (renamed into place, or uploaded), and on an error nothing appears."""
        path = get_filepath_str(self._get_save_path(), self._protocol)
        if self._protocol == "file":
            with atomic_path(Path(path), suffix) as tmp:
                yield tmp
        else:
            with tempfile.TemporaryDirectory(prefix="cifar-kedro-") as folder:
                tmp = Path(folder) / f"part{suffix}"
                yield tmp
                self._fs.put_file(str(tmp), path)
        self._fs.invalidate_cache(get_filepath_str(self._filepath, self._protocol))


def arrays_sha256(data: dict[str, np.ndarray]) -> str:
    """SHA-256 of a dict of arrays: every key with its dtype, shape and bytes, in key order."""
    digest = hashlib.sha256()
    for key in sorted(data):
        array = np.ascontiguousarray(data[key])
        digest.update(f"{key}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


class NpzDataset(_VersionedFileDataset):
    """A ``dict[str, np.ndarray]`` in an uncompressed ``.npz`` file, loaded without pickle.

    With ``reuse_identical: true`` (versioned, local files) a version holding the same arrays as the
    newest one (``arrays_sha256``) is a hard link to it instead of another copy: every run still has
    its own version of the data (its lineage, ``--load-versions``), at no extra disk. Each version's
    digest, and the version it links to, are written beside it in ``<file>.sha256.json``.

    Example catalog entry::

        train_split:
          type: cifar_kedro.datasets.NpzDataset
          filepath: data/05_model_input/train_split.npz
          versioned: true
          reuse_identical: true
    """

    def __init__(self, *, reuse_identical: bool = False, **kwargs):
        super().__init__(**kwargs)
        self._reuse_identical = reuse_identical

    def load(self) -> dict[str, np.ndarray]:
        with self._local_load_path() as path, np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}

    def save(self, data: dict[str, np.ndarray]) -> None:
        if not isinstance(data, dict) or not all(isinstance(v, np.ndarray) for v in data.values()):
            raise DatasetError(f"{self._filepath}: NpzDataset saves a dict of NumPy arrays, got {type(data).__name__}.")
        digest = arrays_sha256(data)
        same = self._newest_with(digest) if self._reuse_identical and self._version and self._protocol == "file" else None
        target = Path(get_filepath_str(self._get_save_path(), self._protocol))
        if same is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(same, target)  # one step: the version appears whole or not at all
            logger.info("%s: the same arrays as version %s (SHA-256 %s…): linked to it, not copied.",
                        self._filepath.name, same.parent.name, digest[:12])
        else:
            with self._local_save_path(".npz") as tmp, open(tmp, "wb") as file:
                np.savez(file, **data)
        if self._version:
            record = {"sha256": digest, "same_as": None if same is None else same.parent.name}
            saved = get_filepath_str(self._get_versioned_path(self.resolve_save_version()), self._protocol)
            self._fs.pipe_file(saved + DIGEST_SUFFIX, json.dumps(record).encode())

    def _newest_with(self, digest: str) -> Path | None:
        """The newest saved version, as a local path, if its recorded digest is ``digest``."""
        saved = sorted(self._fs.glob(get_filepath_str(self._filepath / "*" / self._filepath.name, self._protocol)))
        if not saved or not self._fs.exists(saved[-1] + DIGEST_SUFFIX):
            return None
        recorded = json.loads(self._fs.cat_file(saved[-1] + DIGEST_SUFFIX))
        return Path(saved[-1]) if recorded.get("sha256") == digest else None


DIGEST_SUFFIX = ".sha256.json"  # beside each NpzDataset version: its arrays' digest


class KerasModelDataset(_VersionedFileDataset):
    """A Keras 3 model in the native ``.keras`` format, on whatever Keras backend is active.

    ``safe_mode`` (default true) refuses to deserialize arbitrary Python code such as lambdas;
    the project's custom layers are registered with ``keras.saving.register_keras_serializable``.
    """

    def __init__(self, *, filepath: str, safe_mode: bool = True, version: Version | None = None,
                 credentials: dict | None = None, fs_args: dict | None = None, metadata: dict | None = None):
        if not filepath.endswith(".keras"):
            raise DatasetError(f"KerasModelDataset filepath must end in '.keras', got '{filepath}'.")
        super().__init__(filepath=filepath, version=version, credentials=credentials, fs_args=fs_args,
                         metadata=metadata)
        self._safe_mode = safe_mode

    def load(self) -> Any:
        import keras

        with self._local_load_path() as path:
            return keras.saving.load_model(path, safe_mode=self._safe_mode)

    def save(self, model: Any) -> None:
        with self._local_save_path(".keras") as tmp:
            model.save(tmp)

    def _describe(self) -> dict[str, Any]:
        return {**super()._describe(), "safe_mode": self._safe_mode}


@contextmanager
def _local_folder(protocol: str, path: str, fs: fsspec.AbstractFileSystem) -> Iterator[Path]:
    """A folder as a local path: the folder itself, or a temporary copy of a remote one."""
    if protocol == "file":
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="cifar-kedro-") as folder:
        local = Path(folder) / PurePosixPath(path.rstrip("/")).name
        fs.get(path.rstrip("/") + "/", str(local), recursive=True)
        yield local


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
                 synthetic: dict[str, Any] | None = None, credentials: dict | None = None,
                 fs_args: dict | None = None, metadata: dict | None = None):
        if source not in ("download", "synthetic"):
            raise DatasetError(f"CIFAR10BatchesDataset 'source' must be 'download' or 'synthetic', got '{source}'.")
        self._protocol, self._bare_path, self._fs = filesystem(path, credentials, fs_args)
        self._path = path
        self._source = source
        self._url = url
        self._md5 = md5
        self._timeout = timeout
        self._synthetic = dict(synthetic or {})
        self.metadata = metadata

    def load(self) -> dict[str, Any]:
        if not self._fs.exists(self._bare_path):
            self._fill()
        with _local_folder(self._protocol, self._bare_path, self._fs) as folder:
            return {**cifar10.load(folder), "source": self._source}

    def _fill(self) -> None:
        """Get the batches once: into the folder itself, or into a local folder then uploaded."""
        if self._protocol == "file":
            self._write(Path(self._bare_path))
            return
        with tempfile.TemporaryDirectory(prefix="cifar-kedro-") as folder:
            local = Path(folder) / "cifar-10-batches-py"
            self._write(local)
            self._fs.put(f"{local}/", self._bare_path, recursive=True)
        self._fs.invalidate_cache(self._bare_path)

    def _write(self, folder: Path) -> None:
        if self._source == "download":
            download.download_and_extract(folder, url=self._url, md5=self._md5, timeout=self._timeout)
        else:
            synthetic.write_synthetic_cifar10(folder, **self._synthetic)

    def save(self, data: Any) -> None:
        raise DatasetError(f"{self._path} holds the original CIFAR-10 batches and is read only.")

    def _exists(self) -> bool:
        return self._fs.exists(self._bare_path)

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
                 workers: int | None = None, credentials: dict | None = None, fs_args: dict | None = None,
                 metadata: dict | None = None):
        if int(image_size) < 8:
            raise DatasetError(f"ImageFolderDataset image_size must be at least 8 pixels, got {image_size}.")
        self._protocol, self._bare_path, self._fs = filesystem(path, credentials, fs_args)
        self._path = path
        self._image_size = int(image_size)
        self._crop = bool(crop)
        self._skip_unreadable = bool(skip_unreadable)
        self._workers = workers
        self.metadata = metadata

    def load(self) -> dict[str, Any]:
        with _local_folder(self._protocol, self._bare_path, self._fs) as folder:
            try:
                source = image_folder.load(folder, image_size=self._image_size, crop=self._crop,
                                           skip_unreadable=self._skip_unreadable, workers=self._workers)
            except image_folder.ImageFolderError as error:
                raise DatasetError(str(error).replace(str(folder), self._path.rstrip("/"))) from error
        for entry in source["unreadable"]:  # name files where they are, not in the temporary copy
            entry["path"] = entry["path"].replace(str(folder), self._path.rstrip("/"), 1)
        return {**source, "source": "image_folder"}

    def save(self, data: Any) -> None:
        raise DatasetError(f"{self._path} holds your source images and is read only.")

    def _exists(self) -> bool:
        return self._fs.isdir(self._bare_path)

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "image_size": self._image_size, "crop": self._crop,
                "skip_unreadable": self._skip_unreadable}
