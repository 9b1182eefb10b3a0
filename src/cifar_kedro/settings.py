"""Project settings. See https://docs.kedro.org/en/stable/configure/configuration_basics/"""

from cifar_kedro.hooks import ParameterCheckHooks, TrainingCheckpointHooks

# Checks every parameter before anything runs; clears a training pipeline's resume checkpoints
# once its final model is safely saved.
HOOKS = (ParameterCheckHooks(), TrainingCheckpointHooks())

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # An environment (demo, gpu) or `--params` overrides single keys of a
    # pipeline's parameters instead of replacing the whole top-level block.
    "merge_strategy": {"parameters": "soft"},
}
