"""Parameters are checked before anything runs: a misspelt, misplaced, mistyped or out-of-range key
stops the run with the key, where it was set and what is allowed."""

from __future__ import annotations

import pytest
from kedro.validation import ParameterValidationError

from tests.conftest import run_session


def failure(project, env="demo", params=None, **run_args) -> str:
    with pytest.raises(ParameterValidationError) as error:
        run_session(project, env, params, **run_args)
    written = [p for p in (project / "data").rglob("*") if p.is_file()]
    assert written == []  # nothing read (the demo source would have been generated), nothing built
    return str(error.value)


def test_a_key_under_the_wrong_block_is_an_error_that_says_where_it_belongs(project):
    message = failure(project, params={"cnn_training": {"epochs": 1}})
    assert "'cnn_training.epochs' is not a known parameter (set in --params)" in message
    assert "cnn_training.resnet9.epochs" in message and "cnn_training.seed_cnn.epochs" in message


def test_a_misspelt_key_gets_the_nearest_known_one(project):
    message = failure(project, params={"transfer_training": {"head": {"epoch": 2}}})
    assert "'transfer_training.head.epoch' is not a known parameter" in message
    assert "Did you mean 'transfer_training.head.epochs'?" in message


def test_a_run_of_one_pipeline_checks_its_block_and_the_block_names(project):
    """`kedro run --pipelines data_processing` loads that pipeline alone (Kedro 1.7): its block is
    checked, and a block no pipeline owns is still an error."""
    message = failure(project, params={"data_processing": {"validation_fraction": 1.5}, "cnn_trainin": {}},
                      pipeline_names=["data_processing"])
    assert "'data_processing.validation_fraction' = 1.5" in message
    assert "'cnn_trainin' is not a known parameter" in message and "Did you mean 'cnn_training'?" in message


def test_a_misspelt_block_is_an_error_too(project):
    message = failure(project, params={"cnn_trainng": {"eval_batch_size": 1}})
    assert "'cnn_trainng' is not a known parameter (set in --params). Did you mean 'cnn_training'?" in message


@pytest.mark.parametrize(
    ("override", "expected", "allowed"),
    [
        ({"data_processing": {"validation_fraction": 1.5}},
         "'data_processing.validation_fraction' = 1.5 (set in conf/base/parameters_data_processing.yml then "
         "--params)", "Input should be less than 1"),
        ({"transfer_training": {"image_size": 20}},
         "'transfer_training.image_size' = 20 (set in conf/base/parameters_transfer_training.yml then "
         "conf/demo/parameters_transfer_training.yml then --params)", "greater than or equal to 32"),
        ({"transfer_training": {"head": {"optimizer": {"learning_rate": -0.001}}}},
         "'transfer_training.head.optimizer.learning_rate' = -0.001", "greater than or equal to 0"),
        ({"runtime": {"precision": "float8"}},
         "'runtime.precision' = 'float8' (set in conf/base/parameters_runtime.yml then --params)", "'mixed_bfloat16'"),
        ({"cnn_training": {"resnet9": {"batch_size": "many"}}},
         "'cnn_training.resnet9.batch_size' = 'many'", "valid integer"),
        ({"cnn_training": {"architecture": "vgg16"}},
         "'cnn_training.architecture' = 'vgg16'", "'resnet9' or 'seed_cnn'"),
    ],
    ids=["fraction", "image_size", "negative_rate", "runtime", "type", "architecture"],
)
def test_a_bad_value_names_the_key_its_sources_and_what_is_allowed(project, override, expected, allowed):
    message = failure(project, params=override)
    assert expected in message
    assert allowed in message


def test_a_bad_value_in_an_environment_file_names_that_file(project):
    (project / "conf/local/parameters_mine.yml").write_text("transfer_training:\n  fine_tune:\n    optimizer:\n"
                                                           "      learning_rate:\n        knots: [[0, 0.0], [0.5, 0.001]]\n")
    message = failure(project, env="local")
    assert "'transfer_training.fine_tune.optimizer.learning_rate'" in message
    assert "conf/local/parameters_mine.yml" in message
    assert "knots must start at fraction 0, end at fraction 1" in message


