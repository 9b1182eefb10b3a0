"""Benchmark: training images/s on 1 vs N devices with `distribution: data_parallel` (JAX).

Each device count runs in a child process that sees that many devices: on a machine with several
GPUs, the first N (`CUDA_VISIBLE_DEVICES`); with `--virtual`, N virtual XLA CPU devices sharing
this machine's cores (`--xla_force_host_platform_device_count`), which checks the mechanism and
its overhead but is not a speed-up. The model is a CNN block with its own recipe from
conf/base/parameters_cnn_training.yml (default ResNet-9) at its global batch size, trained by
`cifar_kedro.training.fit` on generated CIFAR-size images; 1 warm-up epoch (compilation), then
`--timed-epochs` epochs; the figure is their median training images/s (benchmarks/training.py's
method). Scaling efficiency = images/s on N devices / (N × images/s on 1).

    python benchmarks/data_parallel.py --devices 1,2,4,8                        # GPUs
    python benchmarks/data_parallel.py --virtual --devices 1,2 --images 2048     # this CPU
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
RESULTS = PROJECT_ROOT / "benchmarks/results/data_parallel.json"
MARK = "RESULT "


def child(args: argparse.Namespace) -> None:
    import tempfile

    import keras
    import yaml
    from training import CNN_CONF, VALIDATION_IMAGES, environment, first, generated_images, measure_fit, run_settings

    from cifar_kedro import runtime
    from cifar_kedro.pipelines.cnn_training import nodes
    from cifar_kedro.pipelines.cnn_training.schema import CNNTrainingParams

    conf = yaml.safe_load(CNN_CONF.read_text())["cnn_training"]
    params = CNNTrainingParams.model_validate(conf | {"architecture": args.architecture, "checkpoint_dir": None})
    recipe = params.recipe
    settings = run_settings(distribution="data_parallel")
    train, validation, names = generated_images(args.images, Path(tempfile.mkdtemp(prefix="bench-dp-")))
    model = nodes.build_model(names, nodes.input_statistics(train, params), params, settings)
    rate = measure_fit(model, first(train, args.images), first(validation, VALIDATION_IMAGES), args.timed_epochs,
                       recipe, "train", settings)
    print(MARK + json.dumps({"devices": keras.distribution.list_devices(), "devices_per_batch": runtime.devices_per_batch(),
                             "batch_size": recipe.batch_size, "images": args.images, "images_per_second": rate,
                             "environment": environment()}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", default="1,2", help="device counts to compare, e.g. 1,2,4,8")
    parser.add_argument("--virtual", action="store_true", help="virtual CPU devices instead of GPUs")
    parser.add_argument("--architecture", default="resnet9", choices=("seed_cnn", "resnet9", "airbench94", "airbench96"))
    parser.add_argument("--images", type=int, default=10_240, help="training images per epoch")
    parser.add_argument("--timed-epochs", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    results = []
    for count in (int(n) for n in args.devices.split(",")):
        env = {**os.environ, "KERAS_BACKEND": "jax", "DO_NOT_TRACK": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        if args.virtual:
            env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={count}".strip()
        else:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(count))
        command = [sys.executable, __file__, "--child", "--architecture", args.architecture,
                   "--images", str(args.images), "--timed-epochs", str(args.timed_epochs)]
        done = subprocess.run(command, env=env, cwd=Path(__file__).parent, capture_output=True, text=True)
        line = next((l for l in done.stdout.splitlines() if l.startswith(MARK)), None)
        if done.returncode or line is None:
            raise SystemExit(f"{count} device(s) failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        result = json.loads(line.removeprefix(MARK))
        results.append(result)
        base = results[0]["images_per_second"]["median"]
        rate = result["images_per_second"]["median"]
        print(f"{result['devices_per_batch']} device(s) {result['devices']}: {rate:,.1f} images/s "
              f"(epochs {result['images_per_second']['min']:,.0f}–{result['images_per_second']['max']:,.0f}), "
              f"speed-up {rate / base:.2f}×, efficiency {rate / base / result['devices_per_batch']:.0%}",
              flush=True)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps({"architecture": args.architecture, "virtual": args.virtual, "runs": results}, indent=1))
    print(f"results: {RESULTS.relative_to(PROJECT_ROOT)}")


if __name__ == "__main__":
    main()
