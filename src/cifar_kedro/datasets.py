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
from kedro.io.core import VersionNotFoundError, get_filepath_str, get_protocol_and_path

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


DIGEST_SUFFIX = ".sha256.json"  # beside each NpzDataset version: its arrays' digest, the version it reuses


class NpzDataset(_VersionedFileDataset):
    """A ``dict[str, np.ndarray]`` in an uncompressed ``.npz`` file, loaded without pickle.

    With ``reuse_identical: true`` (versioned, local files) a save of the same arrays as the newest
    version (``arrays_sha256``) writes no second copy: this run's version is a hard link to that
    file. Every run still has a version of its own, so the lineage, ``--load-versions`` and the next
    node's load in the same run (the newest version: this one) work as with any versioned dataset, at
    no extra disk; the link appears in one step, and earlier versions are never written again. Beside
    each version, ``<file>.sha256.json`` holds its digest and, for a link, the version first written
    with those arrays (``same_as``); ``stored()`` reads it back for the data manifest. Where a link
    cannot be made (a filesystem without hard links) the version is a copy, as without the option.

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
        target = get_filepath_str(self._get_save_path(), self._protocol)
        same_as = self._link_to_same(digest, Path(target)) if self._reuse_identical and self._version \
            and self._protocol == "file" else None
        if same_as is None:
            with self._local_save_path(".npz") as tmp, open(tmp, "wb") as file:
                np.savez(file, **data)
        if self._version:
            self._write_record(target, {"sha256": digest, "same_as": same_as})

    def stored(self) -> dict[str, Any] | None:
        """How the version this dataset loads is stored: ``{"version", "sha256", "reused", "same_as"}``
        (``reused``: a link to version ``same_as``, the first written with these arrays); ``sha256``
        is None for a version saved without a record. None when unversioned or nothing is saved."""
        if not self._version:
            return None
        try:
            version = self.resolve_load_version()
        except VersionNotFoundError:
            return None
        record = self._record(get_filepath_str(self._get_versioned_path(version), self._protocol))
        same_as = record.get("same_as")
        return {"version": version, "sha256": record.get("sha256"), "reused": same_as is not None, "same_as": same_as}

    def _link_to_same(self, digest: str, target: Path) -> str | None:
        """Make ``target`` a hard link to the newest version when its recorded digest is ``digest``;
        the version first written with those arrays, or None (no match, or no link possible)."""
        saved = self.list_versions()  # newest first
        if not saved:
            return None
        record = self._record(saved[0])
        if record.get("sha256") != digest:
            return None
        newest = Path(saved[0])
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(newest, target)  # one step: the version appears whole or not at all
        except OSError as error:
            logger.warning("%s: could not link to version %s (%s): writing a copy.", self._filepath.name,
                           newest.parent.name, error)
            return None
        same_as = record.get("same_as") or newest.parent.name
        logger.info("%s: the same arrays as version %s (SHA-256 %s…): linked to it, not copied.",
                    self._filepath.name, same_as, digest[:12])
        return same_as

    def _record(self, version_path: str) -> dict[str, Any]:
        """The record beside a saved version; empty when there is none or it cannot be read."""
        try:
            record = json.loads(self._fs.cat_file(version_path + DIGEST_SUFFIX))
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    def _write_record(self, version_path: str, record: dict[str, Any]) -> None:
        content = json.dumps(record).encode()
        if self._protocol == "file":
            with atomic_path(Path(version_path + DIGEST_SUFFIX), ".json") as tmp:
                tmp.write_bytes(content)
        else:
            self._fs.pipe_file(version_path + DIGEST_SUFFIX, content)  # an object appears whole


class StoredVersionsDataset(AbstractDataset):
    """Read only: for each named versioned ``NpzDataset`` file, how its newest version is stored
    (``NpzDataset.stored``), e.g. ``{"train": {"version": "2026-…Z", "sha256": "…", "reused": true,
    "same_as": "2026-…Z"}}``; None for a file with no version. Loaded by a node downstream of the
    nodes that save those files, the newest is the version this run saved, and the next node loads:
    the data manifest takes it so that every run names the exact raw data and splits it made.

    Example catalog entry::

        stored_versions:
          type: cifar_kedro.datasets.StoredVersionsDataset
          filepaths:
            raw_batches: data/01_raw/raw_batches.npz
            train: data/05_model_input/train_split.npz
    """

    def __init__(self, *, filepaths: dict[str, str], credentials: dict | None = None, fs_args: dict | None = None,
                 metadata: dict | None = None):
        self._filepaths = dict(filepaths)
        self._credentials = credentials
        self._fs_args = fs_args
        self.metadata = metadata

    def load(self) -> dict[str, dict[str, Any] | None]:
        return {name: NpzDataset(filepath=path, version=Version(None, None), credentials=self._credentials,
                                 fs_args=self._fs_args).stored()
                for name, path in self._filepaths.items()}

    def save(self, data: Any) -> None:
        raise DatasetError("StoredVersionsDataset is read only: it reports how NpzDataset versions are stored.")

    def _describe(self) -> dict[str, Any]:
        return {"filepaths": self._filepaths}


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
