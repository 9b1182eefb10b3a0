"""CIFAR-10 in its original "python version" format: safe reading and exact writing.

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

Getting the files is ``sources.download``; a synthetic stand-in in the same format is
``sources.synthetic``.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import os
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

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


def load(folder: str | os.PathLike) -> dict[str, Any]:
    """The batches of ``folder`` as a source (see ``cifar_kedro.sources``): NHWC images and labels of
    the five training batches together and of the test batch, the class names, each file's MD5."""
    raw = read_batches(folder)

    def split(names: Sequence[str]) -> dict[str, np.ndarray]:
        batches = [raw["batches"][name] for name in names]
        return {"images": np.concatenate([rows_to_images(b["data"]) for b in batches]),
                "labels": np.concatenate([b["labels"] for b in batches]).astype(np.int64)}

    return {"train": split(TRAIN_FILES), "test": split([TEST_FILE]), "class_names": list(raw["label_names"]),
            "checksums": raw["checksums"], "unreadable": []}


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
