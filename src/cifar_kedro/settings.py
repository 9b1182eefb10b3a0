"""Project settings. See https://docs.kedro.org/en/stable/configure/configuration_basics/"""

from omegaconf.resolvers import oc

from cifar_kedro import tracking
from cifar_kedro.hooks import ParameterCheckHooks, ReleaseMemoryHooks, RuntimeHooks, TrainingCheckpointHooks

# Checks every parameter before anything runs; sets the run-wide state (seed, precision,
# distribution) once before the pipeline runs; clears a training pipeline's resume checkpoints
# once its final model is safely saved. With the `mlflow` extra, tracking hooks come first
# (pluggy calls the last registered first, so the parameter check runs before any MLflow set-up).
HOOKS = (*tracking.hooks(), ParameterCheckHooks(), RuntimeHooks(), TrainingCheckpointHooks(), ReleaseMemoryHooks())

# kedro-mlflow's hook is registered above, adapted to typed parameters (cifar_kedro.tracking),
# instead of through its plugin entry point.
DISABLE_HOOKS_FOR_PLUGINS = ("kedro_mlflow", "kedro-mlflow")

CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # An environment (demo, gpu) or `--params` overrides single keys of a
    # pipeline's parameters instead of replacing the whole top-level block.
    "merge_strategy": {"parameters": "soft"},
    # ${oc.env:VAR,default} beyond credentials: mlflow.yml reads MLFLOW_TRACKING_URI.
    "custom_resolvers": {"oc.env": oc.env},
}
