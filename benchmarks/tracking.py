"""Benchmark: what experiment tracking (the `mlflow` extra) costs a run.

The demo run (`kedro run --env demo`, all four pipelines) in a throw-away project, alternately:
  untracked  MLflow and kedro-mlflow hidden from the process (as where the extra is not installed):
             the same import blocker as tests/test_backends.py, through a sitecustomize.py;
  tracked    the extra as installed, into a fresh SQLite store in the project (conf/base/mlflow.yml).
Each run starts from empty data/ and checkpoints, `--repeat` times each. Reports wall seconds of the
whole command, the runner's pipeline seconds, peak memory, and what the tracked run logged.

    python benchmarks/tracking.py --repeat 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
from pathlib import Path

from scratch_project import DATA_FOLDERS, PROJECT_ROOT, kedro_run, make_project

from cifar_kedro.hidden_packages import write_blocker  # the test suite's "not installed" blocker too


def fresh(project: Path) -> None:
    """Empty data/ and no tracking store: every run does the same work."""
    shutil.rmtree(project / "data", ignore_errors=True)
    for folder in DATA_FOLDERS:
        (project / "data" / folder).mkdir(parents=True)
    for name in ("mlflow.db", "mlruns"):
        path = project / name
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def logged(project: Path) -> dict:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("cifar-kedro").experiment_id])
    artifacts = [a.path for folder in ("reporting", "model_output") for a in client.list_artifacts(run.info.run_id, folder)]
    steps = sum(len(client.get_metric_history(run.info.run_id, key)) for key in run.data.metrics)
    return {"params": len(run.data.params), "metric_keys": len(run.data.metrics), "metric_values": steps,
            "artifacts": len(artifacts), "models": len(client.search_logged_models([run.info.experiment_id]))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-tracking-"))
    project = make_project(workdir / "project")
    blocker = write_blocker(workdir / "hide_mlflow", ("mlflow", "kedro_mlflow"), ("kedro_mlflow",))
    runs: dict[str, list[dict]] = {"untracked": [], "tracked": []}
    for _ in range(args.repeat):
        for mode in runs:
            fresh(project)
            extra_env = {"PYTHONPATH": str(blocker)} if mode == "untracked" else {}
            extra_env["MLFLOW_TRACKING_URI"] = f"sqlite:///{project / 'mlflow.db'}"
            result = kedro_run(project, ["--env", "demo"], log_name=f"{mode}.log", extra_env=extra_env)
            if mode == "tracked":
                result["logged"] = logged(project)
            else:
                assert not (project / "mlflow.db").exists(), "the untracked run wrote a tracking store"
            runs[mode].append(result)
            print(f"{mode:9s} wall {result['wall_seconds']:6.1f} s · pipeline {result['pipeline_seconds']:6.1f} s · "
                  f"peak {result['peak_rss_mib']:6.0f} MiB", flush=True)

    summary = {mode: {key: statistics.median(r[key] for r in results)
                      for key in ("wall_seconds", "pipeline_seconds", "peak_rss_mib")}
               for mode, results in runs.items()}
    overhead = summary["tracked"]["wall_seconds"] - summary["untracked"]["wall_seconds"]
    print(f"\nmedian wall: untracked {summary['untracked']['wall_seconds']:.1f} s, tracked "
          f"{summary['tracked']['wall_seconds']:.1f} s: tracking costs {overhead:+.1f} s "
          f"({100 * overhead / summary['untracked']['wall_seconds']:+.1f}%); logged {runs['tracked'][-1]['logged']}")
    out = PROJECT_ROOT / "benchmarks/results/tracking.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"runs": runs, "median": summary, "overhead_seconds": overhead}, indent=1))
    shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
