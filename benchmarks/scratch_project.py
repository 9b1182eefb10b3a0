"""What both benchmarks share: a throw-away copy of the project to run Kedro in."""

from __future__ import annotations

import shutil
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATA_FOLDERS = ("01_raw", "02_intermediate", "03_primary", "04_feature", "05_model_input", "06_models",
                "07_model_output", "08_reporting")


def make_project(path: Path) -> Path:
    """A copy of the project's configuration in ``path`` with an empty data/ tree (the package is installed)."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT_ROOT / "pyproject.toml", path / "pyproject.toml")
    shutil.copytree(PROJECT_ROOT / "conf", path / "conf", ignore=shutil.ignore_patterns("local"))
    (path / "conf" / "local").mkdir()
    (path / "src").mkdir()
    for folder in DATA_FOLDERS:
        (path / "data" / folder).mkdir(parents=True)
    return path
