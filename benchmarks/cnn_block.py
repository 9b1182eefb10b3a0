"""Benchmark: a CNN block's test accuracy on a project's real splits, over seeds (issue 19).

It trains what `kedro run --pipelines cnn_training` trains, through the same nodes
(`compute_cnn_input_statistics`, `build_cnn_model`, `train_cnn_model`), with the parameters Kedro's
config loader gives the project and env, on the newest train, validation and test splits in the
project's catalog. It writes no model and no dataset version. Two questions a pipeline run cannot ask:

  --seeds 0 1 42     one training per seed (`runtime.seed`): the mean and spread of a recipe
  --all-training     the validation split joins the training split (for CIFAR-10, all 50,000 original
                     training images): what the study's 80/20 split costs. Validation is then not
                     held out, so only the test figures mean anything.

Per seed it prints and stores test accuracy with the block's TTA and without it, validation accuracy
(with TTA), epochs, training minutes and the median training images/s of the epochs. The project folder
needs its splits first: `kedro run --pipelines data_processing` there (or any full run).

    python benchmarks/cnn_block.py --project /work/runs/study_cpu --seeds 0 1 42
    python benchmarks/cnn_block.py --project /work/runs/study_cpu --all-training
    python benchmarks/cnn_block.py --project . --env cpu --params "cnn_training.budget_minutes=30"
"""

from __future__ import annotations

import os

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import numpy as np

from scratch_project import cpu_name

from cifar_kedro import runtime
from cifar_kedro.pipelines.cnn_training import nodes
from cifar_kedro.pipelines.cnn_training.schema import CNNTrainingParams
from cifar_kedro.schemas import Runtime

RESULTS = Path(__file__).resolve().parent / "results"


def runtime_params(assignments: str | None) -> dict:
    """`--params "a.b=1,c=x"` read as `kedro run --params` reads it (OmegaConf's dot list)."""
    from omegaconf import OmegaConf

    items = [item.strip() for item in (assignments or "").split(",") if item.strip()]
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--params: {item!r} is not KEY=VALUE (e.g. cnn_training.budget_minutes=30)")
    return OmegaConf.to_container(OmegaConf.from_dotlist(items))


def load_project(project: Path, env: str | None, params: dict) -> tuple[CNNTrainingParams, Runtime, dict]:
    """The block's and the run's parameters, checked, and the newest splits and class names, as a run
    would read them."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project)
    os.chdir(project)
    with KedroSession.create(project_path=project, env=env, runtime_params=params) as session:
        context = session.load_context()
        catalog = context.catalog
        data = {name: catalog.load(name) for name in ("train_split", "validation_split", "test_split", "class_names")}
        cnn = CNNTrainingParams.model_validate(context.params["cnn_training"])
        return cnn.model_copy(update={"checkpoint_dir": None}), Runtime.model_validate(context.params["runtime"]), data


def train_once(params: CNNTrainingParams, run: Runtime, data: dict, seed: int, all_training: bool) -> dict:
    settings = run.model_copy(update={"seed": seed})
    runtime.apply(settings)
    train, validation, test = data["train_split"], data["validation_split"], data["test_split"]
    if all_training:
        train = {key: np.concatenate([train[key], validation[key]]) for key in ("images", "labels")}
    start = time.perf_counter()
    model = nodes.build_model(data["class_names"], nodes.input_statistics(train, params), params, settings)
    delivered, history = nodes.train_model(model, train, validation, data["class_names"], params, settings)
    minutes = (time.perf_counter() - start) / 60
    batch = params.eval_batch_size
    epochs = history["epochs"]
    return {
        "seed": seed,
        "train_images": len(train["labels"]),
        "epochs": len(epochs),
        "training_minutes": minutes,
        "images_per_second": statistics.median(e["images_per_second"] for e in epochs),
        "validation_accuracy": nodes.validation_metrics(delivered, validation, batch)["val_accuracy"],
        "test_accuracy": nodes.validation_metrics(delivered, test, batch)["val_accuracy"],
        "test_accuracy_no_tta": nodes.validation_metrics(model, test, batch)["val_accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--project", default=".", help="a project folder whose catalog holds the splits")
    parser.add_argument("--env", default=None, help="the Kedro environment (e.g. cpu)")
    parser.add_argument("--params", default=None, help='Kedro-style overrides, "cnn_training.architecture=resnet9,..."')
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--all-training", action="store_true", help="train on the training and validation splits")
    parser.add_argument("--name", default="cnn_block", help="results file name (benchmarks/results/NAME.json)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    overrides = runtime_params(args.params)
    params, run_settings, data = load_project(Path(args.project).resolve(), args.env, overrides)
    architecture = params.architecture
    runs = []
    for seed in args.seeds:
        runs.append(train_once(params, run_settings, data, seed, args.all_training))
        print(json.dumps(runs[-1]), flush=True)

    processor = cpu_name()
    print(f"\n{architecture}, {runs[0]['train_images']:,} training images, {processor}")
    print("| seed | epochs | validation (TTA) | test, TTA | test, no TTA | img/s | minutes |")
    print("|---|---|---|---|---|---|---|")
    for run in runs:
        print(f"| {run['seed']} | {run['epochs']} | {run['validation_accuracy']:.2%} | {run['test_accuracy']:.2%} "
              f"| {run['test_accuracy_no_tta']:.2%} | {run['images_per_second']:.0f} | {run['training_minutes']:.1f} |")
    if len(runs) > 1:
        for key in ("test_accuracy", "test_accuracy_no_tta"):
            values = [run[key] for run in runs]
            print(f"{key}: mean {statistics.mean(values):.2%}, range {min(values):.2%}–{max(values):.2%}")

    RESULTS.mkdir(exist_ok=True)
    result = {"benchmark": "cnn_block", "architecture": architecture, "env": args.env, "params": overrides,
              "all_training": args.all_training, "processor": processor, "runs": runs,
              "recipe": params.recipe.model_dump(mode="json")}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
