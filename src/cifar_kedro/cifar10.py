"""CIFAR-10 in its original "python version" format: safe reading, exact writing, download, synthetic data.

The format
----------
The official archive (``ARCHIVE_URL``, ``ARCHIVE_SIZE`` bytes, MD5 ``ARCHIVE_MD5``) unpacks to the folder
``cifar-10-batches-py/`` holding ``data_batch_1`` … ``data_batch_5`` (training), ``test_batch``,
``batches.meta`` and ``readme.html``. Every batch is a pickle written by **Python 2** with protocol 2: a
dict whose keys and strings are Python-2 ``str`` (``pickle.load(f, encoding="bytes")`` gives ``bytes``)::

    {b"batch_label": b"training batch 1 of 5",
     b"labels":      [6, 9, 9, 4, ...],              # 10,000 Python ints in 0..9
     b"data":        uint8 ndarray (10000, 3072),    # rebuilt via numpy.core.multiarray._reconstruct
     b"filenames":   [b"leptodactylus_pentadactylus_s_000004.png", ...]}

Each ``data`` row is one 32×32 image as three planes R(1024) G(1024) B(1024), each plane row-major, so
``rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)`` gives NHWC images. ``batches.meta`` holds
``{b"num_cases_per_batch": 10000, b"label_names": [b"airplane", ...], b"num_vis": 3072}``. The test
batch holds exactly 1,000 images per class; the training batches 5,000 per class in all, not balanced
within a batch.

What this module does
---------------------
* ``read_batches`` / ``read_batch`` / ``read_meta`` read and validate the files. Unpickling runs code the
  file names, so a restricted unpickler allows only the globals a CIFAR batch needs; anything else is
  refused before it runs. Batches re-saved by Python 3 (``str`` keys, ``_codecs.encode`` for bytes)
  load too.
* ``write_batch`` / ``write_meta`` write files byte-for-byte in the Python-2 style (short and long
  binary strings, the ``numpy.core.multiarray`` global), which NumPy 2's own pickler cannot produce.
* ``download_and_extract`` fetches the archive once, checks its MD5 before unpacking, unpacks safely
  and moves the folder into place in one rename.
* ``write_synthetic_cifar10`` writes a small, deterministic, learnable stand-in in the same format.
"""

from __future__ import annotations

import codecs
import hashlib
import http.client
import io
import logging
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import numpy as np

logger = logging.getLogger(__name__)

ARCHIVE_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
ARCHIVE_MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_SIZE = 170_498_071
ARCHIVE_NAME = "cifar-10-python.tar.gz"
FOLDER_NAME = "cifar-10-batches-py"
TRAIN_FILES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5")
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
README_FILE = "readme.html"
ALL_FILES = (*TRAIN_FILES, TEST_FILE, META_FILE)
LABEL_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
NUM_CLASSES = len(LABEL_NAMES)
IMAGE_SIZE = 32
CHANNELS = 3
IMAGE_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, CHANNELS)
ROW_LENGTH = IMAGE_SIZE * IMAGE_SIZE * CHANNELS  # 3072, also the meta's "num_vis"
PICKLE_PROTOCOL = 2

_STRING_ENCODING = "latin1"  # Python-2 str <-> bytes, as pickle's encoding="latin1" and _codecs.encode do


# --------------------------------------------------------------------------------------------- errors


class CIFAR10Error(Exception):
    """Base class of the errors this module raises."""


class CIFAR10FormatError(CIFAR10Error, ValueError):
    """A file is missing, is not a CIFAR-10 batch, or holds values outside the format."""


class CIFAR10DownloadError(CIFAR10Error, RuntimeError):
    """The archive could not be downloaded, failed its MD5 check, or could not be unpacked safely."""


def _format_error(path: Path, problem: str) -> CIFAR10FormatError:
    """An error naming ``path``, the problem, and how to get a good copy of the file."""
    return CIFAR10FormatError(
        f"{path}: {problem}. Delete the folder {path.parent} to fetch it again, or replace the file "
        f"with the original from the official archive {ARCHIVE_URL}."
    )


# -------------------------------------------------------------------------------------- safe unpickling


