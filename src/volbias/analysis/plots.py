"""Figures of the experiments: Bland-Altman, predicted vs expected volume, probability histograms,
reliability diagrams and volume bias against uncertainty (matplotlib/seaborn), and the book's figure style.

Every figure of the book uses :func:`use_book_style` (one seaborn theme), one colour per loss
(:data:`LOSS_COLOURS`, :func:`loss_colour`), panels laid out for the text column by
:func:`new_figure`, and is shown as a numbered, captioned figure through :func:`glue_figure`.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import PercentFormatter

from volbias.analysis.present import loss_label
from volbias.analysis.tables import VOLUMES

LOSS_ORDER: tuple[str, ...] = ("ce", "sd", "ce-ce", "ce-sd", "dml", "dsc++", "tversky", "focal", "ce+sd")
"""Display order of the losses; others follow alphabetically."""

LOSS_COLOURS: dict[str, str] = {
    "ce": "#0173b2",       # blue
    "sd": "#de8f05",       # orange
    "ce-ce": "#029e73",    # green
    "ce-sd": "#d55e00",    # vermillion
    "dml": "#cc78bc",      # mauve
    "dsc++": "#ca9161",    # brown
    "tversky": "#56b4e9",  # sky blue
    "focal": "#fbafe4",    # pink
    "ce+sd": "#949494",    # grey
}
"""The colour of each loss in every figure of the book (seaborn's colour-blind palette)."""

REFERENCE_COLOUR = "#000000"
"""Colour of references drawn with the losses: identity lines, expected volumes, theory curves."""

TEXT_WIDTH = 7.6
"""Width (inches, at the figures' 100 dpi) of the book's text column; figures are made no wider."""

FIGURE_DPI = 100
"""Resolution of the book's figures: one point of font is 1.4 screen pixels when shown unscaled."""


def loss_colour(name: str) -> str:
    """The colour of loss ``name``; losses without one get a stable colour of seaborn's "dark" palette."""
    if name in LOSS_COLOURS:
        return LOSS_COLOURS[name]
    extra = sns.color_palette("dark", 10).as_hex()
    return extra[zlib.crc32(name.encode()) % len(extra)]


def use_book_style() -> None:
    """Apply the book's figure style: seaborn's whitegrid theme, 100 dpi, constrained layout.

    The default colour cycle is seaborn's "dark" palette, for series that are not losses (radii,
    settings); a loss is always drawn in :func:`loss_colour`, so that no other series borrows its colour.
    """
    sns.set_theme(context="notebook", style="whitegrid", font_scale=1.05, palette="dark",
                  rc={"figure.dpi": FIGURE_DPI, "savefig.dpi": FIGURE_DPI, "figure.constrained_layout.use": True,
                      "legend.frameon": True, "legend.framealpha": 0.9, "axes.titleweight": "normal",
                      "image.cmap": "viridis"})


def loss_order(losses: Iterable[str]) -> list[str]:
    """Losses sorted as in :data:`LOSS_ORDER`, unknown ones after, alphabetically."""
    present = set(losses)
    return [l for l in LOSS_ORDER if l in present] + sorted(present - set(LOSS_ORDER))


def loss_palette(losses: Iterable[str]) -> dict[str, Any]:
    """The colours (:func:`loss_colour`) of the losses present, in display order."""
    return {l: loss_colour(l) for l in loss_order(losses)}


def bland_altman_stats(pred: Sequence[float] | np.ndarray, ref: Sequence[float] | np.ndarray,
                       z: float = 1.96) -> dict[str, float]:
    """Mean difference (bias), its sd and the limits of agreement bias +- z sd of pred - ref."""
    diff = np.asarray(pred, dtype=float) - np.asarray(ref, dtype=float)
    if diff.size < 2:
        raise ValueError(f"Bland-Altman needs at least 2 cases, got {diff.size}")
    bias, sd = float(diff.mean()), float(diff.std(ddof=1))
    return {"bias": bias, "sd": sd, "loa_low": bias - z * sd, "loa_high": bias + z * sd}


def _check_volume(volume: str) -> str:
    if volume not in VOLUMES:
        raise ValueError(f"volume must be one of {sorted(VOLUMES)}, got {volume!r}")
    return VOLUMES[volume]


def plot_bland_altman(cases: pd.DataFrame, ax: Axes, volume: str = "soft",
                      reference: str = "expected_volume", hue: str = "loss",
                      unit: str = "ml") -> pd.DataFrame:
    """Bland-Altman plot of predicted vs reference volume, one colour and bias line per ``hue`` group.

    Returns the statistics of :func:`bland_altman_stats` per group.
    """
    column = _check_volume(volume)
    palette = loss_palette(cases[hue]) if hue == "loss" else None
    rows = []
    for name in (loss_order(cases[hue]) if hue == "loss" else sorted(cases[hue].unique())):
        group = cases[cases[hue] == name]
        pred, ref = group[column].to_numpy(float), group[reference].to_numpy(float)
        colour = palette[name] if palette else None
        label = loss_label(name) if hue == "loss" else str(name)
        points = ax.scatter((pred + ref) / 2, pred - ref, s=14, alpha=0.7, label=label, color=colour)
        if len(group) >= 2:
            s = bland_altman_stats(pred, ref)
            ax.axhline(s["bias"], color=points.get_facecolor()[0], lw=1.5)
            for limit in (s["loa_low"], s["loa_high"]):
                ax.axhline(limit, color=points.get_facecolor()[0], lw=0.8, ls="--")
            rows.append({hue: name, **s})
    ax.axhline(0, color=REFERENCE_COLOUR, lw=0.6)
    ax.set_xlabel(f"mean of predicted and reference ({unit})")
    ax.set_ylabel(f"{volume} volume - reference ({unit})")
    ax.legend(title=hue, fontsize="small")
    return pd.DataFrame(rows)


def plot_volume_scatter(cases: pd.DataFrame, ax: Axes, volume: str = "soft",
                        reference: str = "expected_volume", hue: str = "loss", unit: str = "ml") -> None:
    """Predicted vs reference volume per case, with the identity line."""
    column = _check_volume(volume)
    order = palette = None
    if hue == "loss":
        losses = loss_order(cases["loss"])
        order = [loss_label(l) for l in losses]
        palette = {loss_label(l): loss_colour(l) for l in losses}
        cases = cases.assign(loss=cases["loss"].map(loss_label))
    sns.scatterplot(data=cases, x=reference, y=column, hue=hue, hue_order=order, ax=ax, s=18, palette=palette)
    top = float(np.nanmax(cases[[reference, column]].to_numpy(float))) * 1.05
    ax.plot([0, top], [0, top], color=REFERENCE_COLOUR, lw=0.8, ls="--", label="identity")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel(f"reference volume ({unit})")
    ax.set_ylabel(f"predicted {volume} volume ({unit})")


def load_probabilities(run_dir: str | Path) -> dict[str, np.ndarray]:
    """The validation probability maps of a run (``probabilities.npz``), as float32 per case id."""
    path = Path(run_dir) / "probabilities.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: run has no probability maps")
    with np.load(path) as archive:
        return {key: archive[key].astype(np.float32) for key in archive.files}


