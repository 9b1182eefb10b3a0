"""The ``reporting`` pipeline's last node: the comparison report as markdown (linking the plots of
the same run) and as HTML (plots embedded).

The text is the Jinja2 template ``templates/report.md.j2``, rendered twice from one context (the
rows of ``model_comparison.csv`` and a few numbers computed here): once with each plot linked,
once with each plot embedded, which markdown-it-py turns into the HTML page (``report.html.j2``).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from markdown_it import MarkdownIt
from matplotlib.figure import Figure

from cifar_kedro.report_datasets import SAVE_VERSION

from .schema import Overfitting, ReportingParams

# Figures the report places in each model's section, by the suffix of their dataset name.
MODEL_FIGURES = {
    "training_curves": "Training history",
    "confusion_matrix": "Confusion matrix",
    "sample_predictions": "Sample predictions",
    "augmentation_examples": "Augmentation examples",
}


# ----------------------------------------------------------------------------- formats and helpers


def _pct(value: float | None, decimals: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{100 * value:.{decimals}f}%"


def _pp(value: float, decimals: int) -> str:
    return f"{100 * value:+.{decimals}f} pp"


def _table_cell(value: Any) -> str:
    """``value`` as the text of a markdown table cell."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def _lr(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def _overfitting_verdict(gap: float, thresholds: Overfitting) -> str:
    if gap > thresholds.strong:
        return "strong overfitting"
    if gap > thresholds.mild:
        return "mild overfitting"
    if gap < 0:
        return "no overfitting (validation above training — regularisation is active while training)"
    return "no meaningful overfitting"


def _top_confusions(summary: dict[str, Any], n: int) -> list[tuple[str, str, int, float]]:
    counts = np.asarray(summary["confusion_matrix"])
    names = summary["class_names"]
    off_diagonal = [(counts[i, j], i, j) for i in range(len(names)) for j in range(len(names)) if i != j]
    off_diagonal.sort(key=lambda item: (-item[0], item[1], item[2]))
    result = []
    for count, i, j in off_diagonal[:n]:
        if count == 0:
            break
        support = counts[i].sum()
        result.append((names[i], names[j], int(count), float(count / support) if support else 0.0))
    return result


