"""A ``sitecustomize.py`` that makes installed packages look absent to a child Python process:
their modules fail to import and their distributions (so their entry points: Kedro plugin hooks
and commands) are not listed. For runs "on a machine without TensorFlow", "without the `mlflow`
extra"; used by the tests (tests/test_backends.py) and the benchmarks (benchmarks/tracking.py) alike."""

from __future__ import annotations

import textwrap
from pathlib import Path

TEMPLATE = textwrap.dedent('''
    import importlib.metadata
    import sys

    MODULES = {modules!r}
    DISTRIBUTIONS = {distributions!r}

    class NotInstalled:
        """Makes `import <one of MODULES>` fail, as where the package is not installed."""

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in MODULES:
                raise ModuleNotFoundError(f"No module named {{name!r}} (hidden: blocked by the test)")
            return None

    sys.meta_path.insert(0, NotInstalled())

    _distributions = importlib.metadata.distributions
    importlib.metadata.distributions = lambda **kw: (
        d for d in _distributions(**kw) if d.metadata["Name"].replace("-", "_").lower() not in DISTRIBUTIONS)
''')


def write_blocker(folder: Path, modules: tuple[str, ...], distributions: tuple[str, ...] = ()) -> Path:
    """Writes ``folder/sitecustomize.py``; put ``folder`` on the child's PYTHONPATH."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(TEMPLATE.format(modules=modules, distributions=distributions))
    return folder
