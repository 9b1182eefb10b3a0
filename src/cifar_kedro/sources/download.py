"""Getting the official CIFAR-10 archive: downloaded once, MD5-checked before anything is unpacked,
unpacked safely (no member may land outside the folder) and moved into place in one rename.
Offline, it fails within seconds and says where to put the files by hand."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Any

from cifar_kedro.sources.cifar10 import (
    ALL_FILES,
    ARCHIVE_MD5,
    ARCHIVE_NAME,
    ARCHIVE_URL,
    FOLDER_NAME,
    CIFAR10Error,
)

logger = logging.getLogger(__name__)


class CIFAR10DownloadError(CIFAR10Error, RuntimeError):
    """The archive could not be downloaded, failed its MD5 check, or could not be unpacked safely."""


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
