"""Tests of cifar_kedro.sources.cifar10: the exact file format, safe reading, download, synthetic data.

Reference batches are assembled opcode by opcode here, independently of ``write_batch``, in the style of
the official files (Python-2 pickle, protocol 2, byte-string keys, ``numpy.core.multiarray``).
"""

from __future__ import annotations

import builtins
import hashlib
import io
import os
import pickle
import pickletools
import socket
import struct
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from cifar_kedro.sources import cifar10, download, synthetic
from cifar_kedro.sources.cifar10 import CIFAR10FormatError
from cifar_kedro.sources.download import CIFAR10DownloadError

ROWS = 12  # images in the small hand-made batches
SMALL = {"images_per_batch": 20, "test_images": 20}  # a tiny synthetic data set
LEARNABLE = {"images_per_batch": 400, "test_images": 1000}
CHANCE_PLUS = 0.5  # required test accuracy of a linear model on the synthetic data (chance: 0.1)
BLOCK = 8  # down-sampling block for that linear model: 4×4×3 = 48 features
SPECTRUM_ROWS, SPECTRUM_COLUMNS, SPECTRUM_POOL = 16, 8, 2  # low frequencies kept, pooled 2×2: 32 features
OFFLINE_SECONDS = 5.0


# ------------------------------------------------------------------------------------------- helpers


def _random_batch(seed: int = 0, rows: int = ROWS) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (rows, cifar10.ROW_LENGTH), dtype=np.uint8)
    return data, [int(label) for label in rng.integers(0, cifar10.NUM_CLASSES, rows)]


def _py2_string(value: bytes) -> bytes:
    """A Python-2 ``str`` as cPickle wrote it: SHORT_BINSTRING up to 255 bytes, else BINSTRING."""
    if len(value) < 256:
        return b"U" + bytes([len(value)]) + value
    return b"T" + struct.pack("<I", len(value)) + value


def _py2_int(value: int) -> bytes:
    """A small non-negative int as cPickle wrote it: BININT1 below 256, else BININT2."""
    return b"K" + bytes([value]) if value < 256 else b"M" + struct.pack("<H", value)


def _py2_batch_bytes(data: np.ndarray, labels: list[int], filenames: list[bytes]) -> bytes:
    """A batch pickled the way Python 2 + NumPy 1 did for the official files, opcode by opcode."""
    array = (
        b"cnumpy.core.multiarray\n_reconstruct\nq\x02cnumpy\nndarray\nq\x03K\x00\x85U\x01b\x87Rq\x04"
        b"(K\x01" + _py2_int(data.shape[0]) + b"M\x00\x0c\x86"
        b"cnumpy\ndtype\nq\x05U\x02u1K\x00K\x01\x87Rq\x06"
        b"(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
        b"\x89" + _py2_string(data.tobytes()) + b"tb"
    )
    return (
        b"\x80\x02}q\x01("
        + _py2_string(b"batch_label") + _py2_string(b"training batch 1 of 5")
        + _py2_string(b"labels") + b"](" + b"".join(b"K" + bytes([label]) for label in labels) + b"e"
        + _py2_string(b"data") + array
        + _py2_string(b"filenames") + b"](" + b"".join(map(_py2_string, filenames)) + b"e"
        + b"u."
    )


def _opcodes(raw: bytes) -> list[tuple[str, object]]:
    """The pickle's opcodes and arguments, without the memo bookkeeping."""
    return [(op.name, arg) for op, arg, _ in pickletools.genops(raw) if op.name not in ("BINPUT", "BINGET")]


def _pickle_batch(path: Path, obj: object, protocol: int = cifar10.PICKLE_PROTOCOL) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


def _bad_batch(**changes: object) -> dict[bytes, object]:
    data, labels = _random_batch()
    batch: dict[bytes, object] = {b"batch_label": b"x", b"labels": labels, b"data": data}
    batch.update({key.encode(): value for key, value in changes.items()})
    return batch


