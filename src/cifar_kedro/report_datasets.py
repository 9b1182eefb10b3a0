"""Kedro datasets for the reporting pipeline's documents and figures.

* ``VersionedTextDataset`` is ``text.TextDataset`` that writes its own save version into the text
  where the text holds ``SAVE_VERSION`` — so a versioned report can link to the plots written by
  the same run (all versioned outputs of one run share one version). kedro-viz previews it.
* ``FigureDataset`` is ``matplotlib.MatplotlibDataset`` that can also be *loaded*: it returns the
  saved image's bytes, so a later node (the HTML report) can embed the plot and a notebook can
  show it.
"""

from __future__ import annotations

import html
from pathlib import PurePosixPath

from kedro.io.core import DatasetError, get_filepath_str
from kedro_datasets._typing import HTMLPreview
from kedro_datasets.matplotlib import MatplotlibDataset
from kedro_datasets.text import TextDataset

SAVE_VERSION = "@@SAVE_VERSION@@"
"""Placeholder that ``VersionedTextDataset`` replaces with the version it saves under."""


class VersionedTextDataset(TextDataset):
    """A text file (markdown, HTML) whose ``SAVE_VERSION`` placeholders become its save version.

    Example catalog entry::

        comparison_report:
          type: cifar_kedro.report_datasets.VersionedTextDataset
          filepath: data/08_reporting/comparison_report.md
          versioned: true

    A node writes a link such as ``../../plot.png/@@SAVE_VERSION@@/plot.png``; saved under
    version ``2024-01-01T00.00.00.000Z`` it reads ``../../plot.png/2024-01-01T00.00.00.000Z/plot.png``.
    Loading returns the text as saved (placeholders already replaced).
    """

    def save(self, data: str) -> None:
        if SAVE_VERSION in data:
            version = self.resolve_save_version()
            if version is None:
                raise DatasetError(
                    f"{self._filepath}: the text refers to its save version ('{SAVE_VERSION}') "
                    "but the dataset is not versioned; set 'versioned: true'."
                )
            data = data.replace(SAVE_VERSION, version)
        super().save(data)

    def preview(self) -> HTMLPreview:
        """The document for kedro-viz: HTML as is, any other text preformatted."""
        text = self.load()
        if PurePosixPath(self._filepath).suffix.lower() in (".html", ".htm"):
            return HTMLPreview(text)
        return HTMLPreview(f"<pre style='white-space: pre-wrap'>{html.escape(text)}</pre>")


class FigureDataset(MatplotlibDataset):
    """``MatplotlibDataset`` (save a figure, kedro-viz image preview) that loads the saved image bytes.

    Only single-figure entries can be loaded (a list or dict of figures is saved as a folder).
    """

    def load(self) -> bytes:  # type: ignore[override]
        load_path = get_filepath_str(self._get_load_path(), self._protocol)
        if self._fs.isdir(load_path):
            raise DatasetError(f"{load_path} holds several figures; FigureDataset loads a single image.")
        with self._fs.open(load_path, mode="rb") as file:
            return file.read()
