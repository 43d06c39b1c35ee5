"""The book's finding in one figure: volume bias against inherent uncertainty, theory and measured networks.

The x axis is one measure of inherent uncertainty that any data set's voxel marginals ``p`` give
(:func:`uncertainty_index`): the volume-weighted Bernoulli variance

    U = sum_i p_i (1 - p_i) / sum_i p_i ,

summed over all voxels of all cases. It is 0 for certain references (one rater: ``p`` in {0, 1}, as for the
BraTS sample), grows with the share of the expected volume that sits on uncertain voxels, and nears 1 only
where every p is small. Phantoms have exact ``p``; LIDC uses the mean of its four raters.

The theory's curves (:func:`theory_curves`) are computed on the book's phantom family (2D, three blobs,
``volbias.data.make_phantoms`` with the controlled-uncertainty chapter's radius and image size) by
:mod:`volbias.analysis.phantom_theory`, for independent label noise and for shifting boundaries.
:func:`headline_figure` draws them with the measured networks on top; its ``measured`` frame has one row per
point:

=================  =====================================================================
column             meaning
=================  =====================================================================
``source``         where the networks come from ("phantoms", "LIDC", "BraTS sample"): one marker per source
``label``          the point's setting (written next to it when ``annotate``)
``uncertainty``    U of the cases the networks were scored on (:func:`uncertainty_index`)
``bias``           relative volume bias ``sum(V - E[V]) / sum(E[V])``; ``ci_low``, ``ci_high``: its 95 % CI
``loss``           the loss (``"ce"``, ``"sd"``, ...): the marker's colour
``volume``         ``"soft"`` (filled marker) or ``"thresholded"`` (open marker)
=================  =====================================================================

The landing page pastes the figure and a one-sentence summary from the Results chapter. A sentence pasted
on another page is inserted as HTML, so the Results chapter glues it as :class:`Summary` (Markdown on its
own page, HTML on the landing page); it must hold no math (math in pasted HTML is not typeset).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import PercentFormatter

from volbias.analysis.book_runs import PHANTOM_SIZE, SYNTHETIC_GRIDS
from volbias.analysis.phantom_theory import theory_bias, theory_volumes
from volbias.analysis.plots import TEXT_WIDTH, loss_colour, loss_order
from volbias.analysis.present import loss_label
from volbias.data import make_phantoms

UNCERTAINTY_LABEL = r"inherent uncertainty $U = \Sigma_i\, p_i(1 - p_i)\, /\, \Sigma_i\, p_i$"
"""The x-axis label of the headline figure."""

THEORY_CURVES: dict[str, dict[str, str]] = {
    "ce_soft": {"label": "CE optimum, soft volume", "loss": "ce", "volume": "soft", "style": "-"},
    "ce_threshold": {"label": "CE optimum thresholded at 0.5", "loss": "ce", "volume": "thresholded", "style": "--"},
    "sd_plugin": {"label": "soft Dice optimum", "loss": "sd", "volume": "thresholded", "style": "-"},
    "dice_optimal": {"label": "Dice-optimal mask, independent voxels", "loss": "sd", "volume": "thresholded",
                     "style": ":"},
    "dice_shift": {"label": "Dice-optimal mask, shifting boundaries", "loss": "sd", "volume": "thresholded",
                   "style": "-."},
}
"""The theory's curves: label, the loss whose colour they take, the volume they predict, line style."""

MEASURED_COLUMNS: tuple[str, ...] = ("source", "label", "uncertainty", "bias", "ci_low", "ci_high", "loss", "volume")
"""Columns of the ``measured`` frame of :func:`headline_figure`."""

SOURCE_MARKERS: tuple[str, ...] = ("o", "s", "D", "^", "v", "P")
"""Markers of the sources, in their order of appearance."""

FAMILY_RADIUS = float(SYNTHETIC_GRIDS["cpu"]["radius"])
"""Nominal blob radius (pixels) of the book's phantom family."""

DEFAULT_RELATIVE_SIGMA: tuple[float, ...] = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.75, 0.9)
"""Boundary sigmas, relative to the radius, of the theory's curves: the sweep's range (beyond it U saturates,
as blurred blobs start to vanish, and the curves fold back)."""

SHIFT_RELATIVE_SIGMA: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
"""Relative sigmas of the boundary-shift curve (coarser: its exact theory takes seconds per setting)."""