def _latin1_encode(text: str, encoding: str) -> bytes:
    """``_codecs.encode`` as Python 3's protocol-2 pickles of ``bytes`` use it: latin-1 only."""
    if codecs.lookup(encoding).name != codecs.lookup(_STRING_ENCODING).name:
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return codecs.encode(text, _STRING_ENCODING)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """The only globals a CIFAR-10 batch may name, under NumPy 1 (``numpy.core``) and 2 (``numpy._core``)."""
    reconstruct = np.empty(0, np.uint8).__reduce__()[0]
    scalar = np.uint8(0).__reduce__()[0]
    allowed: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = reconstruct
        allowed[(module, "scalar")] = scalar
    return allowed


_ALLOWED_GLOBALS = _allowed_globals()


class _SafeUnpickler(pickle.Unpickler):
    """An unpickler that resolves only ``_ALLOWED_GLOBALS`` and refuses every other global."""

    def __init__(self, file: BinaryIO, path: Path):
        super().__init__(file, encoding="bytes")
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _format_error(
                self._path, f"refused to unpickle the global '{module}.{name}'; a CIFAR-10 batch only "
                "names NumPy's array reconstruction, so this file is not one (and its code was not run)"
            ) from None


# Everything a damaged or foreign pickle can raise while loading (our own refusals pass through).
_UNPICKLING_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
                      KeyError, OverflowError, MemoryError)


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise _format_error(path, "the file is missing") from None
    except OSError as exc:
        raise _format_error(path, f"the file could not be read ({exc})") from exc


