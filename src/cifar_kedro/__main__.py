"""cifar-kedro file for ensuring the package is executable
as `cifar-kedro` and `python -m cifar_kedro`: `kedro run`'s options, or `predict PATH…`.
"""
import sys
from pathlib import Path
from typing import Any

from kedro.framework.cli.utils import find_run_command
from kedro.framework.project import configure_project


def main(*args, **kwargs) -> Any:
    package_name = Path(__file__).parent.name
    configure_project(package_name)

    interactive = hasattr(sys, "ps1")
    kwargs["standalone_mode"] = not interactive

    argv = list(args[0]) if args and isinstance(args[0], (list, tuple)) else sys.argv[1:]
    if argv[:1] == ["predict"]:
        from cifar_kedro.cli import predict

        return predict.main(argv[1:], prog_name="cifar-kedro predict", standalone_mode=kwargs["standalone_mode"])

    run = find_run_command(package_name)
    return run(*args, **kwargs)


if __name__ == "__main__":
    main()