DRAWN_CURVES: tuple[str, ...] = ("ce_soft", "ce_threshold", "sd_plugin", "dice_shift")
"""Curves :func:`headline_figure` draws by default (the Dice-optimal mask of independent voxels lies on the
soft Dice optimum's curve at these sizes)."""


class Summary:
    """A Markdown sentence to glue for another page: ``glue("headline-summary", Summary(text), display=False)``.

    It shows as Markdown on its own page (``{glue:md}``) and as HTML where another page pastes it
    (``{glue}`results.ipynb::headline-summary```), the only rich form myst-nb pastes across pages.
    """

    def __init__(self, markdown: str) -> None:
        if "$" in markdown or "\\(" in markdown:
            raise ValueError("the summary must hold no math: pasted on another page, math is not typeset")
        self.markdown = markdown

    def _repr_markdown_(self) -> str:
        return self.markdown

    def _repr_html_(self) -> str:
        from markdown_it import MarkdownIt  # installed with the book's tools (myst-parser)

        return MarkdownIt("commonmark").renderInline(self.markdown)

    def __repr__(self) -> str:
        return self.markdown


def uncertainty_index(marginals: np.ndarray | Iterable[np.ndarray]) -> float:
    """``U = sum p(1 - p) / sum p`` over every voxel of one marginal map or of several (a data set).

    Raises ValueError for values outside [0, 1] or when ``sum p`` is 0 (no expected foreground).
    """
    maps = [marginals] if isinstance(marginals, np.ndarray) else list(marginals)
    variance = total = 0.0
    for p in maps:
        p = np.asarray(p, dtype=np.float64)
        if p.size and (np.nanmin(p) < 0 or np.nanmax(p) > 1 or np.isnan(p).any()):
            raise ValueError("marginals must lie in [0, 1]")
        variance += float(np.sum(p * (1.0 - p)))
        total += float(np.sum(p))
    if total <= 0:
        raise ValueError("marginals sum to 0: no expected foreground, U is undefined")
    return variance / total


def dataset_uncertainty(cases: Iterable[Any]) -> float:
    """:func:`uncertainty_index` of data-set cases: their ``marginals``, else their ``label`` (one rater: 0)."""
    return uncertainty_index(case.marginals if case.marginals is not None else case.label for case in cases)


def theory_curves(relative_sigma: Sequence[float] = DEFAULT_RELATIVE_SIGMA,
                  shift_relative_sigma: Sequence[float] = SHIFT_RELATIVE_SIGMA, radius: float = FAMILY_RADIUS,
                  size: int = PHANTOM_SIZE, n_cases: int = 8, seed: int = 0) -> pd.DataFrame:
    """The theory's relative volume bias against U on the book's phantom family, one row per curve and sigma.

    For every ``sigma = relative_sigma * radius``: ``n_cases`` phantoms (2D, ``size`` pixels) with independent
    label noise give the CE and soft Dice curves and the Dice-optimal mask of independent voxels; for every
    value of ``shift_relative_sigma`` (empty: none), phantoms with shifting boundaries give the Dice-optimal
    mask of that model. Biases are pooled over the phantoms as in
    :func:`volbias.analysis.phantom_theory.theory_bias`. Columns: ``curve`` (a key of :data:`THEORY_CURVES`),
    ``label``, ``loss``, ``volume``, ``noise``, ``relative_sigma``, ``uncertainty``, ``bias``.
    """
    rows = []
    for noise, grid in (("independent", relative_sigma), ("shift", shift_relative_sigma)):
        for rel in grid:
            cases = make_phantoms(dims=2, radius=radius, sigma=float(rel) * radius, noise=noise, n_cases=n_cases,
                                  size=size, n_raters=1, seed=seed)
            bias = theory_bias(theory_volumes(cases))
            curves = ({"ce_soft": 0.0, **bias} if noise == "independent" else {"dice_shift": bias["dice_optimal"]})
            u = uncertainty_index(c.marginals for c in cases)
            rows += [{"curve": k, "noise": noise, "relative_sigma": float(rel), "uncertainty": u, "bias": b}
                     for k, b in curves.items()]
    frame = pd.DataFrame(rows, columns=["curve", "noise", "relative_sigma", "uncertainty", "bias"])
    for field in ("label", "loss", "volume"):
        frame[field] = frame["curve"].map({k: v[field] for k, v in THEORY_CURVES.items()})
    return frame[["curve", "label", "loss", "volume", "noise", "relative_sigma", "uncertainty", "bias"]]


