"""Images in a class-per-folder tree — the layout Keras' ``image_dataset_from_directory`` and
torchvision's ``ImageFolder`` read — as uint8 arrays of one size.

::

    root/                      root/
      cat/  a.jpg b.png …  or    train/  cat/ …  dog/ …
      dog/  c.webp …             test/   cat/ …  dog/ …

Class names are the folder names, sorted; without ``train/`` and ``test/`` every image is a
training image (the pipeline then holds out a seeded, stratified test split). JPEG, PNG, WebP and
BMP files of any size and mode are read: EXIF orientation applied, greyscale / palette / RGBA made
RGB (alpha dropped, as both libraries do), resized to ``image_size`` × ``image_size`` (stretched,
or centre-cropped to square first with ``crop: true``). Decoding runs on a thread pool (Pillow
releases the GIL) straight into one preallocated array, so memory holds the uint8 result and a few
images in flight, never the whole tree decoded. A file that cannot be read stops the reading with
its path, or with ``skip_unreadable`` is left out and listed.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
SPLIT_FOLDERS = ("train", "test")


class ImageFolderError(ValueError):
    """The folder is not a usable class-per-folder tree, or an image cannot be read."""


def list_images(root: str | os.PathLike) -> dict[str, Any]:
    """The tree's layout: ``{"class_names": [...], "splits": {"train"|"test"|"all": [(path, label), ...]}}``.

    Hidden files and folders are ignored; files with other extensions too. Raises when a class
    folder holds no image, or train/ and test/ name different classes.
    """
    root = Path(root)
    if not root.is_dir():
        raise ImageFolderError(f"{root} is not a folder. Point the image-folder source at a folder holding one "
                               "sub-folder per class (or train/ and test/ folders of those).")
    split_roots = {name: root / name for name in SPLIT_FOLDERS if (root / name).is_dir()}
    if split_roots and "train" not in split_roots:
        raise ImageFolderError(f"{root} has a test/ folder but no train/ folder beside it.")
    layouts = {name: _classes(folder) for name, folder in (split_roots or {"all": root}).items()}
    class_names = sorted(layouts.get("train", layouts.get("all")))
    for name, classes in layouts.items():
        if sorted(classes) != class_names:
            raise ImageFolderError(f"{root / name} has classes {sorted(classes)}, but train/ has {class_names}: "
                                   "give test/ the same class folders.")
    splits = {}
    for name, classes in layouts.items():
        files = []
        for label, class_name in enumerate(class_names):
            images = classes[class_name]
            if not images:
                raise ImageFolderError(f"Class folder {classes_root(root, name) / class_name} holds no "
                                       f"{'/'.join(EXTENSIONS)} image: add images or remove the folder.")
            files += [(path, label) for path in images]
        splits[name] = files
    return {"class_names": class_names, "splits": splits}


def load(root: str | os.PathLike, *, image_size: int, crop: bool = False, skip_unreadable: bool = False,
         workers: int | None = None) -> dict[str, Any]:
    """The tree at ``root`` as a source (see ``cifar_kedro.sources``); ``test`` is ``None`` without
    a test/ folder. ``checksums`` holds each split's ``tree_digest``."""
    root = Path(root)
    layout = list_images(root)
    splits, checksums, unreadable = {}, {}, []
    for name, files in layout["splits"].items():
        read = read_images(files, image_size, crop=crop, skip_unreadable=skip_unreadable, workers=workers)
        key = "test" if name == "test" else "train"
        splits[key] = {"images": read["images"], "labels": read["labels"]}
        checksums[f"{key}_sha256"] = tree_digest(read["paths"], read["labels"], read["md5"], root)
        label_of = {str(path): label for path, label in files}
        unreadable += [{**entry, "split": key, "class_name": layout["class_names"][label_of[entry["path"]]]}
                       for entry in read["unreadable"]]
    return {"train": splits["train"], "test": splits.get("test"), "class_names": layout["class_names"],
            "checksums": checksums, "unreadable": unreadable}


def classes_root(root: Path, split: str) -> Path:
    return root if split == "all" else root / split


def _classes(folder: Path) -> dict[str, list[Path]]:
    classes = {}
    for entry in sorted(folder.iterdir()):
        if entry.is_dir() and not entry.name.startswith("."):
            classes[entry.name] = sorted(p for p in entry.rglob("*") if p.is_file() and not p.name.startswith(".")
                                         and p.suffix.lower() in EXTENSIONS)
    if not classes:
        raise ImageFolderError(f"{folder} holds no class folders: put each class's images in a sub-folder named "
                               "after the class.")
    return classes


def read_image(source: str | os.PathLike | bytes, image_size: int, crop: bool = False) -> np.ndarray:
    """One image (a path or the file's bytes) as uint8 (image_size, image_size, 3): EXIF
    orientation applied, RGB, resized."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
        image.draft("RGB", (image_size, image_size))  # JPEG: decode at a reduced scale when it is large
        image = ImageOps.exif_transpose(image)
        if image.mode == "P" and "transparency" in image.info:
            image = image.convert("RGBA")
        image = image.convert("RGB")
        if crop:
            image = ImageOps.fit(image, (image_size, image_size), Image.Resampling.BILINEAR)
        elif image.size != (image_size, image_size):
            image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8)


def read_images(files: Sequence[tuple[Path, int]], image_size: int, *, crop: bool = False,
                skip_unreadable: bool = False, workers: int | None = None) -> dict[str, Any]:
    """Decode ``files`` ([(path, label)]) in parallel into ``{"images", "labels", "paths", "md5",
    "unreadable"}``: ``md5`` of each kept file's bytes; ``unreadable`` lists ``{"path", "error"}`` of
    the files left out (only with ``skip_unreadable``; otherwise the first one raises
    ``ImageFolderError`` naming it).
    """
    images = np.empty((len(files), image_size, image_size, 3), dtype=np.uint8)
    ok = np.ones(len(files), dtype=bool)
    md5 = [""] * len(files)
    errors: dict[int, str] = {}

    def decode(index: int) -> None:
        path = files[index][0]
        try:
            data = Path(path).read_bytes()
            md5[index] = hashlib.md5(data, usedforsecurity=False).hexdigest()
            images[index] = read_image(data, image_size, crop)
        except Exception as error:  # noqa: BLE001 - Pillow raises many kinds; each names the file
            if not skip_unreadable:
                raise ImageFolderError(
                    f"Cannot read image {path}: {error}. Fix or remove the file, or set skip_unreadable: true "
                    "on the image-folder source to leave unreadable files out (they are listed in the data report)."
                ) from error
            ok[index] = False
            errors[index] = f"{type(error).__name__}: {error}"

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        list(pool.map(decode, range(len(files))))  # list(): re-raises the first error here
    labels = np.array([label for _, label in files], dtype=np.int64)
    paths = [str(path) for path, _ in files]
    return {
        "images": images[ok],
        "labels": labels[ok],
        "paths": [p for p, keep in zip(paths, ok) if keep],
        "md5": [m for m, keep in zip(md5, ok) if keep],
        "unreadable": [{"path": paths[i], "error": errors[i]} for i in sorted(errors)],
    }


def tree_digest(paths: Sequence[str], labels: Sequence[int], md5: Sequence[str], root: Path) -> str:
    """SHA-256 over every image's path (relative to ``root``), label and content MD5: the version of
    the images read, which the data manifest records."""
    digest = hashlib.sha256()
    for path, label, checksum in zip(paths, labels, md5):
        digest.update(f"{Path(path).relative_to(root).as_posix()}\0{int(label)}\0{checksum}\n".encode())
    return digest.hexdigest()
