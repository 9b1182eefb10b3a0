"""Parameters of the reporting pipeline (conf/base/parameters_reporting.yml)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from cifar_kedro.schemas import Params, PositiveInt

Probability = Annotated[float, Field(gt=0.0, lt=1.0)]
Size = tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]]


class Predict(Params):
    batch_size: PositiveInt


class Metrics(Params):
    confidence: Probability  # of each Wilson interval; 1 - confidence is McNemar's alpha
    mcnemar_exact_below: PositiveInt


class StudyReference(Params):
    label: str
    test_accuracy: dict[str, Annotated[float, Field(ge=0.0, le=1.0)]]


class Overfitting(Params):
    mild: Annotated[float, Field(ge=0.0)]
    strong: Annotated[float, Field(ge=0.0)]


class Figure(Params):
    figsize: Size


class Grid(Params):
    rows: PositiveInt
    cols: PositiveInt
    seed: int
    cell_size: Annotated[float, Field(gt=0)]


class AugmentationExamples(Params):
    n_images: PositiveInt
    n_augmented: PositiveInt
    seed: int
    cell_size: Annotated[float, Field(gt=0)]


class Plots(Params):
    confusion_matrix: Figure
    sample_predictions: Grid
    training_curves: Figure
    augmentation_examples: AugmentationExamples
    model_comparison: Figure
    fine_tune_experiments: Figure
    accuracy_against_time: Figure


class EqualTime(Params):
    minutes: list[Annotated[float, Field(gt=0)]] = Field(min_length=1)  # training minutes to compare the models at


class Report(Params):
    title: str
    percent_decimals: Annotated[int, Field(ge=0)]
    metric_decimals: Annotated[int, Field(ge=0)]
    figure_link: str  # {name} and {version} are filled in
    n_best_worst_classes: PositiveInt
    n_confused_pairs: PositiveInt
    packages: list[str]


class ReportingParams(Params):
    predict: Predict
    metrics: Metrics
    study_reference: StudyReference
    overfitting: Overfitting
    equal_time: EqualTime
    plots: Plots
    report: Report