def _check_measured(measured: pd.DataFrame) -> None:
    missing = [c for c in MEASURED_COLUMNS if c not in measured.columns]
    if missing:
        raise KeyError(f"measured: columns {missing} missing (it has {list(measured.columns)})")
    volumes = sorted(set(measured["volume"]) - {"soft", "thresholded"})
    if volumes:
        raise ValueError(f"measured: volume must be 'soft' or 'thresholded', got {volumes}")


def _legend_handles(curves: Sequence[str], measured: pd.DataFrame, markers: dict[str, str]) -> list[Line2D]:
    handles = [Line2D([], [], color=loss_colour(THEORY_CURVES[k]["loss"]), ls=THEORY_CURVES[k]["style"], lw=2,
                      label=f"theory: {THEORY_CURVES[k]['label']}") for k in curves]
    handles += [Line2D([], [], color="0.3", marker=m, ls="none", label=s) for s, m in markers.items()]
    handles += [Line2D([], [], color=loss_colour(loss), marker="o", ls="none", label=f"{loss_label(loss)} network")
                for loss in loss_order(measured["loss"])]
    handles += [Line2D([], [], color="0.3", marker="o", ls="none", mfc=fc, label=f"{volume} volume")
                for volume, fc in (("soft", "0.3"), ("thresholded", "white")) if volume in set(measured["volume"])]
    return handles


def headline_figure(theory: pd.DataFrame, measured: pd.DataFrame, width: float = TEXT_WIDTH, height: float = 5.6,
                    curves: Sequence[str] = DRAWN_CURVES, annotate: bool = False) -> Figure:
    """Relative volume bias against U: the ``theory`` curves (:func:`theory_curves`) with the ``measured`` points.

    ``curves``: the keys of :data:`THEORY_CURVES` drawn (those absent from ``theory`` are skipped).
    Points (columns: module docstring) are coloured by loss, shaped by source, filled for the soft and open
    for the thresholded volume, with their 95 % CIs; points at the same U are spread a little sideways so
    that their intervals do not hide each other. The legend sits below the axes.
    """
    _check_measured(measured)
    fig, ax = plt.subplots(figsize=(width, height), layout="constrained")
    curves = [k for k in curves if k in set(theory["curve"])]
    for key in curves:
        curve = theory[theory["curve"] == key].sort_values("uncertainty")
        style = THEORY_CURVES[key]
        ax.plot(curve["uncertainty"], curve["bias"], color=loss_colour(style["loss"]), ls=style["style"], lw=2,
                    alpha=0.75, zorder=1, gid=f"theory-{key}")
    markers = {s: SOURCE_MARKERS[i % len(SOURCE_MARKERS)] for i, s in enumerate(dict.fromkeys(measured["source"]))}
    span = np.nanmax(np.concatenate([[0.1], theory["uncertainty"], measured["uncertainty"]]))
    kinds = list(dict.fromkeys(zip(measured["loss"], measured["volume"])))
    for _, row in measured.iterrows():
        dodge = 0.012 * span * (kinds.index((row["loss"], row["volume"])) - (len(kinds) - 1) / 2)
        low, high = row["bias"] - row["ci_low"], row["ci_high"] - row["bias"]
        error = None if np.isnan(low) or np.isnan(high) else [[max(low, 0.0)], [max(high, 0.0)]]
        colour = loss_colour(row["loss"])
        ax.errorbar([row["uncertainty"] + dodge], [row["bias"]], yerr=error, color=colour, marker=markers[row["source"]],
                    ms=7, mfc=colour if row["volume"] == "soft" else "white", mew=1.6, capsize=2, ls="none",
                    zorder=3, gid="measured")
        if annotate:
            ax.annotate(str(row["label"]), (row["uncertainty"] + dodge, row["bias"]), xytext=(5, 3),
                        textcoords="offset points", fontsize="small", color="0.25")
    ax.axhline(0.0, color="0.5", lw=0.6, zorder=0)
    ax.set_xlim(-0.02 * span, 1.05 * span)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set(xlabel=UNCERTAINTY_LABEL, ylabel="relative volume bias")
    fig.legend(handles=_legend_handles(curves, measured, markers), loc="outside lower center", ncol=2,
               frameon=False)
    return fig
