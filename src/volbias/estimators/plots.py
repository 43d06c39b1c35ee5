"""Figures of the volume-estimator comparison (matplotlib / seaborn), in the book's loss colours and labels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes

from volbias.analysis.plots import REFERENCE_COLOUR, loss_colour
from volbias.analysis.present import loss_label
from volbias.estimators.compare import ESTIMATORS

_METRICS = {
    "err": ("mean signed volume error", "RdBu_r"),
    "abs_err": ("mean absolute volume error", "viridis"),
}


def comparison_label(loss: str) -> str:
    """Display label of a compared run's loss: ``"ce"`` -> ``"CE"``, ``"sd (soft)"`` -> ``"SD (soft)"``."""
    base, _, rest = loss.partition(" ")
    return f"{loss_label(base)} {rest}".strip()


def plot_error_heatmap(summary: pd.DataFrame, task: str, metric: str, losses: Sequence[str], ax: Axes,
                       unit: str = "voxels") -> None:
    """Heatmap of a volume-error metric (``"err"`` or ``"abs_err"``): losses x estimators of one task."""
    if metric not in _METRICS:
        raise ValueError(f"metric={metric!r}: expected one of {', '.join(_METRICS)}")
    title, cmap = _METRICS[metric]
    part = summary[summary["task"] == task]
    table = part.pivot(index="loss", columns="estimator", values=metric).reindex(index=list(losses),
                                                                                 columns=list(ESTIMATORS))
    table.index = [comparison_label(loss) for loss in table.index]
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
    part["map"] = part["estimator"].map({"soft sum": "network", "temperature-scaled": "temperature-scaled"})
    part["loss"] = part["loss"].map(comparison_label)
    sns.barplot(data=part, x="loss", y="ece", hue="map", order=[comparison_label(l) for l in losses], ax=ax,
                errorbar=("ci", 95), seed=seed)
    ax.set_ylim(0, 1.35 * ax.get_ylim()[1])  # room for the legend above the bars
    ax.set_title(f"{task}: expected calibration error")
    ax.set_xlabel("training loss")
    ax.set_ylabel("ECE against the marginals")
    ax.tick_params(axis="x", labelrotation=30)
    ax.legend(title=None, loc="upper center", ncol=2, fontsize="x-small", columnspacing=0.8, handlelength=1.2)


def plot_recalibration(comparison: pd.DataFrame, task: str, losses: Sequence[str], ax: Axes,
                       unit: str = "voxels") -> None:
    """Calibration plot of the volume re-calibration: reference against soft-sum volume per held-out case.

    One colour per loss (:func:`volbias.analysis.plots.loss_colour`; runs on soft targets, ``"<loss> (soft)"``,
    in their loss's colour with triangles and dashed lines); each cross-fitted line ``a + b V`` is drawn over
    the range of its loss's volumes, with the identity as reference. Lines flatter than the identity
    (slope < 1) shrink volumes towards the mean of the cases they were fitted on.
    """
    part = comparison[(comparison["task"] == task) & (comparison["estimator"] == "soft sum")]
    top = 0.0
    for loss in losses:
        rows = part[part["loss"] == loss]
        if rows.empty:
            continue
        x = rows["volume"].to_numpy(float)
        base, _, variant = loss.partition(" ")
        colour = loss_colour(base)
        ax.scatter(x, rows["reference_volume"], s=14, alpha=0.6, color=colour, marker="^" if variant else "o",
                   label=comparison_label(loss))
        span = np.linspace(x.min(), x.max(), 101)
        for _, fit in rows.drop_duplicates(["seed", "fit_group"]).iterrows():
            ax.plot(span, np.maximum(0.0, fit["recal_intercept"] + fit["recal_slope"] * span), color=colour, lw=1,
                    ls="--" if variant else "-")
        top = max(top, float(x.max()), float(rows["reference_volume"].max()))
    ax.plot([0, top], [0, top], color=REFERENCE_COLOUR, lw=0.8, ls="--", label="identity")
    ax.set_xlabel(f"soft-sum volume ({unit})")
    ax.set_ylabel(f"expected volume ({unit})")
    ax.set_title(f"{task}: cross-fitted re-calibration lines")
    ax.legend(fontsize="x-small", title="training loss")


def plot_coverage(summary: pd.DataFrame, losses: Sequence[str], ax: Axes, nominal: float, title: str) -> None:
    """Observed coverage of the volume intervals per loss (x), one bar per coupling, with their two-stage bootstrap
    95% CIs (columns ``loss``, ``coupling``, ``mean``, ``low``, ``high`` of ``summary``, one map per loss) and the
    nominal level (dashed)."""
    if summary.duplicated(["loss", "coupling"]).any():
        raise ValueError("summary: one row per loss and coupling expected (select one map)")
    couplings = list(dict.fromkeys(summary["coupling"]))
    width = 0.8 / max(len(couplings), 1)
    palette = sns.color_palette("colorblind", len(couplings))
    for k, coupling in enumerate(couplings):
        part = summary[summary["coupling"] == coupling].set_index("loss")
        part = part.reindex([loss for loss in losses if loss in part.index])
        x = np.array([list(losses).index(loss) for loss in part.index]) - 0.4 + width * (k + 0.5)
        ax.bar(x, part["mean"], width, color=palette[k], label=coupling,
               yerr=np.vstack([part["mean"] - part["low"], part["high"] - part["mean"]]), capsize=2,
               error_kw={"lw": 0.8})
    ax.axhline(nominal, color=REFERENCE_COLOUR, lw=0.8, ls="--")
    ax.set_xticks(range(len(losses)), [comparison_label(loss) for loss in losses], rotation=30)
    ax.set_ylim(0, 1.3)
    ax.set_ylabel("share of draws inside")
    ax.set_title(title)
    ax.legend(fontsize="x-small", ncol=2, loc="upper center", columnspacing=0.8, handlelength=1.2)
