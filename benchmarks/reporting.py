"""Benchmark: the `reporting` pipeline node by node, on the outputs of a finished run.

    python benchmarks/reporting.py PROJECT [--env ENV] [--repeat N]

PROJECT is a project folder that holds a finished run (e.g. the `--workdir` of `real_study.py`, or
any project after `kedro run`). The reporting pipeline runs there in this process through a
KedroSession, with a hook that times, per node: loading its inputs, the node function itself, and
saving its outputs (so a slow dataset shows apart from a slow node). Each repeat writes a new
version of the reports, as `kedro run --pipelines reporting` does. Prints a table, slowest first,
and writes benchmarks/results/reporting.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections import defaultdict
from pathlib import Path

from kedro.framework.hooks import hook_impl

from scratch_project import PROJECT_ROOT, RUN_ENV


class NodeTimes:
    """Seconds per node: inputs loaded, function run, outputs saved."""

    def __init__(self):
        self.seconds: dict[str, dict[str, float]] = defaultdict(lambda: {"load": 0.0, "run": 0.0, "save": 0.0})
        self.node = None

    @hook_impl
    def before_node_run(self, node):
        self.node, self.start = node.name, time.perf_counter()

    @hook_impl
    def after_node_run(self, node):
        self.seconds[node.name]["run"] += time.perf_counter() - self.start
        self.node = node.name

    @hook_impl
    def before_dataset_loaded(self, dataset_name, node):
        self.io_start = time.perf_counter()

    @hook_impl
    def after_dataset_loaded(self, dataset_name, data, node):
        self.seconds[node.name]["load"] += time.perf_counter() - self.io_start

    @hook_impl
    def before_dataset_saved(self, dataset_name, data, node):
        self.io_start = time.perf_counter()

    @hook_impl
    def after_dataset_saved(self, dataset_name, data, node):
        self.seconds[node.name]["save"] += time.perf_counter() - self.io_start


def run_reporting(project: Path, env: str | None) -> tuple[dict[str, dict[str, float]], float]:
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project)
    times = NodeTimes()
    os.chdir(project)
    with KedroSession.create(project_path=project, env=env) as session:
        session._hook_manager.register(times)
        start = time.perf_counter()
        session.run(pipeline_names=["reporting"])
        wall = time.perf_counter() - start
    return dict(times.seconds), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("project", help="a project folder holding a finished run")
    parser.add_argument("--env", default=None, help="the Kedro environment the run used")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--name", default="reporting", help="results file name (benchmarks/results/NAME.json)")
    args = parser.parse_args()
    os.environ.update({key: value for key, value in RUN_ENV.items() if key != "COLUMNS"})
    project = Path(args.project).resolve()

    runs = []
    for repeat in range(args.repeat):
        seconds, wall = run_reporting(project, args.env)
        runs.append({"wall_seconds": wall, "nodes": seconds})
        print(f"\nrun {repeat + 1}: the reporting pipeline in {wall:.1f} s ({platform.processor() or platform.machine()})")
        print(f"{'node':45} {'load s':>8} {'run s':>8} {'save s':>8} {'total s':>8}")
        for name, parts in sorted(seconds.items(), key=lambda item: -sum(item[1].values())):
            print(f"{name:45} {parts['load']:8.2f} {parts['run']:8.2f} {parts['save']:8.2f} {sum(parts.values()):8.2f}")

    results = PROJECT_ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / f"{args.name}.json").write_text(json.dumps(
        {"benchmark": "reporting", "project": str(project), "env": args.env, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
