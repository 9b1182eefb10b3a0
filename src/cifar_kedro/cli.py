"""Project commands beside ``kedro run``: ``kedro predict PATH…`` (Kedro picks up this module's
``cli`` group) — the same as ``cifar-kedro predict PATH…``."""

from __future__ import annotations

from pathlib import Path

import click

# `cifar-kedro` / `python -m cifar_kedro` (the packaged project, see __main__.py) run Kedro's
# own `run` command: Kedro looks for it here as soon as the project has a cli.py.
from kedro.framework.cli.project import run  # noqa: F401

from cifar_kedro.datasets import newest_version
from cifar_kedro.study import MODELS


@click.group(name="cifar_kedro")
def cli() -> None:
    """cifar-kedro's own commands."""


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--model", type=click.Choice(MODELS), default="transfer", show_default=True,
              help="Which trained model to ask.")
@click.option("--version", default=None,
              help="The model's version (its run's timestamp, as in data/06_models/<model>_model.keras/); "
                   "default: the newest.")
@click.option("--env", "-e", default=None, help="Kedro environment.")
def predict(paths: tuple[Path, ...], model: str, version: str | None, env: str | None) -> None:
    """Predict the class of the images at PATHS (files, or folders searched recursively).

    Writes data/07_model_output/<model>_predictions.csv (path, predicted class, probability, top-3)
    and data/08_reporting/<model>_prediction_sheet.png, both versioned. Unreadable files are listed
    in the table with their error.
    """
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    project = Path.cwd()
    bootstrap_project(project)
    load_versions = {f"{model}_model": version, f"{model}_history": version} if version else None
    params = {"predict": {"paths": [str(path.resolve()) for path in paths]}}
    with KedroSession.create(project_path=project, env=env, runtime_params=params) as session:
        session.run(pipeline_names=["predict"], namespaces=[model], load_versions=load_versions)
    newest = newest_version(project, f"data/07_model_output/{model}_predictions.csv")
    if newest is not None:
        click.echo(f"Predictions: {newest.relative_to(project)}")