def _tar_gz(path: Path, source: Path, extra: list[tuple[tarfile.TarInfo, bytes | None]] = ()) -> str:
    """Pack ``source`` as ``cifar-10-batches-py/`` plus ``extra`` members; return the archive's MD5."""
    with tarfile.open(path, "w:gz") as tar:
        tar.add(source, arcname=cifar10.FOLDER_NAME)
        for info, payload in extra:
            tar.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return hashlib.md5(path.read_bytes()).hexdigest()


def _file_member(name: str, payload: bytes = b"evil") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    return info, payload


def _link_member(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic.write_synthetic_cifar10(tmp_path_factory.mktemp("small") / cifar10.FOLDER_NAME, **SMALL)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


# ------------------------------------------------------------------------------ format, real style


def test_written_batch_is_python2_style(tmp_path: Path) -> None:
    data, labels = _random_batch()
    path = tmp_path / "data_batch_1"
    cifar10.write_batch(path, data, labels, "training batch 1 of 5", [f"f{i}.png" for i in range(ROWS)])
    raw = path.read_bytes()

    assert raw[:2] == b"\x80\x02"
    assert b"cnumpy.core.multiarray\n_reconstruct\n" in raw
    assert b"numpy._core" not in raw and b"_codecs" not in raw
    string_ops = {op.name for op, _, _ in pickletools.genops(raw) if "STRING" in op.name or "UNICODE" in op.name}
    assert string_ops == {"SHORT_BINSTRING", "BINSTRING"}

    with open(path, "rb") as file:
        plain = pickle.load(file, encoding="bytes")
    assert list(plain) == [b"batch_label", b"labels", b"data", b"filenames"]
    assert plain[b"batch_label"] == b"training batch 1 of 5"
    assert plain[b"labels"] == labels and all(type(label) is int for label in plain[b"labels"])
    assert plain[b"filenames"][0] == b"f0.png"
    assert plain[b"data"].dtype == np.uint8 and np.array_equal(plain[b"data"], data)

    batch = cifar10.read_batch(path)
    assert batch["data"].dtype == np.uint8 and np.array_equal(batch["data"], data)
    assert batch["labels"].dtype == np.int64 and batch["labels"].tolist() == labels


def test_reader_reads_a_hand_assembled_python2_batch(tmp_path: Path) -> None:
    data, labels = _random_batch(seed=1)
    filenames = [f"img_{i}.png".encode() for i in range(ROWS)]
    path = tmp_path / "data_batch_1"
    path.write_bytes(_py2_batch_bytes(data, labels, filenames))

    with open(path, "rb") as file:
        plain = pickle.load(file, encoding="bytes")
    assert np.array_equal(plain[b"data"], data) and plain[b"labels"] == labels

    batch = cifar10.read_batch(path)
    assert np.array_equal(batch["data"], data) and batch["labels"].tolist() == labels

    written = tmp_path / "written"
    cifar10.write_batch(written, data, labels, "training batch 1 of 5", [name.decode() for name in filenames])
    assert _opcodes(written.read_bytes()) == _opcodes(path.read_bytes())


@pytest.mark.parametrize("protocol", [2, 4])
def test_batch_resaved_by_python3_loads(tmp_path: Path, protocol: int) -> None:
    data, labels = _random_batch(seed=2)
    batch = {"batch_label": "training batch 1 of 5", "labels": [np.int64(label) for label in labels],
             "data": data, "filenames": ["a.png"] * ROWS}
    path = _pickle_batch(tmp_path / "data_batch_1", batch, protocol)
    if protocol == 2:
        assert b"_codecs" in path.read_bytes()

    result = cifar10.read_batch(path)
    assert np.array_equal(result["data"], data) and result["labels"].tolist() == labels


def test_meta_round_trip_and_bytes_names(tmp_path: Path) -> None:
    path = tmp_path / cifar10.META_FILE
    cifar10.write_meta(path, cifar10.LABEL_NAMES, 10000)
    with open(path, "rb") as file:
        plain = pickle.load(file, encoding="bytes")
    assert plain == {b"num_cases_per_batch": 10000, b"label_names": [n.encode() for n in cifar10.LABEL_NAMES],
                     b"num_vis": 3072}
    assert cifar10.read_meta(path) == list(cifar10.LABEL_NAMES)


# ------------------------------------------------------------------------------------- safe reading


class _Payload:
    """Unpickling this calls ``function(*args)``."""

    def __init__(self, function: object, *args: object):
        self.function, self.args = function, args

    def __reduce__(self) -> tuple:
        return self.function, self.args


@pytest.mark.parametrize("kind", ["os.system", "builtins.exec"])
def test_poisoned_pickle_is_refused_and_not_run(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "pwned"
    if kind == "os.system":
        function, argument = os.system, f"touch '{marker}'"
        refused = f"{os.system.__module__}.system"  # posix.system on Linux
    else:
        function, argument = builtins.exec, f"open({str(marker)!r}, 'w').close()"
        refused = "__builtin__.exec"  # protocol 2 writes the Python-2 module name
    path = _pickle_batch(tmp_path / "data_batch_1", _bad_batch(filenames=_Payload(function, argument)))

    with pytest.raises(CIFAR10FormatError) as error:
        cifar10.read_batch(path)
    assert str(path) in str(error.value) and refused in str(error.value)
    assert not marker.exists()

    pickle.loads(path.read_bytes(), encoding="bytes")  # control: the payload is live
    assert marker.exists()


def test_codecs_encode_is_limited_to_latin1(tmp_path: Path) -> None:
    path = tmp_path / "data_batch_1"
    path.write_bytes(b"\x80\x02c_codecs\nencode\nX\x03\x00\x00\x00abcX\x05\x00\x00\x00rot13\x86R.")
    with pytest.raises(CIFAR10FormatError, match="rot13"):
        cifar10.read_batch(path)


def _truncated(path: Path) -> None:
    data, labels = _random_batch()
    cifar10.write_batch(path, data, labels, "x")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(("make", "expected"), [
    (_truncated, "truncated or corrupt"),
    (lambda p: p.write_bytes(b""), "truncated or corrupt"),
    (lambda p: p.write_bytes(b"<html>not a pickle</html>"), "truncated or corrupt"),
    (lambda p: _pickle_batch(p, [1, 2, 3]), "expected a pickled dict"),
    (lambda p: _pickle_batch(p, {b"data": np.zeros((1, 3072), np.uint8)}), "missing key(s) labels"),
    (lambda p: _pickle_batch(p, _bad_batch(data=np.zeros((ROWS, 3000), np.uint8))), "shape (N, 3072)"),
    (lambda p: _pickle_batch(p, _bad_batch(data=np.zeros(3072, np.uint8))), "shape (N, 3072)"),
    (lambda p: _pickle_batch(p, _bad_batch(data=np.zeros((ROWS, 3072), np.float32))), "dtype uint8"),
    (lambda p: _pickle_batch(p, _bad_batch(data=[[0] * 3072] * ROWS)), "must be a NumPy array"),
    # protocol 4: protocol 2 pickles the empty bytes of an empty array as a call to bytes()
    (lambda p: _pickle_batch(p, _bad_batch(data=np.zeros((0, 3072), np.uint8), labels=[]), 4), "no images"),
    (lambda p: _pickle_batch(p, _bad_batch(labels=[0] * (ROWS - 3) + [1, 10, 2])), "label 10 at index 10"),
    (lambda p: _pickle_batch(p, _bad_batch(labels=[-1] + [0] * (ROWS - 1))), "label -1 at index 0"),
    (lambda p: _pickle_batch(p, _bad_batch(labels=[0] * (ROWS + 1))), f"{ROWS + 1} entries but 'data' has {ROWS}"),
    (lambda p: _pickle_batch(p, _bad_batch(labels=[0.5] * ROWS)), "flat list of integers"),
])
def test_bad_batch_gives_clear_error(tmp_path: Path, make, expected: str) -> None:
    path = tmp_path / "data_batch_3"
    make(path)
    with pytest.raises(CIFAR10FormatError) as error:
        cifar10.read_batch(path)
    message = str(error.value)
    assert str(path) in message and expected in message and "official archive" in message


def test_bad_meta_gives_clear_error(tmp_path: Path) -> None:
    path = _pickle_batch(tmp_path / cifar10.META_FILE, {b"label_names": [b"cat"] * 9})
    with pytest.raises(CIFAR10FormatError, match="must list 10 names, found 9") as error:
        cifar10.read_meta(path)
    assert str(path) in str(error.value)


def test_missing_files_are_listed(tmp_path: Path, small_folder: Path) -> None:
    folder = tmp_path / cifar10.FOLDER_NAME
    folder.mkdir()
    for name in cifar10.ALL_FILES:
        if name not in ("data_batch_4", cifar10.META_FILE):
            (folder / name).write_bytes((small_folder / name).read_bytes())
    with pytest.raises(CIFAR10FormatError) as error:
        cifar10.read_batches(folder)
    message = str(error.value)
    assert str(folder) in message and "missing data_batch_4, batches.meta." in message


def test_read_batches_structure_and_checksums(small_folder: Path) -> None:
    result = cifar10.read_batches(small_folder)
    assert list(result["batches"]) == [*cifar10.TRAIN_FILES, cifar10.TEST_FILE]
    assert result["label_names"] == list(cifar10.LABEL_NAMES)
    for name in cifar10.ALL_FILES:
        assert result["checksums"][name] == hashlib.md5((small_folder / name).read_bytes()).hexdigest()
    for batch in result["batches"].values():
        assert batch["data"].shape == (SMALL["images_per_batch"], 3072) and batch["data"].dtype == np.uint8
        assert batch["labels"].dtype == np.int64


# ---------------------------------------------------------------------------------------- layout


def test_rows_to_images_known_pixels() -> None:
    rows = np.zeros((2, cifar10.ROW_LENGTH), np.uint8)
    rows[1, 0] = 10             # R, row 0, column 0
    rows[1, 1] = 11             # R, row 0, column 1
    rows[1, 32] = 12            # R, row 1, column 0
    rows[1, 1024] = 20          # G, row 0, column 0
    rows[1, 2048 + 3 * 32 + 5] = 30  # B, row 3, column 5
    images = cifar10.rows_to_images(rows)
    assert images.shape == (2, 32, 32, 3) and not images[0].any()
    assert images[1, 0, 0].tolist() == [10, 20, 0]
    assert images[1, 0, 1, 0] == 11 and images[1, 1, 0, 0] == 12 and images[1, 3, 5, 2] == 30
    assert int(images.astype(int).sum()) == 10 + 11 + 12 + 20 + 30
    assert np.array_equal(cifar10.images_to_rows(images), rows)


# ---------------------------------------------------------------------------------------- download


def test_offline_download_fails_fast_and_leaves_nothing(tmp_path: Path, no_network: None) -> None:
    raw = tmp_path / "01_raw"
    raw.mkdir()
    folder = raw / cifar10.FOLDER_NAME
    started = time.monotonic()
    with pytest.raises(CIFAR10DownloadError) as error:
        download.download_and_extract(folder)
    assert time.monotonic() - started < OFFLINE_SECONDS
    message = str(error.value)
    assert cifar10.ARCHIVE_URL in message and str(folder) in message and str(raw / cifar10.ARCHIVE_NAME) in message
    assert list(raw.iterdir()) == []

    unborn = tmp_path / "missing_parent" / cifar10.FOLDER_NAME
    with pytest.raises(CIFAR10DownloadError):
        download.download_and_extract(unborn)
    assert not unborn.parent.exists()


def test_download_checks_md5_extracts_and_reuses(tmp_path: Path, small_folder: Path, no_network: None,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    served = tmp_path / "served.tar.gz"
    md5 = _tar_gz(served, small_folder)
    raw = tmp_path / "01_raw"
    raw.mkdir()
    folder = raw / cifar10.FOLDER_NAME

    wrong = "0" * 32
    with pytest.raises(CIFAR10DownloadError) as error:
        download.download_and_extract(folder, url=served.as_uri(), md5=wrong)
    assert md5 in str(error.value) and wrong in str(error.value)
    assert list(raw.iterdir()) == []

    with caplog.at_level("INFO", logger=download.__name__):
        assert download.download_and_extract(folder, url=served.as_uri(), md5=md5) == folder
    assert "100%" in caplog.text
    assert {p.name for p in raw.iterdir()} == {cifar10.ARCHIVE_NAME, cifar10.FOLDER_NAME}
    assert cifar10.read_batches(folder)["checksums"] == cifar10.read_batches(small_folder)["checksums"]

    served.unlink()  # the second call must not need the URL
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    download.download_and_extract(folder, url=served.as_uri(), md5=md5)
    assert cifar10.read_batches(folder)["label_names"] == list(cifar10.LABEL_NAMES)


def test_archive_placed_by_hand_with_wrong_md5_is_reported(tmp_path: Path, no_network: None) -> None:
    archive = tmp_path / cifar10.ARCHIVE_NAME
    archive.write_bytes(b"not the archive")
    with pytest.raises(CIFAR10DownloadError, match="expected c58f30108f718f92721af3b95e74349a") as error:
        download.download_and_extract(tmp_path / cifar10.FOLDER_NAME)
    assert str(archive) in str(error.value)
    assert archive.exists() and not (tmp_path / cifar10.FOLDER_NAME).exists()


@pytest.mark.parametrize("evil", ["dotdot", "absolute", "symlink", "hardlink"])
def test_escaping_tar_member_is_refused(tmp_path: Path, small_folder: Path, evil: str) -> None:
    raw = tmp_path / "01_raw"
    raw.mkdir()
    outside = tmp_path / "outside.txt"
    members = {
        "dotdot": [_file_member(f"{cifar10.FOLDER_NAME}/../../outside.txt")],
        "absolute": [_file_member(str(outside))],
        "symlink": [_link_member(f"{cifar10.FOLDER_NAME}/escape", str(tmp_path), tarfile.SYMTYPE),
                    _file_member(f"{cifar10.FOLDER_NAME}/escape/outside.txt")],
        "hardlink": [_link_member(f"{cifar10.FOLDER_NAME}/escape", str(outside), tarfile.LNKTYPE)],
    }[evil]
    md5 = _tar_gz(raw / cifar10.ARCHIVE_NAME, small_folder, members)

    with pytest.raises(CIFAR10DownloadError, match="refused to unpack the member") as error:
        download.download_and_extract(raw / cifar10.FOLDER_NAME, md5=md5)
    assert str(raw / cifar10.ARCHIVE_NAME) in str(error.value)
    assert not outside.exists()
    assert [p.name for p in raw.iterdir()] == [cifar10.ARCHIVE_NAME]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["01_raw"]


# ------------------------------------------------------------------------------------ synthetic data


def test_synthetic_is_deterministic(tmp_path: Path, small_folder: Path) -> None:
    again = synthetic.write_synthetic_cifar10(tmp_path / "a" / cifar10.FOLDER_NAME, **SMALL)
    other = synthetic.write_synthetic_cifar10(tmp_path / "b" / cifar10.FOLDER_NAME, **SMALL, seed=1)
    for name in cifar10.ALL_FILES:
        assert (again / name).read_bytes() == (small_folder / name).read_bytes(), name
    assert (other / cifar10.TEST_FILE).read_bytes() != (small_folder / cifar10.TEST_FILE).read_bytes()
    assert [p.name for p in again.parent.iterdir()] == [cifar10.FOLDER_NAME]  # no staging folder left
    with pytest.raises(FileExistsError):
        synthetic.write_synthetic_cifar10(again, **SMALL)


@pytest.fixture(scope="module")
def learnable(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = synthetic.write_synthetic_cifar10(tmp_path_factory.mktemp("learnable") / cifar10.FOLDER_NAME,
                                             **LEARNABLE)
    return cifar10.read_batches(folder)


def test_synthetic_labels_are_balanced_like_the_real_ones(learnable: dict) -> None:
    batches = learnable["batches"]
    test_counts = np.bincount(batches[cifar10.TEST_FILE]["labels"], minlength=cifar10.NUM_CLASSES)
    assert test_counts.tolist() == [LEARNABLE["test_images"] // cifar10.NUM_CLASSES] * cifar10.NUM_CLASSES
    train = np.concatenate([batches[name]["labels"] for name in cifar10.TRAIN_FILES])
    per_class = len(cifar10.TRAIN_FILES) * LEARNABLE["images_per_batch"] // cifar10.NUM_CLASSES
    assert np.bincount(train).tolist() == [per_class] * cifar10.NUM_CLASSES
    first = np.bincount(batches["data_batch_1"]["labels"], minlength=cifar10.NUM_CLASSES)
    assert len(set(first.tolist())) > 1  # shuffled: a single batch is not balanced


def _block_means(rows: np.ndarray) -> np.ndarray:
    images = cifar10.rows_to_images(rows).astype(np.float32) / 255
    side = cifar10.IMAGE_SIZE // BLOCK
    return images.reshape(len(images), side, BLOCK, side, BLOCK, 3).mean(axis=(2, 4)).reshape(len(images), -1)


def test_synthetic_is_learnable_from_downsampled_pixels(learnable: dict) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    batches = learnable["batches"]
    x_train = _block_means(np.concatenate([batches[name]["data"] for name in cifar10.TRAIN_FILES]))
    y_train = np.concatenate([batches[name]["labels"] for name in cifar10.TRAIN_FILES])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(x_train, y_train)
    test = batches[cifar10.TEST_FILE]
    assert model.score(_block_means(test["data"]), test["labels"]) >= CHANCE_PLUS


def _shape_spectrum(rows: np.ndarray) -> np.ndarray:
    """Colour-free, position-free features: low-frequency FFT magnitudes of the standardised grey image."""
    grey = cifar10.rows_to_images(rows).astype(np.float32).mean(axis=-1)
    grey = (grey - grey.mean(axis=(1, 2), keepdims=True)) / (grey.std(axis=(1, 2), keepdims=True) + 1e-6)
    spectrum = np.fft.fftshift(np.abs(np.fft.rfft2(grey)), axes=1)
    first_row = (cifar10.IMAGE_SIZE - SPECTRUM_ROWS) // 2
    low = np.log1p(spectrum[:, first_row:first_row + SPECTRUM_ROWS, :SPECTRUM_COLUMNS])
    pooled = low.reshape(len(low), SPECTRUM_ROWS // SPECTRUM_POOL, SPECTRUM_POOL,
                         SPECTRUM_COLUMNS // SPECTRUM_POOL, SPECTRUM_POOL).mean(axis=(2, 4))
    return pooled.reshape(len(low), -1)


def test_synthetic_shapes_carry_the_class_without_colour(learnable: dict) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    batches = learnable["batches"]
    x_train = _shape_spectrum(np.concatenate([batches[name]["data"] for name in cifar10.TRAIN_FILES]))
    y_train = np.concatenate([batches[name]["labels"] for name in cifar10.TRAIN_FILES])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(x_train, y_train)
    test = batches[cifar10.TEST_FILE]
    assert model.score(_shape_spectrum(test["data"]), test["labels"]) >= CHANCE_PLUS


def test_load_gives_nhwc_images_with_the_red_plane_first(small_folder):
    source = cifar10.load(small_folder)
    per_batch = SMALL["images_per_batch"]
    row = cifar10.read_batch(small_folder / "data_batch_2")["data"][7]
    image = source["train"]["images"][per_batch + 7]  # batch 2's 8th row
    # Pixel (r, c) channel k is row[k * 1024 + r * 32 + c].
    np.testing.assert_array_equal(image[3, 5], [row[3 * 32 + 5], row[1024 + 3 * 32 + 5], row[2048 + 3 * 32 + 5]])
    assert source["train"]["images"].shape == (5 * per_batch, 32, 32, 3)
    assert source["test"]["labels"].dtype == np.int64 and source["class_names"] == list(cifar10.LABEL_NAMES)
