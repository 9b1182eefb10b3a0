"""deploy/airflow_dag.j2 rendered by kedro-airflow's own ``create`` command, in this process: one
task per pipeline in conf/base/airflow.yml's stages. (``kedro package`` and the DAG made by a
``kedro`` subprocess from a copy of the project: tests/test_deployment.py, slow.)"""

from __future__ import annotations

import ast

import pytest
from click.testing import CliRunner
from kedro.framework.startup import bootstrap_project

from tests.conftest import PROJECT_ROOT

plugin = pytest.importorskip("kedro_airflow.plugin")


def create_dag(target, *args: str) -> str:
    metadata = bootstrap_project(PROJECT_ROOT)
    result = CliRunner().invoke(plugin.create, ["--jinja-file", str(PROJECT_ROOT / "deploy/airflow_dag.j2"),
                                                "--target-dir", str(target), *args], obj=metadata)
    assert result.exit_code == 0, result.output + repr(result.exception)
    (dag,) = target.glob("*.py")
    return dag.read_text()


def test_the_dag_runs_each_pipeline_as_one_task_in_the_stages_order(tmp_path):
    text = create_dag(tmp_path / "dags", "--env", "demo")
    tree = ast.parse(text)  # valid Python (Airflow itself is not installed here)
    tasks = {node.args[0].value for node in ast.walk(tree) if isinstance(node, ast.Call)
             and getattr(node.func, "id", None) == "_run_pipeline"}
    assert tasks == {"data_processing", "transfer_training", "cnn_training", "reporting"}
    edges = {(a.slice.value, b.slice.value) for node in ast.walk(tree) if isinstance(node, ast.BinOp)
             and isinstance(node.op, ast.RShift) for a, b in [(node.left, node.right)]}
    assert edges == {("data_processing", "transfer_training"), ("data_processing", "cnn_training"),
                     ("transfer_training", "reporting"), ("cnn_training", "reporting")}
    assert 'env = "demo"' in text and 'dag_id="cifar_kedro_demo"' in text
    # The trainings go to the accelerator queue, the others to the default pool.
    assert 'task_id="cnn_training", queue="gpu"' in text and 'task_id="reporting")' in text
    assert "start_date=datetime(2026, 1, 1)" in text and "schedule=None" in text


def test_the_local_env_dag_has_the_plain_package_name(tmp_path):
    text = create_dag(tmp_path / "dags")
    assert 'env = "local"' in text and 'dag_id="cifar_kedro"' in text
