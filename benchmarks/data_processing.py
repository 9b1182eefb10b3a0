"""Benchmark: `kedro run --pipelines data_processing` on a full-size CIFAR-10 in the real format.

Issue: "data_processing on a full-size dataset in the real format (50,000 + 10,000 generated
images): wall time and peak memory of the whole `kedro run --pipelines data_processing`.
Goal: under 30 s and under 2 GB on 2 cores."

What it does, top to bottom:
  1. copies the project's configuration into a throw-away folder (empty data/ tree, no conf/local);
  2. writes 5 × 10,000 training + 10,000 test generated images with
     `sources.synthetic.write_synthetic_cifar10` into data/01_raw/cifar-10-batches-py, the folder the base
     environment reads (it exists, so no download is tried) — timed, but not part of the result;
  3. runs `kedro run --pipelines data_processing` as a subprocess in that folder, `--repeat` times,
     under `/usr/bin/time -v` when present (else the child's own rusage from `os.wait4`):
     wall seconds of the whole command (Python and Kedro start-up included), peak resident memory,
     and the runner's own "Pipeline execution completed successfully in X sec";
  4. checks the newest train/validation/test splits hold 40,000 / 10,000 / 10,000 images;
  5. prints a table, writes benchmarks/results/data_processing.json and removes the folder.

    python benchmarks/data_processing.py [--repeat 3] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from scratch_project import PROJECT_ROOT, TIME_BINARY, kedro_run, make_project

from cifar_kedro.datasets import newest_version
from cifar_kedro.sources import synthetic

RESULTS_FILE = PROJECT_ROOT / "benchmarks" / "results" / "data_processing.json"
RAW_FOLDER = "data/01_raw/cifar-10-batches-py"  # what conf/base/catalog.yml's raw_source reads

IMAGES_PER_BATCH = 10_000  # × 5 training batches = 50,000, as the real data set
TEST_IMAGES = 10_000
SEED = 0
EXPECTED_SPLITS = {"train": 40_000, "validation": 10_000, "test": 10_000}  # validation_fraction 0.2

PIPELINE = "data_processing"
GOAL_SECONDS = 30.0
GOAL_PEAK_MIB = 2048.0


def split_counts(project: Path) -> dict[str, int]:
    """Number of images in the newest version of each split."""
    counts = {}
    for name in EXPECTED_SPLITS:
        with np.load(newest_version(project, f"data/05_model_input/{name}_split.npz")) as split:
            counts[name] = int(split["labels"].shape[0])
    return counts


def environment() -> dict:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "KERAS_BACKEND": os.environ.get("KERAS_BACKEND"),  # the registry imports Keras with every pipeline
        "time_binary": TIME_BINARY if os.path.exists(TIME_BINARY) else None,
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs of the pipeline on the same raw data (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the throw-away project and print its path")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-data-processing-"))
    try:
        project = make_project(workdir)
        start = time.perf_counter()
        synthetic.write_synthetic_cifar10(project / RAW_FOLDER, images_per_batch=IMAGES_PER_BATCH,
                                        test_images=TEST_IMAGES, seed=SEED)
        generation_seconds = time.perf_counter() - start
        raw_mib = sum(p.stat().st_size for p in (project / RAW_FOLDER).iterdir()) / 2**20
        print(f"Generated {5 * IMAGES_PER_BATCH:,} + {TEST_IMAGES:,} images ({raw_mib:.0f} MiB) "
              f"in {generation_seconds:.1f} s (not counted).", flush=True)

        runs = []
        for number in range(1, args.repeat + 1):
            run = kedro_run(project, ["--pipelines", PIPELINE])
            run["split_counts"] = split_counts(project)
            if run["split_counts"] != EXPECTED_SPLITS:
                raise SystemExit(f"Run {number}: splits hold {run['split_counts']}, expected {EXPECTED_SPLITS}.")
            runs.append(run)
            print(f"run {number}: {run['wall_seconds']:.1f} s wall, {run['peak_rss_mib']:.0f} MiB peak", flush=True)
    finally:
        if args.keep:
            print(f"Kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    walls = [r["wall_seconds"] for r in runs]
    peaks = [r["peak_rss_mib"] for r in runs]
    summary = {
        "wall_seconds_median": statistics.median(walls),
        "wall_seconds_max": max(walls),
        "peak_rss_mib_max": max(peaks),
        "meets_time_goal": max(walls) < GOAL_SECONDS,
        "meets_memory_goal": max(peaks) < GOAL_PEAK_MIB,
    }
    results = {
        "benchmark": "data_processing",
        "command": f"kedro run --pipelines {PIPELINE}",
        "images": {"train_batches": 5 * IMAGES_PER_BATCH, "test": TEST_IMAGES, "seed": SEED},
        "generation_seconds": generation_seconds,
        "goal": {"wall_seconds": GOAL_SECONDS, "peak_rss_mib": GOAL_PEAK_MIB},
        "runs": runs,
        "summary": summary,
        "environment": environment(),
    }
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text(json.dumps(results, indent=2))

    print()
    print(f"kedro run --pipelines {PIPELINE}: 50,000 + 10,000 images, real format, "
          f"{os.cpu_count()} CPU cores (peak RSS from {runs[0]['peak_rss_source']})")
    print(f"{'run':>4} | {'wall s (whole command)':>22} | {'pipeline s (Kedro log)':>22} | {'peak RSS MiB':>12} | splits")
    print(f"{'-' * 4}-+-{'-' * 22}-+-{'-' * 22}-+-{'-' * 12}-+-{'-' * 22}")
    for number, run in enumerate(runs, start=1):
        pipeline = f"{run['pipeline_seconds']:.1f}" if run["pipeline_seconds"] is not None else "n/a"
        splits = " / ".join(f"{run['split_counts'][name]:,}" for name in EXPECTED_SPLITS)
        print(f"{number:>4} | {run['wall_seconds']:>22.1f} | {pipeline:>22} | {run['peak_rss_mib']:>12.0f} | {splits}")
    print(f"goal: wall < {GOAL_SECONDS:.0f} s -> {'met' if summary['meets_time_goal'] else 'NOT met'} "
          f"(max {summary['wall_seconds_max']:.1f} s); peak < {GOAL_PEAK_MIB:.0f} MiB -> "
          f"{'met' if summary['meets_memory_goal'] else 'NOT met'} (max {summary['peak_rss_mib_max']:.0f} MiB)")
    print(f"data generation (not counted): {generation_seconds:.1f} s")
    print(f"results: {RESULTS_FILE.relative_to(PROJECT_ROOT)}")


if __name__ == "__main__":
    main()