def test_valid_parameters_pass_and_reach_the_nodes_typed(project):
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from cifar_kedro.pipelines.transfer_training.schema import TransferTrainingParams

    bootstrap_project(project)
    with KedroSession.create(project_path=project, env="demo",
                             runtime_params={"transfer_training": {"head": {"epochs": 3}}}) as session:
        params = session.load_context().params
    assert isinstance(params["transfer_training"], TransferTrainingParams)
    assert params["transfer_training"].head.epochs == 3
    assert params["transfer_training"].head.batch_size == 128  # the rest of the stage from conf/base (soft merge)


def test_a_key_deleted_from_the_conf_is_an_error_not_a_silent_default(project):
    """One source of truth: a value the study uses has no second copy in a schema's default."""
    path = project / "conf/base/parameters_transfer_training.yml"
    text = path.read_text()
    assert "  cached_views: [original, mirrored, augmented, augmented]\n" in text
    path.write_text(text.replace("  cached_views: [original, mirrored, augmented, augmented]\n", ""))
    message = failure(project)
    assert "transfer_training.cached_views" in message


def test_schema_defaults_only_switch_things_off():
    """Where a schema has a default, it is "off" (0, false, none, empty): every value that shapes the
    experiment is written in conf/base, once."""
    from pydantic import BaseModel

    from cifar_kedro.pipelines.cnn_training.schema import CNNTrainingParams
    from cifar_kedro.pipelines.transfer_training.schema import TransferTrainingParams
    from cifar_kedro.schemas import Runtime

    def defaults(model: type[BaseModel], prefix: str):
        for name, field in model.model_fields.items():
            if not field.is_required():
                yield f"{prefix}.{name}", field.get_default(call_default_factory=True)
            for kind in getattr(field.annotation, "__args__", (field.annotation,)):
                if isinstance(kind, type) and issubclass(kind, BaseModel):
                    yield from defaults(kind, f"{prefix}.{name}")

    found = dict(pair for model in (CNNTrainingParams, TransferTrainingParams, Runtime)
                 for pair in defaults(model, model.__name__))
    assert found  # the walk reached the nested stages
    # How a switched-on rotation or shift samples the image: Keras' own defaults.
    sampling = ("fill_mode", "interpolation")
    switched_on = {key: value for key, value in found.items() if value not in (None, False, 0, 0.0, [], {})
                   and not isinstance(value, BaseModel) and not key.endswith(sampling)}
    # An empty block (augmentation with every step off) counts as off too.
    switched_on |= {key: value for key, value in found.items() if isinstance(value, BaseModel)
                    and any(v not in (None, False, 0, 0.0, [], {}) for v in value.model_dump().values()
                            if not isinstance(v, str))}
    assert switched_on == {}


@pytest.mark.parametrize("env", ["base", "local", "cpu", "demo", "gpu", "images"])
def test_every_shipped_environment_passes_the_check(env):
    """A profile's file can drift from the schema without any run of it in the fast tests: each
    environment, merged over base as `kedro run --env` merges it, passes the same check."""
    from kedro.config import OmegaConfigLoader
    from kedro.framework.project import pipelines
    from kedro.framework.startup import bootstrap_project

    from cifar_kedro import parameters
    from cifar_kedro.settings import CONFIG_LOADER_ARGS
    from tests.conftest import PROJECT_ROOT

    bootstrap_project(PROJECT_ROOT)
    loader = OmegaConfigLoader(str(PROJECT_ROOT / "conf"), env=env, **CONFIG_LOADER_ARGS)
    models = parameters.schemas(pipelines)
    assert {"transfer_training", "cnn_training", "reporting"} <= set(models)  # the check has the schemas
    assert parameters.check(loader["parameters"], models, {}, known=parameters.known_blocks()) == []
