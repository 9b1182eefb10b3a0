"""Benchmark: training throughput (images/s) of the project's models on this machine.

Issue 3 (transfer learning on CPU) and issue 4 (CNN architectures). Three parts, `--only` picks one:

  transfer  MobileNetV2 at 96 px, batch 128, parameters from conf/base/parameters_transfer_training.yml
            but `weights: none` (ImageNet weights cannot be downloaded here; speed does not depend on
            the weight values):
              (a) head stage, frozen base, augmentation on (as the study), no cached features;
              (b) head stage on cached features: feature extraction (inference through the frozen
                  base) + head epochs on the features, and the speed-up of a whole head stage;
              (c) fine-tuning from layer `fine_tune_at` (100).
  pipeline  the head stage through `kedro run` (a KedroSession in a throw-away project copy) against
            a bare Keras loop (`model.compile`; `model.fit`) on the same model, batch and number of
            images, in this same process. Goal: pipeline ≥ 0.95 × bare.
  cnn       seed_cnn and resnet9 with their recipes from conf/base/parameters_cnn_training.yml;
            seconds per epoch on 40,000 images and the time of the full recipe.

Method: each measurement fits 1 warm-up epoch (tracing/compilation, not counted) and then
`--timed-epochs` epochs (default 3) with `cifar_kedro.training.fit` — the loop the pipelines run —
which records `images_per_second` per epoch over the training pass only (validation excluded). The
figure is the median of the timed epochs; min and max are kept too, because epochs on a shared
2-core machine vary by ±20% and more. Images are the project's generated CIFAR-10 stand-in
(`sources.synthetic.write_synthetic_cifar10`).

    KERAS_BACKEND=tensorflow python benchmarks/training.py            # everything, est. 6–8 min on 2 cores
    python benchmarks/training.py --only cnn
    python benchmarks/training.py --quick                             # smoke run, tiny sizes
"""

from __future__ import annotations

import os

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import json
import math
import platform
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import keras
import numpy as np
import yaml

from scratch_project import PROJECT_ROOT, cpu_name, make_project

from cifar_kedro import models, runtime, training
from cifar_kedro.datasets import newest_version
from cifar_kedro.schemas import Augmentation, Runtime, Stage
from cifar_kedro.sources import cifar10, synthetic
from cifar_kedro.pipelines.cnn_training import nodes as cnn_nodes
from cifar_kedro.pipelines.cnn_training.schema import CNNTrainingParams
from cifar_kedro.pipelines.transfer_training import nodes as transfer_nodes
from cifar_kedro.pipelines.transfer_training.schema import TransferTrainingParams

RESULTS_DIR = PROJECT_ROOT / "benchmarks" / "results"
TRANSFER_CONF = PROJECT_ROOT / "conf/base/parameters_transfer_training.yml"
CNN_CONF = PROJECT_ROOT / "conf/base/parameters_cnn_training.yml"
RUNTIME_CONF = PROJECT_ROOT / "conf/base/parameters_runtime.yml"
RAW_FOLDER = "data/01_raw/cifar-10-batches-py"  # what the base catalog's raw_source reads
TRANSFER_HISTORY = "data/07_model_output/transfer_history.json"

WARMUP_EPOCHS = 1  # tracing/compilation: not counted
TIMED_EPOCHS = 3  # default of --timed-epochs; the figure is their median
QUICK_TIMED_EPOCHS = 1
WEIGHTS = "none"  # ImageNet weights cannot be downloaded here; speed does not depend on weight values
VALIDATION_IMAGES = 256  # fit validates every epoch; not part of the timed training pass
SEED = 0
FULL_TRAIN_IMAGES = 40_000  # the real training split
FULL_VALIDATION_IMAGES = 10_000
PIPELINE_ENV = "local"  # the default run environment (empty in the throw-away copy), as a plain `kedro run`
PIPELINE_VALIDATION_FRACTION = 0.2  # conf/base/parameters_data_processing.yml: train = 4/5 of the batches
PIPELINE_TEST_IMAGES = 100  # the test batch is not used by transfer_training
PIPELINE_GOAL_RATIO = 0.95
CNN_ARCHITECTURES = ("seed_cnn", "airbench94_muon", "airbench94", "airbench96", "resnet9")
CNN_GOAL_RATIO = 0.9  # pipeline / bare train step (issue 19)
PEAK_MATRIX = 2048  # the matrix-product peak: float32 NumPy products of this size
PEAK_REPEATS = 10
BARE_STEPS = 6  # timed train_on_batch steps of the bare loop, after 2 untimed

