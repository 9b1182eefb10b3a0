"""What the benchmarks share: a throw-away copy of the project, and `kedro run` in it, timed."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DATA_FOLDERS = ("01_raw", "02_intermediate", "03_primary", "04_feature", "05_model_input", "06_models",
                "07_model_output", "08_reporting")
TIME_BINARY = "/usr/bin/time"  # GNU time; `-v` reports "Maximum resident set size (kbytes)"
RUN_ENV = {
    "DO_NOT_TRACK": "1",
    "KEDRO_DISABLE_TELEMETRY": "true",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "COLUMNS": "200",  # keep Kedro's rich log lines unwrapped, so they can be parsed
}
KIB_PER_MIB = 1024
LOG_TAIL_LINES = 40  # shown when the run fails


def cpu_name() -> str:
    """The processor's model name (figures are named by it: sessions do not always get the same one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def make_project(path: Path) -> Path:
    """A copy of the project's configuration in ``path`` with an empty data/ tree (the package is installed)."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(PROJECT_ROOT / "pyproject.toml", path / "pyproject.toml")
    shutil.copytree(PROJECT_ROOT / "conf", path / "conf", ignore=shutil.ignore_patterns("local"))
    (path / "conf" / "local").mkdir()
    (path / "src").mkdir()
    for folder in DATA_FOLDERS:
        (path / "data" / folder).mkdir(parents=True, exist_ok=True)
    return path


def kedro_run(project: Path, args: list[str], log_name: str = "kedro-run.log", extra_env: dict | None = None) -> dict:
    """``kedro run ARGS`` as a subprocess in ``project``: wall seconds of the whole command, peak
    resident memory (``/usr/bin/time -v`` where it exists, else the child's rusage from
    ``os.wait4``), and the runner's own "completed successfully in X sec". Exits on failure."""
    command = [sys.executable, "-m", "kedro", "run", *args]
    time_report = project / "time-v.txt"
    if os.path.exists(TIME_BINARY):
        command = [TIME_BINARY, "-v", "-o", str(time_report), *command]
    log_path = project / log_name
    env = {**os.environ, **RUN_ENV, **(extra_env or {})}
    with open(log_path, "w") as log:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
    process.returncode = exit_code = os.waitstatus_to_exitcode(status)  # reaped by wait4, tell Popen
    log_text = log_path.read_text(errors="replace")
    if exit_code != 0:
        tail = "\n".join(log_text.splitlines()[-LOG_TAIL_LINES:])
        raise SystemExit(f"`{' '.join(command)}` failed with exit code {exit_code}:\n{tail}")

    result = {"command": "kedro run " + " ".join(args), "wall_seconds": wall}
    if time_report.exists():
        report = time_report.read_text()
        result["peak_rss_mib"] = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", report)[1]) / KIB_PER_MIB
        result["peak_rss_source"] = f"{TIME_BINARY} -v"
    else:
        result["peak_rss_mib"] = usage.ru_maxrss / KIB_PER_MIB  # Linux: KiB
        result["peak_rss_source"] = "os.wait4 rusage of the child"
    runner = re.search(r"completed successfully in\s+([\d.]+)\s*sec", log_text)
    result["pipeline_seconds"] = float(runner[1]) if runner else None
    return result