def _cell(value: Any) -> str:
    """A value of ``model_comparison.csv`` as the report's comparison table shows it."""
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def _png_bytes(figure: bytes | Figure) -> bytes:
    if isinstance(figure, bytes | bytearray):
        return bytes(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


# ----------------------------------------------------------------------------- the template's context


def _lead(rows: list[dict[str, Any]], pairs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first-ranked model against the last, and their paired test (None for a single model)."""
    if len(rows) < 2:
        return None
    best, worst = rows[0], rows[-1]
    pair = next((p for p in pairs if {p["model_a"], p["model_b"]} == {best["model"], worst["model"]}), None)
    return {"best": best, "worst": worst, "gap": best["test_accuracy"] - worst["test_accuracy"], "pair": pair}


def _model_detail(summary: dict[str, Any], params: ReportingParams) -> dict[str, Any]:
    """A model's best and worst classes by F1 (as ``(class, F1)``) and its most frequent confusions."""
    per_class = summary["per_class"]
    n = int(params.report.n_best_worst_classes)
    by_f1 = sorted(per_class, key=lambda name: per_class[name]["f1_score"])
    return {
        "best": [(name, per_class[name]["f1_score"]) for name in reversed(by_f1[-n:])],
        "worst": [(name, per_class[name]["f1_score"]) for name in by_f1[:n]],
        "confusions": _top_confusions(summary, int(params.report.n_confused_pairs)),
    }


def _placed_figures(rows: list[dict[str, Any]], experiments: list[dict[str, Any]]) -> set[str]:
    """The figures the template places in its sections; any other figure goes under *Other figures*."""
    placed = {"model_comparison_chart", "accuracy_against_time_chart",
              *(f"{row['model']}_{kind}" for row in rows for kind in MODEL_FIGURES)}
    return placed | ({"fine_tune_experiments_chart"} if experiments else set())


def _context(
    model_comparison: pd.DataFrame,
    summaries: dict[str, dict[str, Any]],
    paired_comparison: dict[str, Any],
    fine_tune_experiments: pd.DataFrame,
    equal_time: dict[str, Any],
    run_metadata: dict[str, Any],
    params: ReportingParams,
    figure_names: list[str],
) -> dict[str, Any]:
    """What ``report.md.j2`` is rendered from: the inputs of the report and the numbers computed from them."""
    rows = model_comparison.to_dict("records")
    experiments = fine_tune_experiments.to_dict("records")
    placed = _placed_figures(rows, experiments)
    return {
        "title": params.report.title,
        "save_version": SAVE_VERSION,
        "run": run_metadata,
        "data": run_metadata["data"],
        "accelerators": ", ".join(run_metadata["device"]["accelerators"]),
        "study": params.study_reference,
        "overfitting": params.overfitting,
        "confidence_pct": f"{100 * float(params.metrics.confidence):g}",
        "alpha": 1 - float(params.metrics.confidence),  # McNemar's
        "rows": rows,  # ranked
        "columns": list(model_comparison.columns),
        "smallest": min(rows, key=lambda row: row["params_total"]),  # by parameters
        "lead": _lead(rows, paired_comparison["pairs"]),
        "pairs": paired_comparison["pairs"],
        "summaries": summaries,
        "details": {row["model"]: _model_detail(summaries[row["model"]], params) for row in rows},
        "experiments": experiments,
        "equal_time": equal_time,
        "model_figures": MODEL_FIGURES,
        "others": [name for name in figure_names if name not in placed],
    }


# ----------------------------------------------------------------------------- rendering


def _environment(params: ReportingParams) -> jinja2.Environment:
    """The templates of ``templates/`` (package data), with the report's number formats as filters."""
    percent, metric = int(params.report.percent_decimals), int(params.report.metric_decimals)
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader(__package__, "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # markdown; the HTML page escapes its title with html_escape
    )
    environment.filters.update(
        pct=lambda value: _pct(value, percent),
        pct_or_dash=lambda value: "—" if value is None else _pct(value, percent),
        pp=lambda value: _pp(value, percent),
        metric=lambda value: f"{value:.{metric}f}",
        fmt=format,
        cell=_table_cell,
        csv_cell=_cell,
        lr=_lr,
        verdict=lambda gap: _overfitting_verdict(gap, params.overfitting),
        pretty_json=lambda value: json.dumps(value, indent=2, sort_keys=True, default=str),
        html_escape=html.escape,
    )
    environment.tests["nan"] = lambda value: isinstance(value, float) and math.isnan(value)
    return environment


def _render_markdown(environment: jinja2.Environment, context: dict[str, Any], images: dict[str, str]) -> str:
    """``report.md.j2`` with each figure's image source from ``images`` (by dataset name)."""
    return environment.get_template("report.md.j2").render(context, images=images).rstrip() + "\n"


def write_comparison_report(
    model_comparison: pd.DataFrame,
    model_summaries: dict[str, dict[str, Any]],
    paired_comparison: dict[str, Any],
    fine_tune_experiments: pd.DataFrame,
    equal_time: dict[str, Any],
    run_metadata: dict[str, Any],
    params: ReportingParams,
    **figures: bytes,
) -> tuple[str, str]:
    """The comparison report, as markdown linking the plots and as HTML embedding them.

    The markdown links each figure with ``params.report.figure_link``, its ``{version}`` left
    as ``SAVE_VERSION`` for the versioned text dataset to fill in, so the links point at the plots
    of the same run. ``figures`` maps each figure's dataset name to its PNG bytes (as
    ``FigureDataset`` loads them) or to the ``Figure`` itself (an in-memory run).
    """
    pngs = {name: _png_bytes(figure) for name, figure in figures.items()}
    environment = _environment(params)
    context = _context(model_comparison, model_summaries, paired_comparison, fine_tune_experiments, equal_time,
                       run_metadata, params, list(figures))
    link = params.report.figure_link
    markdown = _render_markdown(
        environment, context, {name: link.format(name=name, version=SAVE_VERSION) for name in pngs})
    embedded = _render_markdown(
        environment, context,
        {name: "data:image/png;base64," + base64.b64encode(png).decode("ascii") for name, png in pngs.items()})
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(embedded)
    page = environment.get_template("report.html.j2").render(title=params.report.title, body=body)
    return markdown, page
