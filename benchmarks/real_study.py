"""Benchmark: the whole study on the real CIFAR-10, as `kedro run` runs it, timed node by node.

What it does, top to bottom:
  1. copies the project's configuration into a work folder (an empty data/ tree, no conf/local)
     and links the real batches (`--raw`, default data/01_raw/cifar-10-batches-py) into it, where
     the base catalog reads them (so nothing is downloaded);
  2. runs `kedro run [--env ENV] --params "transfer_training.weights=WEIGHTS,EXTRA"` there as a
     subprocess under `/usr/bin/time -v`: wall time of the whole command and peak resident memory;
  3. reads what the run wrote: per model the test accuracy with its Wilson interval, macro F1 and
     training time (model_comparison.csv), the transfer stages and every fine-tuning experiment
     (transfer_history.json), and each node's wall time from the run's log (from the previous
     node's end to this node's end, so loading its inputs counts);
  4. prints a table for the README and writes benchmarks/results/real_study.json (the command,
     the parameters the run used, the machine, every figure).

    python benchmarks/real_study.py --weights ../shared/weights/mobilenet_v2_1.0_224_no_top.weights.h5
    python benchmarks/real_study.py --weights W --params "cnn_training.architecture=seed_cnn"
    python benchmarks/real_study.py --weights W --pipelines data_processing,transfer_training --keep

The real batches are not in the repository: see the README ("The full study") for the download,
or benchmarks/README.md for rebuilding them offline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from scratch_project import PROJECT_ROOT, cpu_name, kedro_run, make_project

from cifar_kedro.datasets import newest_version
from cifar_kedro.sources import cifar10
from cifar_kedro.pipelines.data_processing import create_pipeline as data_processing_pipeline

RESULTS_DIR = PROJECT_ROOT / "benchmarks" / "results"
RAW_FOLDER = "data/01_raw/cifar-10-batches-py"  # what conf/base/catalog.yml's raw_source reads
GOAL_MINUTES = 100  # the cpu profile on 2 cores: transfer, then the CNN's 45-minute budget (issue 19)
GOAL_PEAK_GB = 4  # the cpu profile's peak memory, /usr/bin/time -v, in 10^9 bytes (issue 20)
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) - \S+ - INFO - "
                      r"(?:(Running|Completed) node: ([\w.]+)|(Loading) data from)")
GROUPS = {  # node -> the row it is counted in
    "train_transfer_head": "transfer: head",
    "fine_tune_transfer_model": "transfer: fine-tuning",
    "build_transfer_model": "transfer: build",
    "evaluate_transfer_model": "transfer: validation",
    "build_cnn_model": "cnn: build",
    "train_cnn_model": "cnn: training",
    "evaluate_cnn_model": "cnn: validation",
}


def node_seconds(log_text: str) -> dict[str, float]:
    """Each node's wall time, loading its inputs included: from the previous node's end (or the
    run's first load) to its end."""
    seconds, last = {}, None
    for line in log_text.splitlines():
        match = LOG_LINE.match(line)
        if not match:
            continue
        stamp = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f")
        if last is None:
            last = stamp
        elif match[2] == "Completed":
            seconds[match[3]] = (stamp - last).total_seconds()
            last = stamp
    return seconds


def _log_span(log: Path) -> float:
    """Seconds from the first to the last timestamped line of a Kedro log."""
    stamps = [datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f") for line in log.read_text(errors="replace").splitlines()
              if re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}", line)]
    return (stamps[-1] - stamps[0]).total_seconds()


def grouped(seconds: dict[str, float]) -> dict[str, float]:
    """Node times summed per stage: data, transfer head / fine-tuning, cnn, reporting."""
    data_nodes = {node.name for node in data_processing_pipeline().nodes}
    groups: dict[str, float] = {}
    for node, value in seconds.items():
        name = GROUPS.get(node) or ("data_processing" if node in data_nodes else "reporting")
        groups[name] = groups.get(name, 0.0) + value
    return groups


def read_results(project: Path) -> dict:
    comparison = pd.read_csv(newest_version(project, "data/08_reporting/model_comparison.csv"))
    metadata = json.loads(newest_version(project, "data/08_reporting/run_metadata.json").read_text())
    models = {}
    for _, row in comparison.iterrows():
        models[row["model"]] = {
            "architecture": row["architecture"],
            "test_accuracy": row["test_accuracy"],
            "ci_low": row["test_accuracy_ci_low"],
            "ci_high": row["test_accuracy_ci_high"],
            "macro_f1": row["macro_f1"],
            "best_val_accuracy": row["best_val_accuracy"],
            "train_seconds": row["train_seconds"],
            "epochs": int(row["epochs"]),
        }
    history = json.loads(newest_version(project, "data/07_model_output/transfer_history.json").read_text())
    head = [r for r in history["epochs"] if r["stage"] == "head"]
    models["transfer"]["head_val_accuracy"] = head[-1]["val_accuracy"] if head else None
    models["transfer"]["experiments"] = [
        {key: e[key] for key in ("name", "fine_tune_at", "learning_rate", "best_val_accuracy", "final_val_accuracy",
                                 "seconds")} for e in history["experiments"]
    ]
    return {"models": models, "parameters": metadata["parameters"], "device": metadata["device"],
            "packages": metadata["packages"], "keras_backend": metadata["keras_backend"],
            "test_split_matches_manifest": metadata["data"]["test_split_matches_manifest"]}


def evaluate_trained(project: Path) -> dict:
    """Without the reporting pipeline: each model trained by the run, scored on the test split by
    the reporting pipeline's own nodes."""
    import keras
    import yaml

    from cifar_kedro.pipelines.reporting import nodes
    from cifar_kedro.pipelines.reporting.schema import ReportingParams

    params = ReportingParams.model_validate(
        yaml.safe_load((project / "conf/base/parameters_reporting.yml").read_text())["reporting"])
    with np.load(newest_version(project, "data/05_model_input/test_split.npz")) as split:
        test = {"images": split["images"], "labels": split["labels"]}
    class_names = json.loads(newest_version(project, "data/03_primary/class_names.json").read_text())
    models = {}
    for path in sorted((project / "data/06_models").glob("*_model.keras")):
        name = path.name.removesuffix("_model.keras")
        history = json.loads(newest_version(project, f"data/07_model_output/{name}_history.json").read_text())
        predictions = nodes.predict_test_split(keras.saving.load_model(newest_version(project, f"data/06_models/{path.name}")),
                                               test, params)
        metrics, _ = nodes.evaluate_predictions(predictions, class_names, params)
        models[name] = {
            "architecture": history["architecture"], "test_accuracy": metrics["test_accuracy"],
            "ci_low": metrics["test_accuracy_ci_low"], "ci_high": metrics["test_accuracy_ci_high"],
            "macro_f1": metrics["macro_avg"]["f1_score"], "train_seconds": history["train_seconds"],
            "epochs": len(history["epochs"]), "best_val_accuracy": max(r["val_accuracy"] for r in history["epochs"]),
            "epoch_records": history["epochs"],
        }
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True, help="MobileNetV2 backbone .weights.h5 (or 'imagenet' online)")
    parser.add_argument("--raw", default=str(PROJECT_ROOT / RAW_FOLDER), help="the real cifar-10-batches-py folder")
    parser.add_argument("--env", default=None, help="Kedro environment (default: base + local)")
    parser.add_argument("--params", default="", help="more --params for kedro run, comma-separated")
    parser.add_argument("--pipelines", default=None, help="kedro run --pipelines (default: all four)")
    parser.add_argument("--workdir", default=None, help="run here instead of a temporary folder (kept)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    parser.add_argument("--name", default="real_study", help="results file name (benchmarks/results/NAME.json)")
    parser.add_argument("--finish", action="store_true",
                        help="after a run in --workdir stopped in `reporting`: run that pipeline there and read "
                             "all the results (the wall time is then the sum of both runs)")
    args = parser.parse_args()

    raw = Path(args.raw).resolve()
    missing = [name for name in cifar10.ALL_FILES if not (raw / name).is_file()]
    if missing:
        raise SystemExit(f"{raw} lacks {missing}: put the real CIFAR-10 batches there (see the README).")
    weights = args.weights if args.weights in ("imagenet", "none") else str(Path(args.weights).resolve())
    if weights not in ("imagenet", "none") and not Path(weights).is_file():
        raise SystemExit(f"--weights {weights} does not exist.")

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-real-study-"))
    run_args = ["--params", ",".join(p for p in (f"transfer_training.weights={weights}", args.params) if p)]
    run_args += ["--env", args.env] if args.env else []
    run_args += ["--pipelines", args.pipelines] if args.pipelines else []
    if args.finish:
        project = workdir
        stopped = _log_span(project / "info.log")
        time_report = project / "time-v.txt"  # the stopped run's, before the finishing run writes its own
        first_peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_report.read_text())[1]) / 1024
        run = kedro_run(project, [*run_args, "--pipelines", "reporting"], log_name="kedro-run-reporting.log")
        run |= {"command": "kedro run " + " ".join(run_args), "finished_by": run["command"],
                "wall_seconds": stopped + run["wall_seconds"], "peak_rss_mib": max(first_peak, run["peak_rss_mib"])}
    else:
        project = make_project(workdir)
        (project / RAW_FOLDER).symlink_to(raw, target_is_directory=True)
    print(f"kedro run {' '.join(run_args)}  (in {project})", flush=True)
    try:
        if not args.finish:
            run = kedro_run(project, run_args)
        seconds = node_seconds((project / "info.log").read_text(errors="replace"))
        results = {
            "benchmark": "real_study",
            **run,
            "raw_batches": str(raw),
            "node_seconds": seconds,
            "stage_seconds": grouped(seconds),
            "machine": {"platform": platform.platform(), "processor": cpu_name(), "cpu_count": os.cpu_count(),
                        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1 (project default)")},
        }
        if args.pipelines is None or "reporting" in args.pipelines:
            results.update(read_results(project))
        else:
            results["models"] = evaluate_trained(project)
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"Kept {workdir}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"{args.name}.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    report(results)
    print(f"results: {out.relative_to(PROJECT_ROOT)}")


def report(results: dict) -> None:
    minutes = results["wall_seconds"] / 60
    peak_gb = results["peak_rss_mib"] * 2**20 / 1e9
    print(f"\n{results['command']}")
    print(f"machine: {results['machine']['processor']}, {results['machine']['cpu_count']} cores; "
          f"wall {minutes:.1f} min (goal < {GOAL_MINUTES} min: {'met' if minutes < GOAL_MINUTES else 'NOT met'}), "
          f"peak memory {results['peak_rss_mib'] / 1024:.2f} GiB = {peak_gb:.2f} GB (goal ≤ {GOAL_PEAK_GB} GB: "
          f"{'met' if peak_gb <= GOAL_PEAK_GB else 'NOT met'})")
    print("\n| stage | minutes |\n|---|---|")
    for stage, value in sorted(results["stage_seconds"].items()):
        print(f"| {stage} | {value / 60:.1f} |")
    for name, model in results.get("models", {}).items():
        print(f"\n{name} ({model['architecture']}): test accuracy {100 * model['test_accuracy']:.2f}% "
              f"(95% {100 * model['ci_low']:.2f}–{100 * model['ci_high']:.2f}%), macro F1 {model['macro_f1']:.4f}, "
              f"training {model['train_seconds'] / 60:.1f} min, {model['epochs']} epochs")
        for experiment in model.get("experiments", []):
            print(f"  fine-tune {experiment['name']}: validation {100 * experiment['final_val_accuracy']:.2f}% "
                  f"(best {100 * experiment['best_val_accuracy']:.2f}%), {experiment['seconds'] / 60:.1f} min")




if __name__ == "__main__":
    main()