def pooled_probabilities(probabilities: Mapping[str, np.ndarray], cases: Iterable[Any],
                         target: str = "label") -> tuple[np.ndarray, np.ndarray]:
    """Pool the probabilities and references of the cases inside their masks.

    ``cases`` are volbias.data Case objects (id, label, mask, marginals); cases without a probability
    map are skipped. ``target`` is ``"label"`` (the reference segmentation) or ``"marginals"`` (the
    known or mean-rater voxel probabilities). Returns flat (probability, target) arrays.
    """
    if target not in ("label", "marginals"):
        raise ValueError(f"target must be 'label' or 'marginals', got {target!r}")
    probs, labels = [], []
    for case in cases:
        if case.id not in probabilities:
            continue
        prob = probabilities[case.id]
        reference = getattr(case, target)
        if reference is None:
            raise ValueError(f"case {case.id}: has no {target}")
        if prob.shape != reference.shape:
            raise ValueError(f"case {case.id}: probability map {prob.shape} != {target} {reference.shape}")
        mask = np.asarray(case.mask, dtype=bool)
        probs.append(prob[mask])
        labels.append(np.asarray(reference)[mask])
    if not probs:
        raise ValueError("no case of the task has a probability map in this run")
    return np.concatenate(probs), np.concatenate(labels)


