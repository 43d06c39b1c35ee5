"""Figures of the volume-estimator comparison (matplotlib / seaborn)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes

from volbias.estimators.compare import ESTIMATORS

_METRICS = {
    "err": ("mean signed volume error", "RdBu_r"),
    "abs_err": ("mean absolute volume error", "viridis"),
}


def plot_error_heatmap(summary: pd.DataFrame, task: str, metric: str, losses: Sequence[str], ax: Axes,
                       unit: str = "voxels") -> None:
    """Heatmap of a volume-error metric (``"err"`` or ``"abs_err"``): losses x estimators of one task."""
    if metric not in _METRICS:
        raise ValueError(f"metric={metric!r}: expected one of {', '.join(_METRICS)}")
    title, cmap = _METRICS[metric]
    part = summary[summary["task"] == task]
    table = part.pivot(index="loss", columns="estimator", values=metric).reindex(index=list(losses),
                                                                                 columns=list(ESTIMATORS))
    sns.heatmap(table, ax=ax, annot=True, fmt=".0f", cmap=cmap, center=0.0 if metric == "err" else None,
                cbar_kws={"label": unit})
    ax.set_title(f"{task}: {title} ({unit})")
    ax.set_xlabel("volume estimator")
    ax.set_ylabel("training loss")
    ax.tick_params(axis="x", labelrotation=30)
    ax.tick_params(axis="y", labelrotation=0)


def plot_calibration(comparison: pd.DataFrame, task: str, losses: Sequence[str], ax: Axes, seed: int = 0) -> None:
    """Mean ECE per loss before and after temperature scaling (bootstrap 95% CI over cases)."""
    part = comparison[(comparison["task"] == task)
                      & comparison["estimator"].isin(["soft sum", "temperature-scaled"])].copy()
    part["map"] = part["estimator"].map({"soft sum": "network output", "temperature-scaled": "temperature-scaled"})
    sns.barplot(data=part, x="loss", y="ece", hue="map", order=list(losses), ax=ax, errorbar=("ci", 95),
                seed=seed)
    ax.set_title(f"{task}: expected calibration error")
    ax.set_xlabel("training loss")
    ax.set_ylabel("ECE (mask voxels, 10 bins)")
    ax.legend(title=None)
