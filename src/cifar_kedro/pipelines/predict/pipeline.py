"""predict: wiring only. One instance per model, under its namespace; pick one with
``kedro run --pipelines predict --namespaces cnn`` (or ``cifar-kedro predict PATH… --model cnn``)."""

from kedro.pipeline import Node, Pipeline

from cifar_kedro.study import MODELS

from .nodes import plot_contact_sheet, predict_new_images, read_new_images


def template() -> Pipeline:
    return Pipeline([
        Node(read_new_images, ["model", "params:predict"], "new_images", name="read_new_images"),
        Node(predict_new_images, ["model", "history", "new_images", "params:predict"], "predictions",
             name="predict_new_images"),
        Node(plot_contact_sheet, ["new_images", "predictions", "params:predict"], "prediction_sheet",
             name="plot_contact_sheet"),
    ])


def create_pipeline(**kwargs) -> Pipeline:
    return sum(
        (Pipeline(template(), namespace=model,
                  inputs={"model": f"{model}_model", "history": f"{model}_history"},
                  outputs={"predictions": f"{model}_predictions", "prediction_sheet": f"{model}_prediction_sheet"},
                  parameters={"params:predict"})
         for model in MODELS),
        Pipeline([]),
    )