def probabilities_by_loss(cases: pd.DataFrame, task_cases: Iterable[Any],
                          target: str = "label") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Pooled (probability, target) arrays per loss over all runs listed in ``cases`` (column ``run_dir``).

    ``task_cases`` are the Case objects of the runs' task, loaded with the runs' task options;
    ``target`` as in :func:`pooled_probabilities`.
    """
    task_cases = list(task_cases)
    pooled: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for loss in loss_order(cases["loss"]):
        parts = [pooled_probabilities(load_probabilities(run_dir), task_cases, target)
                 for run_dir in sorted(cases.loc[cases["loss"] == loss, "run_dir"].unique())]
        pooled[loss] = (np.concatenate([p for p, _ in parts]), np.concatenate([l for _, l in parts]))
    return pooled


def plot_probability_histograms(probabilities: Mapping[str, np.ndarray], ax: Axes, bins: int = 20,
                                min_prob: float = 0.01) -> None:
    """Histograms (log counts) of predicted probabilities per loss, voxels with p >= ``min_prob``.

    The many near-zero background voxels are left out so that the shape of the foreground and
    boundary probabilities (near-binary for SD, spread for CE) is visible.
    """
    edges = np.linspace(0, 1, bins + 1)
    palette = loss_palette(probabilities)
    for loss in loss_order(probabilities):
        values = np.asarray(probabilities[loss], dtype=float).ravel()
        ax.hist(values[values >= min_prob], bins=edges, histtype="step", lw=1.8, label=loss_label(loss),
                color=palette[loss], density=True)
    ax.set_yscale("log")
    ax.set_xlabel("predicted probability")
    ax.set_ylabel(f"density (voxels with p >= {min_prob})")
    ax.legend(title="loss", fontsize="small")


def plot_reliability(bins_by_loss: Mapping[str, pd.DataFrame], ax: Axes) -> None:
    """Reliability diagram: observed foreground frequency against mean predicted probability per bin.

    Each frame holds the columns ``mean_probability``, ``observed_frequency`` and ``count``
    (as returned by volbias.metrics.reliability_bins); empty bins are not drawn.
    """
    palette = loss_palette(bins_by_loss)
    ax.plot([0, 1], [0, 1], color=REFERENCE_COLOUR, lw=0.8, ls="--", label="perfect calibration")
    for loss in loss_order(bins_by_loss):
        table = bins_by_loss[loss]
        table = table[table["count"] > 0]
        ax.plot(table["mean_probability"], table["observed_frequency"], marker="o", label=loss_label(loss),
                color=palette[loss])
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean predicted probability in bin")
    ax.set_ylabel("observed foreground frequency")
    ax.legend(fontsize="small")


def plot_bias_vs_uncertainty(bias: pd.DataFrame, x: str, ax: Axes, theory: pd.DataFrame | None = None,
                             volumes: Sequence[str] = ("soft", "hard"), xlabel: str | None = None) -> None:
    """Relative volume bias (with CIs) per loss against an uncertainty measure ``x``.

    ``bias`` is a :func:`volbias.analysis.tables.volume_bias_table` with ``x`` and ``loss`` among
    its grouping columns. ``theory`` (optional) holds ``x`` and ``bias`` columns (and optionally
    ``label``) and is drawn as black lines: the bias of the theoretical SD optimum.
    """
    palette = loss_palette(bias["loss"])
    styles = {"soft": "-", "hard": ":"}
    markers = {"soft": "o", "hard": "s"}
    for loss in loss_order(bias["loss"]):
        table = bias[bias["loss"] == loss].sort_values(x)
        for kind in volumes:
            err = np.vstack([table[f"bias_{kind}"] - table[f"bias_{kind}_ci_low"],
                             table[f"bias_{kind}_ci_high"] - table[f"bias_{kind}"]])
            ax.errorbar(table[x], table[f"bias_{kind}"], yerr=np.clip(np.nan_to_num(err), 0, None),
                        color=palette[loss], ls=styles[kind], marker=markers[kind], capsize=2,
                        label=f"{loss_label(loss)}, {kind} volume")
    if theory is not None:
        for label, curve in (theory.groupby("label") if "label" in theory else [("SD optimum (theory)", theory)]):
            curve = curve.sort_values(x)
            ax.plot(curve[x], curve["bias"], color=REFERENCE_COLOUR, lw=2, alpha=0.6, label=str(label),
                    ls="--" if "threshold" in str(label).lower() else "-")
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_xlabel(xlabel or x)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_ylabel("relative volume bias (%)")
    ax.legend(fontsize="x-small")


def new_figure(ncols: int = 1, nrows: int = 1, width: float = 4.5, height: float = 3.6, max_cols: int = 2,
               **kwargs: Any) -> tuple[plt.Figure, np.ndarray]:
    """A figure with a grid of panels sized for the text column; the axes come as a flat array.

    ``width`` and ``height`` are per panel. At most ``max_cols`` panels sit side by side (two for
    panels with tick labels; images without ticks may take three or four): a single row of more
    panels is laid out in rows of ``max_cols`` (axes keep their reading order; the spare axes of the
    last row are removed). A figure wider than the text column (:data:`TEXT_WIDTH`) is scaled down
    to it, width and height together, so that its fonts keep their size on the page.
    """
    panels = ncols * nrows
    if nrows == 1 and ncols > max_cols:
        ncols, nrows = max_cols, -(-ncols // max_cols)
    scale = min(1.0, TEXT_WIDTH / (width * ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols * scale, height * nrows * scale), squeeze=False,
                             layout="constrained", **kwargs)
    axes = axes.ravel()
    for spare in axes[panels:]:
        spare.remove()
    return fig, axes[:panels]


def glue_figure(name: str, fig: Figure) -> None:
    """Glue ``fig`` under ``name`` for a numbered, captioned figure, and close it (it is shown only there).

    The chapter's text places it with a ``{glue:figure}`` directive that carries the caption and
    the label ``name``, and refers to it with ``{numref}`` (names start with ``fig-``)::

        :::{glue:figure} fig-theory-core-rim
        :name: fig-theory-core-rim
        The caption.
        :::

        ... as {numref}`fig-theory-core-rim` shows ...
    """
    from myst_nb import glue

    if not name.startswith("fig-"):
        raise ValueError(f"figure name {name!r} must start with 'fig-' (it is also the figure's label)")
    glue(name, fig, display=False)
    plt.close(fig)