def _unpickle_dict(path: Path, raw: bytes) -> dict[str, Any]:
    """Safely unpickle ``raw`` (the bytes of ``path``) into a dict with ``str`` keys."""
    try:
        obj = _SafeUnpickler(io.BytesIO(raw), path).load()
    except CIFAR10FormatError:
        raise
    except _UNPICKLING_ERRORS as exc:
        raise _format_error(path, f"not a readable pickle, truncated or corrupt ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict):
        raise _format_error(path, f"expected a pickled dict, found {type(obj).__name__}")
    return {_to_str(key): value for key, value in obj.items()}


def _to_str(value: Any) -> Any:
    """Python-2 strings arrive as ``bytes``; return them as ``str``, anything else unchanged."""
    return value.decode(_STRING_ENCODING) if isinstance(value, bytes) else value


def _require_keys(path: Path, obj: dict[str, Any], keys: Sequence[str]) -> None:
    missing = [key for key in keys if key not in obj]
    if missing:
        raise _format_error(path, f"missing key(s) {', '.join(missing)} (found: {', '.join(map(str, obj)) or 'none'})")


# ------------------------------------------------------------------------------------------ reading


def _batch_problem(data: Any, labels: np.ndarray) -> str | None:
    """What is wrong with a batch's ``data`` and ``labels``, or ``None`` when they fit the format."""
    if not isinstance(data, np.ndarray):
        return f"'data' must be a NumPy array, found {type(data).__name__}"
    if data.dtype != np.uint8:
        return f"'data' must have dtype uint8, found {data.dtype}"
    if data.ndim != 2 or data.shape[1] != ROW_LENGTH:
        return f"'data' must have shape (N, {ROW_LENGTH}), found {data.shape}"
    if data.shape[0] == 0:
        return "'data' holds no images"
    if labels.ndim != 1 or not (labels.size == 0 or np.issubdtype(labels.dtype, np.integer)):
        return f"'labels' must be a flat list of integers, found {labels.dtype} with shape {labels.shape}"
    if labels.size != data.shape[0]:
        return f"'labels' has {labels.size} entries but 'data' has {data.shape[0]} rows"
    bad = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
    if bad.size:
        return f"label {labels[bad[0]]} at index {bad[0]} is outside 0..{NUM_CLASSES - 1}"
    return None


def _parse_batch(path: Path, obj: dict[str, Any]) -> dict[str, np.ndarray]:
    _require_keys(path, obj, ("data", "labels"))
    data, labels = obj["data"], np.asarray(obj["labels"])
    problem = _batch_problem(data, labels)
    if problem:
        raise _format_error(path, problem)
    return {"data": np.ascontiguousarray(data), "labels": labels.astype(np.int64)}


def _parse_meta(path: Path, obj: dict[str, Any]) -> list[str]:
    _require_keys(path, obj, ("label_names",))
    names = obj["label_names"]
    if not isinstance(names, (list, tuple)) or len(names) != NUM_CLASSES:
        count = len(names) if isinstance(names, (list, tuple)) else type(names).__name__
        raise _format_error(path, f"'label_names' must list {NUM_CLASSES} names, found {count}")
    decoded = [_to_str(name) for name in names]
    if not all(isinstance(name, str) and name for name in decoded):
        raise _format_error(path, f"'label_names' must be non-empty strings, found {decoded}")
    return decoded


def read_batch(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read one batch file: ``{"data": uint8 (N, 3072), "labels": int64 (N,)}``, validated."""
    path = Path(path).resolve()
    return _parse_batch(path, _unpickle_dict(path, _read_file(path)))


def read_meta(path: str | os.PathLike) -> list[str]:
    """Read ``batches.meta``: the 10 label names, in label order."""
    path = Path(path).resolve()
    return _parse_meta(path, _unpickle_dict(path, _read_file(path)))


def read_batches(folder: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a whole ``cifar-10-batches-py`` folder.

    Returns ``{"batches": {file_name: {"data", "labels"}} for the 5 training batches and the test batch,
    "label_names": [...], "checksums": {file_name: MD5 hex digest of the file} for all 7 files}``.
    """
    folder = Path(folder).resolve()
    missing = [name for name in ALL_FILES if not (folder / name).is_file()]
    if missing:
        raise CIFAR10FormatError(
            f"{folder}: missing {', '.join(missing)}. Delete the folder {folder} to fetch it again, or put "
            f"the files {', '.join(ALL_FILES)} from the official archive {ARCHIVE_URL} in it."
        )
    batches: dict[str, dict[str, np.ndarray]] = {}
    checksums: dict[str, str] = {}
    label_names: list[str] = []
    for name in ALL_FILES:
        path = folder / name
        raw = _read_file(path)
        checksums[name] = hashlib.md5(raw, usedforsecurity=False).hexdigest()
        obj = _unpickle_dict(path, raw)
        if name == META_FILE:
            label_names = _parse_meta(path, obj)
        else:
            batches[name] = _parse_batch(path, obj)
    return {"batches": batches, "label_names": label_names, "checksums": checksums}


# ----------------------------------------------------------------------------------- image layout


def images_to_rows(images: np.ndarray) -> np.ndarray:
    """NHWC uint8 images (N, 32, 32, 3) → CIFAR rows (N, 3072): R plane, G plane, B plane, row-major."""
    if images.dtype != np.uint8 or images.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"images must be uint8 with shape (N, {', '.join(map(str, IMAGE_SHAPE))}), "
                         f"found {images.dtype} {images.shape}")
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(-1, ROW_LENGTH)


def rows_to_images(rows: np.ndarray) -> np.ndarray:
    """CIFAR rows (N, 3072) → NHWC images (N, 32, 32, 3), as a view of ``rows``."""
    if rows.ndim != 2 or rows.shape[1] != ROW_LENGTH:
        raise ValueError(f"rows must have shape (N, {ROW_LENGTH}), found {rows.shape}")
    return rows.reshape(-1, CHANNELS, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 2, 3, 1)


# ---------------------------------------------------------------------------- writing, Python-2 style

_SHORT_STRING_MAX = 0xFF
_BININT1_MAX = 0xFF
_BININT2_MAX = 0xFFFF
_BININT_RANGE = (-(2**31), 2**31 - 1)
_ARRAY_STATE_VERSION = 1  # ndarray.__setstate__ (version, shape, dtype, is_fortran, raw bytes)
_DTYPE_STATE = (3, b"|", None, None, None, -1, -1, 0)  # uint8's dtype.__setstate__ as Python 2 wrote it


def _global(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode("ascii")


def _emit(out: bytearray, obj: Any) -> None:
    """Append the protocol-2 opcodes Python 2's cPickle wrote for ``obj`` (the types a batch holds)."""
    if obj is None:
        out += pickle.NONE
    elif isinstance(obj, bool):
        out += pickle.NEWTRUE if obj else pickle.NEWFALSE
    elif isinstance(obj, int):
        _emit_int(out, obj)
    elif isinstance(obj, bytes):
        _emit_string(out, obj)
    elif isinstance(obj, tuple):
        _emit_tuple(out, obj)
    elif isinstance(obj, list):
        out += pickle.EMPTY_LIST + pickle.MARK
        for item in obj:
            _emit(out, item)
        out += pickle.APPENDS
    elif isinstance(obj, dict):
        out += pickle.EMPTY_DICT + pickle.MARK
        for key, value in obj.items():
            _emit(out, key)
            _emit(out, value)
        out += pickle.SETITEMS
    elif isinstance(obj, np.ndarray):
        _emit_uint8_array(out, obj)
    else:
        raise TypeError(f"cannot write {type(obj).__name__} in a CIFAR-10 batch")


def _emit_int(out: bytearray, value: int) -> None:
    if 0 <= value <= _BININT1_MAX:
        out += pickle.BININT1 + value.to_bytes(1, "little")
    elif 0 <= value <= _BININT2_MAX:
        out += pickle.BININT2 + value.to_bytes(2, "little")
    elif _BININT_RANGE[0] <= value <= _BININT_RANGE[1]:
        out += pickle.BININT + value.to_bytes(4, "little", signed=True)
    else:
        raise ValueError(f"integer {value} is out of range for a CIFAR-10 batch")


def _emit_string(out: bytearray, value: bytes) -> None:
    """A Python-2 ``str``: SHORT_BINSTRING up to 255 bytes, BINSTRING beyond (not ``_codecs.encode``)."""
    if len(value) <= _SHORT_STRING_MAX:
        out += pickle.SHORT_BINSTRING + len(value).to_bytes(1, "little")
    else:
        out += pickle.BINSTRING + len(value).to_bytes(4, "little")
    out += value


_TUPLE_OPCODES = {1: pickle.TUPLE1, 2: pickle.TUPLE2, 3: pickle.TUPLE3}


def _emit_tuple(out: bytearray, items: tuple) -> None:
    if not items:
        out += pickle.EMPTY_TUPLE
        return
    opcode = _TUPLE_OPCODES.get(len(items))
    if opcode is None:
        out += pickle.MARK
    for item in items:
        _emit(out, item)
    out += opcode or pickle.TUPLE


def _emit_uint8_array(out: bytearray, array: np.ndarray) -> None:
    """``numpy.core.multiarray._reconstruct(ndarray, (0,), 'b')`` then ``__setstate__``, as NumPy 1 wrote it."""
    if array.dtype != np.uint8:
        raise TypeError(f"CIFAR-10 batches hold uint8 arrays, got {array.dtype}")
    out += _global("numpy.core.multiarray", "_reconstruct") + _global("numpy", "ndarray")
    _emit(out, (0,))
    _emit(out, b"b")
    out += pickle.TUPLE3 + pickle.REDUCE + pickle.MARK
    _emit(out, _ARRAY_STATE_VERSION)
    _emit(out, tuple(array.shape))
    out += _global("numpy", "dtype")
    _emit(out, (b"u1", 0, 1))
    out += pickle.REDUCE
    _emit(out, _DTYPE_STATE)
    out += pickle.BUILD
    _emit(out, False)
    _emit(out, np.ascontiguousarray(array).tobytes())
    out += pickle.TUPLE + pickle.BUILD


def _dumps_py2(obj: dict[bytes, Any]) -> bytes:
    out = bytearray(pickle.PROTO + PICKLE_PROTOCOL.to_bytes(1, "little"))
    _emit(out, obj)
    out += pickle.STOP
    return bytes(out)


def _as_bytes(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode(_STRING_ENCODING)


def write_batch(path: str | os.PathLike, data: np.ndarray, labels: Sequence[int] | np.ndarray,
                batch_label: str, filenames: Sequence[str] | None = None) -> None:
    """Write one batch exactly as the official files are (Python-2 pickle, protocol 2, byte-string keys).

    ``data`` is uint8 (N, 3072) in the CIFAR row layout (see ``images_to_rows``); ``labels`` N ints in
    0..9; ``filenames`` N names (default ``image_00000.png`` …).
    """
    label_array = np.asarray(labels)
    problem = _batch_problem(data, label_array)
    if problem:
        raise ValueError(f"{path}: cannot write a CIFAR-10 batch: {problem}")
    names = filenames if filenames is not None else [f"image_{index:05d}.png" for index in range(data.shape[0])]
    if len(names) != data.shape[0]:
        raise ValueError(f"{path}: {len(names)} filenames for {data.shape[0]} images")
    Path(path).write_bytes(_dumps_py2({
        b"batch_label": _as_bytes(batch_label),
        b"labels": label_array.tolist(),
        b"data": data,
        b"filenames": [_as_bytes(name) for name in names],
    }))


def write_meta(path: str | os.PathLike, label_names: Sequence[str], num_cases_per_batch: int) -> None:
    """Write ``batches.meta`` exactly as the official one is."""
    if len(label_names) != NUM_CLASSES:
        raise ValueError(f"{path}: expected {NUM_CLASSES} label names, got {len(label_names)}")
    Path(path).write_bytes(_dumps_py2({
        b"num_cases_per_batch": int(num_cases_per_batch),
        b"label_names": [_as_bytes(name) for name in label_names],
        b"num_vis": ROW_LENGTH,
    }))


# ------------------------------------------------------------------------------------------ download

_DOWNLOAD_CHUNK = 1 << 20
_PROGRESS_STEP = 0.1  # log every 10 %
_BYTES_PER_MB = 1e6
_NETWORK_ERRORS = (urllib.error.URLError, http.client.HTTPException, OSError, ValueError)
_ARCHIVE_ERRORS = (tarfile.TarError, EOFError, OSError)
_TAR_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


def _file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as file:
        while chunk := file.read(_DOWNLOAD_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _offline_error(url: str, folder: Path, archive: Path, md5: str, reason: Any) -> CIFAR10DownloadError:
    return CIFAR10DownloadError(
        f"CIFAR-10 could not be downloaded from {url} ({reason}). Without network, place the folder "
        f"'{FOLDER_NAME}/' at {folder}, or the archive at {archive} (MD5 {md5}), by hand."
    )


def _stream_to_file(response: Any, target: Path, url: str) -> str:
    """Copy the HTTP body to ``target`` with progress logs; return its MD5."""
    total = int(response.headers.get("Content-Length") or 0)
    digest = hashlib.md5(usedforsecurity=False)
    received, next_report = 0, _PROGRESS_STEP
    with open(target, "wb") as file:
        while chunk := response.read(_DOWNLOAD_CHUNK):
            file.write(chunk)
            digest.update(chunk)
            received += len(chunk)
            if total and received >= next_report * total:
                logger.info("Downloading %s: %3.0f%% (%.1f of %.1f MB)", url, 100 * received / total,
                            received / _BYTES_PER_MB, total / _BYTES_PER_MB)
                next_report = (received / total // _PROGRESS_STEP + 1) * _PROGRESS_STEP
    logger.info("Downloaded %.1f MB from %s", received / _BYTES_PER_MB, url)
    return digest.hexdigest()


def _download(url: str, archive: Path, folder: Path, md5: str, timeout: float) -> None:
    """Download ``url`` to ``archive`` through a ``.part`` file, renamed only once its MD5 matches."""
    part = archive.with_name(archive.name + ".part")
    logger.info("Downloading CIFAR-10 from %s to %s", url, archive)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            archive.parent.mkdir(parents=True, exist_ok=True)
            got = _stream_to_file(response, part, url)
        if got != md5:
            raise CIFAR10DownloadError(
                f"The file downloaded from {url} has MD5 {got}, expected {md5}; it was deleted. Try again, "
                f"or place the archive at {archive} by hand."
            )
        os.replace(part, archive)
    except _NETWORK_ERRORS as exc:
        raise _offline_error(url, folder, archive, md5, getattr(exc, "reason", exc)) from exc
    finally:
        part.unlink(missing_ok=True)


def _check_member(member: tarfile.TarInfo, root: Path, archive: Path) -> None:
    """Refuse links, special files, absolute paths, ``..`` and anything resolving outside ``root``."""
    name = PurePosixPath(member.name)
    if member.issym() or member.islnk():
        problem = f"is a link to '{member.linkname}'"
    elif not (member.isfile() or member.isdir()):
        problem = "is not a regular file or folder"
    elif name.is_absolute() or ".." in name.parts:
        problem = "has an absolute path or '..'"
    elif not (root / name).resolve().is_relative_to(root.resolve()):
        problem = "would be written outside the target folder"
    else:
        return
    raise CIFAR10DownloadError(
        f"{archive}: refused to unpack the member '{member.name}', which {problem}. This is not the official "
        f"archive: delete it and download again, or replace it with the original from {ARCHIVE_URL}."
    )


def _extract(archive: Path, folder: Path) -> None:
    """Unpack ``archive`` in a temporary folder beside ``folder`` and move its ``FOLDER_NAME`` into place."""
    staging = Path(tempfile.mkdtemp(prefix=f".{FOLDER_NAME}.", suffix=".extracting", dir=folder.parent))
    try:
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for member in tar:
                    _check_member(member, staging, archive)
                    tar.extract(member, staging, **_TAR_FILTER)
        except _ARCHIVE_ERRORS as exc:
            raise CIFAR10DownloadError(
                f"{archive}: could not be unpacked ({type(exc).__name__}: {exc}). Delete it to download it "
                f"again, or replace it with the original from {ARCHIVE_URL}."
            ) from exc
        unpacked = staging / FOLDER_NAME
        missing = [name for name in ALL_FILES if not (unpacked / name).is_file()]
        if missing:
            raise CIFAR10DownloadError(
                f"{archive}: has no {', '.join(f'{FOLDER_NAME}/{name}' for name in missing)}. Delete it to "
                f"download it again, or replace it with the original from {ARCHIVE_URL}."
            )
        unpacked.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download_and_extract(folder: str | os.PathLike, *, url: str = ARCHIVE_URL, md5: str = ARCHIVE_MD5,
                         timeout: float = 10.0) -> Path:
    """Make sure ``folder`` (a ``…/cifar-10-batches-py`` path) holds the official batches; return it.

    The archive is kept as ``folder.parent / "cifar-10-python.tar.gz"`` and reused when its MD5 matches,
    so offline users can place it there by hand. A download goes to a ``.part`` file, is checked against
    ``md5`` before anything is unpacked, and the folder appears in one rename, never partially.
    """
    folder = Path(folder).resolve()
    if folder.exists():
        return folder
    archive = folder.parent / ARCHIVE_NAME
    if archive.is_file():
        got = _file_md5(archive)
        if got != md5:
            raise CIFAR10DownloadError(
                f"{archive}: MD5 {got}, expected {md5}, so it is not the official archive or is incomplete. "
                f"Delete it to download it again, or replace it with the original from {url}."
            )
        logger.info("Using the CIFAR-10 archive already at %s", archive)
    else:
        _download(url, archive, folder, md5, timeout)
    _extract(archive, folder)
    logger.info("CIFAR-10 unpacked to %s", folder)
    return folder


# ------------------------------------------------------------------------------------ synthetic data

# Each class: a shape or texture and its own (foreground, background) palette. Palettes come in hue
# groups (blue: airplane/ship; red: automobile/truck; green: bird/deer/frog; brown: cat/dog/horse) and are
# jittered per image, so colour narrows a class down and the shape settles it. Measured with seed 0:
# a linear model on colour statistics alone reaches ~90 %, a small CNN ~70 % after 2 epochs on 4,000 images.
_SYNTHETIC_CLASSES: tuple[tuple[str, tuple[int, int, int], tuple[int, int, int]], ...] = (
    ("cross", (210, 210, 220), (120, 165, 215)),             # airplane   (blue group)
    ("square", (200, 40, 45), (125, 125, 130)),              # automobile (red group)
    ("triangle", (150, 105, 60), (95, 150, 85)),             # bird       (green group)
    ("checkerboard", (215, 145, 85), (190, 170, 140)),       # cat        (brown group)
    ("vertical_stripes", (175, 125, 75), (75, 125, 55)),     # deer       (green group)
    ("disc", (150, 100, 60), (205, 185, 155)),               # dog        (brown group)
    ("ring", (85, 175, 65), (65, 90, 45)),                   # frog       (green group)
    ("diagonal_stripes", (105, 65, 35), (135, 145, 95)),     # horse      (brown group)
    ("horizontal_stripes", (70, 75, 90), (50, 100, 170)),    # ship       (blue group)
    ("concentric_rings", (215, 95, 40), (170, 170, 175)),    # truck      (red group)
)
_CENTRE_RANGE = 0.35  # object centre, in image half-widths from the middle
_SCALE_RANGE = (0.45, 0.85)  # object half-size, in image half-widths
_SHEAR_RANGE = 0.25
_ASPECT_RANGE = (0.8, 1.25)
_FREQUENCY_RANGE = (1.5, 2.5)  # texture cycles per object half-size
_EDGE_SHARPNESS = 6.0  # 1 / edge width, in object half-sizes
_TEXTURE_SHARPNESS = 4.0
_RING_RADIUS, _RING_HALF_WIDTH = 0.7, 0.25
_SQUARE_HALF_SIZE = 0.85
_CROSS_HALF_WIDTH = 0.3
_TRIANGLE_BASE, _TRIANGLE_SLOPE = 0.8, 0.55
_COLOUR_JITTER = 22.0  # standard deviation per channel, in pixel values
_BRIGHTNESS_RANGE = (0.7, 1.3)
_NOISE_AMPLITUDE = 24.0  # uniform pixel noise in ±24 (standard deviation ≈ 14); uniform is 5× faster than normal
_PIXEL_MAX = 255
_GENERATION_CHUNK = 2000  # images generated at once (bounds memory)
_SYNTHETIC_README = (
    "<html><body><p>Synthetic stand-in for CIFAR-10 in the original python format, written by "
    "cifar_kedro.cifar10.write_synthetic_cifar10(images_per_batch={images_per_batch}, "
    "test_images={test_images}, seed={seed}). Not the real data set: see {url}.</p></body></html>\n"
)


def _soft(distance: np.ndarray, sharpness: float = _EDGE_SHARPNESS) -> np.ndarray:
    """Inside-ness in [0, 1] from a signed distance (positive inside), with a soft edge."""
    return np.clip(distance * sharpness + 0.5, 0.0, 1.0)


def _triangle_wave(x: np.ndarray) -> np.ndarray:
    """Periodic in ``x`` with period 1, in [-0.5, 0.5] (arithmetic only, so exactly reproducible)."""
    return np.abs(x - np.floor(x) - 0.5) - 0.25


def _stripes(u: np.ndarray, v: np.ndarray, freq: np.ndarray, phase: np.ndarray) -> np.ndarray:
    return _soft(_triangle_wave(u * freq + phase), _TEXTURE_SHARPNESS)


def _checkerboard(u: np.ndarray, v: np.ndarray, freq: np.ndarray, phase: np.ndarray) -> np.ndarray:
    return _soft(_triangle_wave(u * freq / 2 + phase) * _triangle_wave(v * freq / 2 + phase) * 4, _TEXTURE_SHARPNESS)


def _radius(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.sqrt(u * u + v * v)


_PATTERNS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "horizontal_stripes": lambda u, v, f, p: _stripes(v, u, f, p),
    "vertical_stripes": _stripes,
    "diagonal_stripes": lambda u, v, f, p: _stripes((u + v) / np.sqrt(2), v, f, p),
    "checkerboard": _checkerboard,
    "concentric_rings": lambda u, v, f, p: _stripes(_radius(u, v), v, f, p),
    "disc": lambda u, v, f, p: _soft(1 - _radius(u, v)),
    "ring": lambda u, v, f, p: _soft(_RING_HALF_WIDTH - np.abs(_radius(u, v) - _RING_RADIUS)),
    "square": lambda u, v, f, p: _soft(_SQUARE_HALF_SIZE - np.maximum(np.abs(u), np.abs(v))),
    "cross": lambda u, v, f, p: np.maximum(
        _soft(np.minimum(_CROSS_HALF_WIDTH - np.abs(u), 1 - np.abs(v))),
        _soft(np.minimum(_CROSS_HALF_WIDTH - np.abs(v), 1 - np.abs(u)))),
    "triangle": lambda u, v, f, p: _soft(np.minimum(_TRIANGLE_BASE - v, (v + 1) * _TRIANGLE_SLOPE - np.abs(u))),
}


def _object_coordinates(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-image coordinates (count, 32, 32) centred on a random object, scaled, sheared and stretched."""
    axis = (np.arange(IMAGE_SIZE, dtype=np.float32) + 0.5) / IMAGE_SIZE * 2 - 1
    rows, columns = np.meshgrid(axis, axis, indexing="ij")
    centre = rng.uniform(-_CENTRE_RANGE, _CENTRE_RANGE, (2, count, 1, 1)).astype(np.float32)
    scale = rng.uniform(*_SCALE_RANGE, (count, 1, 1)).astype(np.float32)
    shear = rng.uniform(-_SHEAR_RANGE, _SHEAR_RANGE, (count, 1, 1)).astype(np.float32)
    aspect = rng.uniform(*_ASPECT_RANGE, (count, 1, 1)).astype(np.float32)
    x = (columns - centre[0]) / scale
    y = (rows - centre[1]) / scale
    return (x + shear * y) * aspect, y / aspect


def _synthetic_images(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """NHWC uint8 images for ``labels``: each class's pattern in its palette, jittered and noisy."""
    count = labels.size
    u, v = _object_coordinates(rng, count)
    freq = rng.uniform(*_FREQUENCY_RANGE, (count, 1, 1)).astype(np.float32)
    phase = rng.uniform(0, 1, (count, 1, 1)).astype(np.float32)
    mask = np.empty((count, IMAGE_SIZE, IMAGE_SIZE), np.float32)
    for label, (pattern, _, _) in enumerate(_SYNTHETIC_CLASSES):
        rows = labels == label
        mask[rows] = _PATTERNS[pattern](u[rows], v[rows], freq[rows], phase[rows])
    palettes = np.array([[fg, bg] for _, fg, bg in _SYNTHETIC_CLASSES], np.float32)[labels]
    palettes += rng.normal(0, _COLOUR_JITTER, palettes.shape).astype(np.float32)
    palettes *= rng.uniform(*_BRIGHTNESS_RANGE, (count, 1, 1)).astype(np.float32)
    foreground, background = palettes[:, None, None, 0], palettes[:, None, None, 1]
    images = background + (foreground - background) * mask[..., None]
    noise = rng.random(images.shape, dtype=np.float32)
    noise -= np.float32(0.5)
    noise *= np.float32(2 * _NOISE_AMPLITUDE)
    images += noise
    np.rint(images, out=images)
    np.clip(images, 0, _PIXEL_MAX, out=images)
    return images.astype(np.uint8)


def _synthetic_rows(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    chunks = [_synthetic_images(rng, labels[start:start + _GENERATION_CHUNK])
              for start in range(0, labels.size, _GENERATION_CHUNK)]
    return images_to_rows(np.concatenate(chunks))


def _balanced_labels(rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` labels, as equal per class as ``count`` allows, in random order."""
    return rng.permutation(np.arange(count) % NUM_CLASSES)


def _synthetic_filenames(labels: np.ndarray, first_index: int) -> list[str]:
    return [f"synthetic_{LABEL_NAMES[label]}_s_{first_index + offset:06d}.png" for offset, label in enumerate(labels)]


def write_synthetic_cifar10(folder: str | os.PathLike, *, images_per_batch: int = 1000, test_images: int = 1000,
                            seed: int = 0) -> Path:
    """Write a synthetic, learnable CIFAR-10 stand-in to ``folder`` in exactly the official format.

    Ten classes, each a shape or texture (stripes of three orientations, checkerboard, concentric rings,
    disc, ring, square, cross, triangle) in its own palette, close in hue to look-alike classes, at a
    random position, scale, shear and brightness, with colour jitter and pixel noise. Training labels are
    balanced over the 5 batches together but not within one; the test batch is balanced. The same
    ``seed`` gives byte-identical files. Written in a temporary folder beside ``folder``, then renamed.
    """
    if images_per_batch < 1 or test_images < 1:
        raise ValueError("images_per_batch and test_images must be at least 1, "
                         f"got {images_per_batch} and {test_images}")
    folder = Path(folder).resolve()
    if folder.exists():
        raise FileExistsError(f"{folder} already exists; delete it to write a synthetic data set there.")
    folder.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    train_labels = _balanced_labels(rng, images_per_batch * len(TRAIN_FILES)).reshape(len(TRAIN_FILES), -1)
    test_labels = _balanced_labels(rng, test_images)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".writing", dir=folder.parent))
    try:
        for number, (name, labels) in enumerate(zip(TRAIN_FILES, train_labels), start=1):
            write_batch(staging / name, _synthetic_rows(rng, labels), labels,
                        f"training batch {number} of {len(TRAIN_FILES)}",
                        _synthetic_filenames(labels, (number - 1) * images_per_batch))
        write_batch(staging / TEST_FILE, _synthetic_rows(rng, test_labels), test_labels,
                    "testing batch 1 of 1", _synthetic_filenames(test_labels, 0))
        write_meta(staging / META_FILE, LABEL_NAMES, images_per_batch)
        (staging / README_FILE).write_text(_SYNTHETIC_README.format(
            images_per_batch=images_per_batch, test_images=test_images, seed=seed, url=ARCHIVE_URL))
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder
