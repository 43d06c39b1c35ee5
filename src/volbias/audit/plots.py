"""Figures of the audit report, drawn with the book's plotting functions on backend-free figures.

Each function returns a :class:`matplotlib.figure.Figure` (no pyplot state), so the report can be written
from any process; a notebook shows the figure by displaying it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from volbias.analysis.plots import loss_palette, plot_bland_altman, plot_reliability, plot_volume_scatter
from volbias.analysis.present import loss_label
from volbias.audit.calibration import pool_tables
from volbias.audit.measures import HISTOGRAM_MIN_PROBABILITY
from volbias.audit.result import AuditResult
from volbias.audit.summary import pooled_histogram


def _book_columns(cases: pd.DataFrame, model: str) -> pd.DataFrame:
    """The audit's columns under the names the book's volume plots read; the model stands in the ``loss``
    column, so that it gets the colour and label of :func:`volbias.analysis.plots.loss_colour` as in the
    calibration figure (a loss's own colour when the model is named after one, as the book's are)."""
    return cases.assign(loss=model, pred_volume_soft=cases["soft_volume_ml"],
                        pred_volume_hard=cases["hard_volume_ml"])


def volume_figure(cases: pd.DataFrame, model: str, threshold: float) -> Figure:
    """Bland-Altman plots (top) and predicted vs reference volume (bottom), soft and thresholded volumes."""
    frame = _book_columns(cases, model)
    fig = Figure(figsize=(7.2, 6.6), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    names = {"soft": "soft volume", "hard": f"p > {threshold:g} volume"}
    for col, kind in enumerate(("soft", "hard")):
        plot_bland_altman(frame, axes[col], volume=kind, reference="ref_volume_ml", hue="loss")
        axes[col].set_title(f"Bland-Altman, {names[kind]}")
        plot_volume_scatter(frame, axes[2 + col], volume=kind, reference="ref_volume_ml", hue="loss")
        axes[2 + col].set_title(f"{names[kind]} vs reference")
    for ax in axes:
        ax.get_legend().set_title("model")
    return fig


def plot_histogram_counts(counts: np.ndarray, ax: Axes, model: str) -> None:
    """Density histogram (log scale) of binned probability counts on equal-width bins of [0, 1], drawn as
    :func:`volbias.analysis.plots.plot_probability_histograms` draws raw probabilities (the audit keeps counts,
    not the voxels of every case)."""
    edges = np.linspace(0.0, 1.0, len(counts) + 1)
    total = counts.sum()
    density = counts / (total * np.diff(edges)) if total else np.zeros(len(counts))
    ax.stairs(np.where(density > 0, density, np.nan), edges, lw=1.8, color=loss_palette([model])[model],
              label=loss_label(model))
    ax.set_yscale("log")
    ax.set_xlabel("predicted probability")
    ax.set_ylabel(f"density (voxels with p >= {HISTOGRAM_MIN_PROBABILITY})")
    ax.legend(title="model", fontsize="small")


def calibration_figure(reliability: pd.DataFrame, histogram: np.ndarray, model: str) -> Figure:
    """Reliability diagram of the pooled calibration regions and the histogram of the predicted probabilities."""
    fig = Figure(figsize=(7.2, 3.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    plot_reliability({model: reliability}, left)
    left.set_title("reliability, calibration regions")
    plot_histogram_counts(histogram, right, model)
    right.set_title("predicted probabilities")
    return fig


def estimator_figure(summary: pd.DataFrame) -> Figure:
    """Mean signed volume error of every estimator with its bootstrap 95% CI (ml)."""
    fig = Figure(figsize=(6.0, 0.8 + 0.4 * len(summary)), layout="constrained")
    ax = fig.subplots()
    rows = summary.iloc[::-1]
    errors = np.vstack([rows["err"] - rows["err_low"], rows["err_high"] - rows["err"]])
    ax.errorbar(rows["err"], np.arange(len(rows)), xerr=np.clip(np.nan_to_num(errors), 0, None), fmt="o",
                capsize=3, color="black")
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_yticks(np.arange(len(rows)), rows["estimator"])
    ax.set_xlabel("mean signed volume error (ml), 95% CI")
    ax.set_title("volume estimators")
    return fig


def audit_figures(result: AuditResult) -> dict[str, Figure]:
    """The report's figures of an audit: ``volumes``, ``calibration`` and ``estimators``."""
    pooled = pool_tables([m.reliability for m in result.measures])
    return {"volumes": volume_figure(result.cases, result.model, result.settings.threshold),
            "calibration": calibration_figure(pooled, pooled_histogram(result.measures), result.model),
            "estimators": estimator_figure(result.estimator_summary)}