# Images per measured epoch: (default, --quick). Multiples of every batch size used (128, 256, 512).
IMAGES = {
    "head_augmented": (2_560, 256),
    "feature_extraction": (2_560, 256),
    "head_on_features": (40_000, 2_560),  # cached features, repeated: an epoch of 2,560 takes ~0.05 s
    "fine_tune": (1_280, 128),  # ~100 img/s on 2 CPU cores
    "fine_tune_cached": (5_120, 256),  # the layers above the block boundary, on cached activations
    "pipeline": (2_560, 256),  # training split of the throw-away project (4/5 of its batches)
    "seed_cnn": (10_240, 512),
    "airbench94_muon": (8_000, 2_000),
    "airbench94": (4_096, 1_024),
    "airbench96": (2_048, 1_024),
    "resnet9": (2_560, 512),
}


# ---------------------------------------------------------------------------- helpers
def generated_images(count: int, workdir: Path) -> tuple[dict, dict, list[str]]:
    """``count`` training and ``VALIDATION_IMAGES`` validation images of the generated stand-in."""
    folder = synthetic.write_synthetic_cifar10(workdir / "generated", images_per_batch=-(-count // 5),
                                             test_images=VALIDATION_IMAGES, seed=SEED)
    raw = cifar10.read_batches(folder)

    def split(names):
        batches = [raw["batches"][name] for name in names]
        return {"images": np.concatenate([cifar10.rows_to_images(b["data"]) for b in batches]),
                "labels": np.concatenate([b["labels"] for b in batches])}

    return split(cifar10.TRAIN_FILES), split([cifar10.TEST_FILE]), raw["label_names"]


def first(split: dict, count: int) -> tuple[np.ndarray, np.ndarray]:
    return split["images"][:count], split["labels"][:count]


def summary(rates: list[float]) -> dict:
    """Median, min and max of per-epoch images/s (the median is the figure)."""
    return {"median": statistics.median(rates), "min": min(rates), "max": max(rates), "per_epoch": rates}


def run_settings(**changes) -> Runtime:
    """conf/base's ``runtime`` block, with ``changes``; applied (as RuntimeHooks does before a run)."""
    settings = Runtime.model_validate(yaml.safe_load(RUNTIME_CONF.read_text())["runtime"] | {"seed": SEED} | changes)
    runtime.apply(settings)
    return settings


def measure_fit(model, train, validation, timed: int, stage: Stage, name: str, settings: Runtime | None = None,
                **changes) -> dict:
    """Training images/s of ``timed`` epochs of ``training.fit`` after the warm-up (no checkpoints):
    ``stage`` with ``changes`` (e.g. ``augmentation=Augmentation()``)."""
    stage = stage.model_copy(update={"epochs": WARMUP_EPOCHS + timed, **changes})
    records = training.fit(model, train, validation, stage, name=name, runtime=settings or run_settings())
    return summary([r["images_per_second"] for r in records[WARMUP_EPOCHS:]])


def per_epoch_seconds(images_per_second: float, images: int = FULL_TRAIN_IMAGES) -> float:
    return images / images_per_second


def transfer_params(**overrides) -> TransferTrainingParams:
    params = yaml.safe_load(TRANSFER_CONF.read_text())["transfer_training"]
    return TransferTrainingParams.model_validate(params | {"weights": WEIGHTS, "checkpoint_dir": None} | overrides)


class EpochTimer(keras.callbacks.Callback):
    """Wall seconds of each epoch (the bare loop has no validation, so that is the training pass)."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.start)


# ---------------------------------------------------------------------------- measurements
def bench_transfer(size, timed: int, data) -> dict:
    """(a) head with augmentation, (b) head on cached features, (c) fine-tuning from ``fine_tune_at``."""
    train, validation, class_names = data
    params = transfer_params()
    val = first(validation, VALIDATION_IMAGES)
    keras.backend.clear_session()
    settings = run_settings()
    model = transfer_nodes.build_model(train, class_names, params, settings)

    print(f"\n(a) head stage, frozen base, augmentation on: {size('head_augmented'):,} images", flush=True)
    head_augmented = measure_fit(model, first(train, size("head_augmented")), val, timed, params.head, "head",
                                 settings)

    n_extract = size("feature_extraction")
    print(f"\n(b) feature extraction over {n_extract:,} images, then head epochs on cached features", flush=True)
    batch = params.eval_batch_size
    extractor = models.feature_extractor(model)  # as train_head
    training.predict(extractor, train["images"][:batch], batch)  # warm-up: tracing
    rates = []
    for _ in range(timed):
        start = time.perf_counter()
        features = training.predict(extractor, train["images"][:n_extract], batch)
        rates.append(n_extract / (time.perf_counter() - start))
    extraction = summary(rates)
    val_features = training.predict(extractor, val[0], batch)
    n_head = size("head_on_features")
    head_model = models.head_on_features(model)  # the pipeline's head-on-features model
    head_on_features = measure_fit(
        head_model,
        (np.resize(features, (n_head, features.shape[-1])), np.resize(train["labels"][:n_extract], n_head)),
        (val_features, val[1]),
        timed,
        params.head, "head", settings, augmentation=Augmentation(),  # as train_head on cached features
    )

    at = params.fine_tune.at
    print(f"\n(c) fine-tuning from layer {at}, BatchNorm {params.fine_tune.batchnorm}, study augmentation: "
          f"{size('fine_tune'):,} images", flush=True)
    models.unfreeze_backbone(model, at, batchnorm=params.fine_tune.batchnorm,
                             batchnorm_momentum=params.fine_tune.batchnorm_momentum)
    fine_tune = measure_fit(model, first(train, size("fine_tune")), val, timed, params.fine_tune, "fine_tune", settings)
    split = models.split_for_fine_tuning(model, at)
    n_cached = size("fine_tune_cached")
    print(f"\n(d) the same layers on cached activations at {split.boundary}: {n_cached:,} images", flush=True)
    activations = training.predict(split.bottom, train["images"][: min(n_cached, len(train["images"]))], batch)
    fine_tune_cached = measure_fit(
        split.top, (np.resize(activations, (n_cached, *activations.shape[1:])), np.resize(train["labels"], n_cached)),
        (training.predict(split.bottom, val[0], batch), val[1]), timed, params.fine_tune, "fine_tune", settings,
        augmentation=Augmentation())

    # A whole head stage on the real split, from the measured rates. Validation runs through the
    # frozen base at inference speed: every epoch without caching, once (with extraction) with it.
    epochs, n, n_val = params.head.epochs, FULL_TRAIN_IMAGES, FULL_VALIDATION_IMAGES
    head, extract, head_cached = head_augmented["median"], extraction["median"], head_on_features["median"]
    uncached = epochs * (n / head + n_val / extract)
    cached = (n + n_val) / extract + epochs * n / head_cached
    return {
        "image_size": params.image_size, "batch_size": params.head.batch_size, "weights": WEIGHTS,
        "fine_tune_at": at, "boundary": split.boundary, "eval_batch_size": batch,
        "images": {key: size(key) for key in ("head_augmented", "feature_extraction", "head_on_features", "fine_tune",
                                              "fine_tune_cached")},
        "images_per_second": {"head_augmented": head_augmented, "feature_extraction": extraction,
                              "head_on_features": head_on_features, "fine_tune": fine_tune,
                              "fine_tune_cached": fine_tune_cached},
        "head_stage_estimate": {"head_epochs": epochs, "train_images": n, "validation_images": n_val,
                                "uncached_seconds": uncached, "cached_seconds": cached, "speedup": uncached / cached},
    }


def bench_pipeline(size, timed: int, workdir: Path) -> dict:
    """The head stage through a KedroSession against a bare Keras loop on the same model and images."""
    n = size("pipeline")
    images_per_batch = round(n / (len(cifar10.TRAIN_FILES) * (1 - PIPELINE_VALIDATION_FRACTION)))
    project = make_project(workdir / "pipeline_project")
    synthetic.write_synthetic_cifar10(project / RAW_FOLDER, images_per_batch=images_per_batch,
                                    test_images=PIPELINE_TEST_IMAGES, seed=SEED)
    epochs = WARMUP_EPOCHS + timed
    overrides = {"weights": WEIGHTS, "head": {"epochs": epochs}, "cache_features": False, "fine_tune_experiments": []}

    print(f"\nthrough the pipeline: data_processing + transfer_training, head stage on {n:,} images", flush=True)
    keras.backend.clear_session()
    cwd = os.getcwd()
    os.chdir(project)  # relative paths (logs, checkpoint_dir) resolve against the project, as with the CLI
    try:
        # Imported here, in the project folder: importing Kedro sets up logging (conf/logging.yml) in the cwd.
        from kedro.framework.session import KedroSession
        from kedro.framework.startup import bootstrap_project

        bootstrap_project(project)
        with KedroSession.create(project_path=project, env=PIPELINE_ENV,
                                 runtime_params={"transfer_training": overrides}) as session:
            session.run(pipeline_names=["data_processing", "transfer_training"])
    finally:
        os.chdir(cwd)
    history = json.loads(newest_version(project, TRANSFER_HISTORY).read_text())
    head_epochs = [r for r in history["epochs"] if r["stage"] == "head"]
    pipeline = summary([r["images_per_second"] for r in head_epochs[WARMUP_EPOCHS:]])

    print(f"\nbare Keras loop: the same model, batch and {n:,} training images", flush=True)
    with np.load(newest_version(project, "data/05_model_input/train_split.npz")) as split:
        train = {"images": split["images"], "labels": split["labels"]}
    if len(train["labels"]) != n:
        raise SystemExit(f"The pipeline's training split has {len(train['labels'])} images, expected {n}.")
    class_names = json.loads(newest_version(project, "data/03_primary/class_names.json").read_text())
    params = transfer_params(**overrides)
    keras.backend.clear_session()
    settings = run_settings()
    model = transfer_nodes.build_model(train, class_names, params, settings)
    trainer = training.with_augmentation(model, params.head.augmentation, seed=SEED)  # as fit does
    trainer.compile(optimizer=keras.optimizers.Adam(params.head.optimizer.learning_rate),
                    loss="categorical_crossentropy", metrics=["accuracy"])
    timer = EpochTimer()
    trainer.fit(train["images"], training.one_hot(train["labels"], len(class_names)),
                batch_size=params.head.batch_size, epochs=epochs, callbacks=[timer], verbose=0)
    bare = summary([n / seconds for seconds in timer.seconds[WARMUP_EPOCHS:]])
    return {"train_images": n, "batch_size": params.head.batch_size, "image_size": params.image_size,
            "weights": WEIGHTS, "env": PIPELINE_ENV, "pipeline_images_per_second": pipeline,
            "bare_images_per_second": bare, "ratio": pipeline["median"] / bare["median"],
            "goal_ratio": PIPELINE_GOAL_RATIO}


def matrix_peak_gflops() -> float:
    """This machine's practical float32 peak now: the best of ``PEAK_REPEATS`` NumPy products of
    two ``PEAK_MATRIX``² matrices, in GFLOP/s."""
    a = np.random.default_rng(SEED).random((PEAK_MATRIX, PEAK_MATRIX), dtype="float32")
    best = math.inf
    for _ in range(PEAK_REPEATS):
        start = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - start)
    return 2 * PEAK_MATRIX**3 / best / 1e9


def training_gflop_per_image(model: keras.Model) -> float:
    """Multiply-adds of one forward pass through the convolutions and dense layers, × 2 FLOP, × 3
    for forward + backward."""
    macs = 0
    for layer in models.all_layers(model):
        if isinstance(layer, keras.layers.Conv2D):
            height, width, channels = layer.output.shape[1:]
            macs += height * width * channels * int(np.prod(layer.kernel.shape[:-1]))
        elif isinstance(layer, keras.layers.Dense):
            macs += int(np.prod(layer.kernel.shape))
    return 3 * 2 * macs / 1e9


def bare_step_rate(model: keras.Model, batch_size: int, num_classes: int) -> float:
    """Images/s of the bare Keras train step: the same network compiled with plain Nesterov SGD,
    one fixed uint8 batch through ``train_on_batch`` (no augmentation, no callbacks, no input feed)."""
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True), loss="categorical_crossentropy")
    rng = np.random.default_rng(SEED)
    x = rng.integers(0, 256, (batch_size, *model.input.shape[1:]), dtype="uint8")
    y = np.eye(num_classes, dtype="float32")[rng.integers(0, num_classes, batch_size)]
    for _ in range(2):
        model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(BARE_STEPS):
        model.train_on_batch(x, y)
    return BARE_STEPS * batch_size / (time.perf_counter() - start)


def bench_cnn(size, timed: int, data, architectures: list[str], precisions: list[str]) -> dict:
    """Training images/s of each CNN with its own recipe, in each precision, through the pipeline's
    loop and through the bare Keras step; their ratio, the fraction of the machine's matrix-product
    peak (measured in the same run) the pipeline reaches; seconds per epoch and per full recipe."""
    train, validation, class_names = data
    conf = yaml.safe_load(CNN_CONF.read_text())["cnn_training"]
    peak = matrix_peak_gflops()
    print(f"\nmatrix-product peak: {peak:,.0f} GFLOP/s (float32, NumPy, {PEAK_MATRIX}²)", flush=True)
    results = {"matrix_peak_gflops": peak}
    for architecture in architectures:
        for precision in precisions:
            params = CNNTrainingParams.model_validate(conf | {"architecture": architecture, "checkpoint_dir": None})
            recipe = params.recipe
            key = architecture if precision == "float32" else f"{architecture} {precision}"
            print(f"\n{key}: {size(architecture):,} images, batch {recipe.batch_size}", flush=True)
            keras.backend.clear_session()
            settings = run_settings(precision=precision)
            model = cnn_nodes.build_model(class_names, cnn_nodes.input_statistics(train, params), params, settings)
            rate = measure_fit(model, first(train, size(architecture)), first(validation, VALIDATION_IMAGES), timed,
                               recipe, "train", settings)
            gflop = training_gflop_per_image(model)
            bare = bare_step_rate(model, recipe.batch_size, len(class_names))
            results[key] = {
                "architecture": architecture, "precision": precision, "batch_size": recipe.batch_size,
                "images": size(architecture), "params": model.count_params(), "images_per_second": rate,
                "bare_images_per_second": bare, "ratio": rate["median"] / bare, "goal_ratio": CNN_GOAL_RATIO,
                "training_gflop_per_image": gflop, "fraction_of_peak": rate["median"] * gflop / peak,
                "seconds_per_epoch": per_epoch_seconds(rate["median"]), "epochs": recipe.epochs,
                "full_recipe_seconds": recipe.epochs * per_epoch_seconds(rate["median"]),
            }
    run_settings()  # back to float32
    return results


# ---------------------------------------------------------------------------- report
def environment() -> dict:
    cpu = cpu_name()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"keras_backend": keras.backend.backend(), "keras": keras.__version__,
            "devices": keras.distribution.list_devices(), "cpu": cpu, "cpu_cores": cores,
            "python": platform.python_version(),
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def rate_cells(rate: dict) -> tuple[str, str]:
    return f"{rate['median']:,.1f}", f"{rate['min']:,.0f}–{rate['max']:,.0f}"


def print_report(results: dict) -> None:
    env, timed = results["environment"], results["timed_epochs"]
    method = f"median of {timed} timed epoch{'s' if timed > 1 else ''} after {WARMUP_EPOCHS} warm-up"
    print(f"\n=== training throughput — Keras {env['keras']} on {env['keras_backend']}, devices {env['devices']}, "
          f"{env['cpu_cores']} cores ({env['cpu']}); {method}"
          f"{' — QUICK smoke run, not a result' if results['quick'] else ''}")
    if "transfer" in results:
        t = results["transfer"]
        rates, images = t["images_per_second"], t["images"]
        print(f"\nTransfer: MobileNetV2 @{t['image_size']} px, batch {t['batch_size']}, weights: {t['weights']} "
              "(ImageNet weights cannot be downloaded here; speed does not depend on weight values)")
        row = "{:<46} | {:>7} | {:>11} | {:>13} | {:>12}"
        print(row.format("measurement", "images", "train img/s", "range", "s/epoch @40k"))
        print(row.format(*["-" * w for w in (46, 7, 11, 13, 12)]))
        for key, label in (("head_augmented", "(a) head, frozen base, augmentation on"),
                           ("feature_extraction", f"(b) feature extraction (inference, batch {t['eval_batch_size']})"),
                           ("head_on_features", "(b) head epochs on cached features"),
                           ("fine_tune", f"(c) fine-tuning from layer {t['fine_tune_at']}"),
                           ("fine_tune_cached", f"(d) the same, on cached {t['boundary']}")):
            print(row.format(label, f"{images[key]:,}", *rate_cells(rates[key]),
                             f"{per_epoch_seconds(rates[key]['median']):,.1f}"))
        s = t["head_stage_estimate"]
        print(f"whole head stage, {s['head_epochs']} epochs on {s['train_images']:,} train + {s['validation_images']:,} "
              f"validation images (from the medians): without cache {s['uncached_seconds']:,.0f} s, "
              f"with cached features {s['cached_seconds']:,.0f} s -> speed-up {s['speedup']:.1f}x")
    if "pipeline" in results:
        p = results["pipeline"]
        print(f"\nThrough `kedro run` vs bare Keras: MobileNetV2 @{p['image_size']} px head stage, batch "
              f"{p['batch_size']}, {p['train_images']:,} training images")
        row = "{:<24} | {:>11} | {:>13}"
        print(row.format("loop", "train img/s", "range"))
        print(row.format(*["-" * w for w in (24, 11, 13)]))
        print(row.format("bare Keras model.fit", *rate_cells(p["bare_images_per_second"])))
        print(row.format("kedro run (KedroSession)", *rate_cells(p["pipeline_images_per_second"])))
        met = "met" if p["ratio"] >= p["goal_ratio"] else "NOT met"
        print(f"ratio kedro / bare = {p['ratio']:.3f} (goal >= {p['goal_ratio']}: {met})")
    if "cnn" in results:
        cnn = dict(results["cnn"])
        peak = cnn.pop("matrix_peak_gflops")
        print(f"\nCNN architectures, each with its recipe from conf/base (seconds exclude validation); matrix-product "
              f"peak {peak:,.0f} GFLOP/s. ratio = pipeline / bare step (goal >= {CNN_GOAL_RATIO}); peak = the "
              "pipeline's GFLOP/s / the peak")
        line = "{:<26} | {:>5} | {:>10} | {:>11} | {:>13} | {:>9} | {:>5} | {:>5} | {:>12} | {:>6} | {:>11}"
        print(line.format("model", "batch", "params", "train img/s", "range", "bare img/s", "ratio", "peak",
                          "s/epoch @40k", "epochs", "full recipe"))
        print(line.format(*["-" * w for w in (26, 5, 10, 11, 13, 9, 5, 5, 12, 6, 11)]))
        for name, c in cnn.items():
            print(line.format(name, c["batch_size"], f"{c['params']:,}", *rate_cells(c["images_per_second"]),
                              f"{c['bare_images_per_second']:,.1f}", f"{c['ratio']:.2f}", f"{c['fraction_of_peak']:.2f}",
                              f"{c['seconds_per_epoch']:,.1f}", c["epochs"], f"{c['full_recipe_seconds'] / 60:,.1f} min"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=("transfer", "pipeline", "cnn"), help="run one part (default: all)")
    parser.add_argument("--timed-epochs", type=int, default=None,
                        help=f"epochs timed after the warm-up; the figure is their median (default {TIMED_EPOCHS}, "
                             f"--quick {QUICK_TIMED_EPOCHS})")
    parser.add_argument("--quick", action="store_true", help="smoke run with tiny sizes (figures are not results)")
    parser.add_argument("--architectures", default=",".join(CNN_ARCHITECTURES),
                        help="CNN blocks to measure, comma-separated (default: all)")
    parser.add_argument("--precisions", default="float32",
                        help="dtype policies for the CNNs, comma-separated, e.g. float32,mixed_bfloat16")
    args = parser.parse_args()
    parts = [args.only] if args.only else ["transfer", "pipeline", "cnn"]
    timed = args.timed_epochs or (QUICK_TIMED_EPOCHS if args.quick else TIMED_EPOCHS)

    def size(key: str) -> int:
        return IMAGES[key][1 if args.quick else 0]

    results = {"benchmark": "training", "quick": args.quick, "parts": parts, "warmup_epochs": WARMUP_EPOCHS,
               "timed_epochs": timed, "environment": environment()}
    print(f"Keras backend: {keras.backend.backend()}; devices: {results['environment']['devices']}; "
          f"{results['environment']['cpu_cores']} CPU cores", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-training-"))
    started = time.perf_counter()
    try:
        if "transfer" in parts or "cnn" in parts:
            largest = max(size(key) for key in ("head_augmented", "feature_extraction", "fine_tune", "fine_tune_cached",
                                                 *CNN_ARCHITECTURES))
            data = generated_images(largest, workdir)
        if "transfer" in parts:
            results["transfer"] = bench_transfer(size, timed, data)
        if "pipeline" in parts:
            results["pipeline"] = bench_pipeline(size, timed, workdir)
        if "cnn" in parts:
            results["cnn"] = bench_cnn(size, timed, data, args.architectures.split(","), args.precisions.split(","))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["total_seconds"] = time.perf_counter() - started

    name = "training" + ("-quick" if args.quick else "") + (f"-{args.only}" if args.only else "")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{name}.json").write_text(json.dumps(results, indent=2))
    print_report(results)
    print(f"\ntotal {results['total_seconds'] / 60:.1f} min; results: {(RESULTS_DIR / f'{name}.json').relative_to(PROJECT_ROOT)}")


if __name__ == "__main__":
    main()
