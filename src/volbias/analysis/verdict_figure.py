"""The verdicts as a figure: one forest plot per claim, one row per group.

Each row shows the estimate behind a verdict (a dot) with its 95 % interval (a line), over the margin band
that the verdict rule compares the interval with (shaded); the verdict is written at the right. Rows whose
verdict is "underpowered" or "not tested" are drawn in grey. The input is one row per claim and group:

========================  ==========================================================================
column                    meaning
========================  ==========================================================================
``claim``                 the claim (``"1"``, ``"2"``, ...): one panel per value, in order of appearance
``claim_title``           short panel title
``label``                 short group label (a legend or groups table says what it stands for)
``estimate``              the estimate; ``ci_low``, ``ci_high``: its interval (NaN: no interval drawn)
``band_low``, ``band_high``  the margin band (NaN: none; +-inf: to the edge of the panel)
``scale``                 ``"dice"`` (a Dice difference) or ``"percent"`` (fractions shown as percent)
``verdict``               one of :data:`VERDICTS`
``measure`` (optional)    the x-axis label of the claim's panel (default: from ``scale``)
========================  ==========================================================================
"""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import PercentFormatter

from volbias.analysis.plots import REFERENCE_COLOUR, TEXT_WIDTH

REQUIRED_COLUMNS: tuple[str, ...] = ("claim", "claim_title", "label", "estimate", "ci_low", "ci_high", "band_low",
                                     "band_high", "scale", "verdict")
"""Columns :func:`verdict_forest` needs."""

VERDICTS: tuple[str, ...] = ("yes", "no", "inconclusive", "underpowered", "not tested")
"""The verdicts a row may carry."""

GREYED: tuple[str, ...] = ("underpowered", "not tested")
"""Verdicts whose rows are drawn in grey: the data could not answer."""

GREY = "#a6a6a6"
"""Colour of greyed rows."""

VERDICT_COLOURS: dict[str, str] = {"yes": "#027a59", "no": "#c04f00", "inconclusive": "#3d3d3d",
                                   "underpowered": GREY, "not tested": GREY}
"""Colour of each verdict's text (dark enough to read as text)."""

BAND_COLOUR = "#c9dcec"
"""Fill of the margin band."""

SCALE_LABELS: dict[str, str] = {"dice": "Dice difference", "percent": "relative volume bias"}
"""Default x-axis label per scale."""

ROW_HEIGHT = 0.32
"""Height of one row (inches)."""

PANEL_MARGIN = 1.0
"""Height of a panel's title, ticks and axis label (inches)."""

TITLE_SHARE = 0.8
"""Share of the figure's width a panel title may take before it wraps (the rest: labels and verdicts)."""

TITLE_EM = 0.55
"""Mean width of a character of the title font, in ems (DejaVu Sans, mixed case)."""

CLIP_FACTOR = 1.5
"""Interval ends further than this many widths of the estimates and bands beyond them are cut (with an arrow)."""


def _check(table: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise KeyError(f"verdict table: columns {missing} missing (it has {list(table.columns)})")
    if table.empty:
        raise ValueError("verdict table: no rows")
    unknown = sorted(set(table["verdict"]) - set(VERDICTS))
    if unknown:
        raise ValueError(f"verdict table: unknown verdicts {unknown}; expected one of {list(VERDICTS)}")
    scales = sorted(set(table["scale"]) - set(SCALE_LABELS))
    if scales:
        raise ValueError(f"verdict table: unknown scales {scales}; expected one of {list(SCALE_LABELS)}")
    mixed = [c for c, rows in table.groupby("claim", sort=False) if rows["scale"].nunique() > 1]
    if mixed:
        raise ValueError(f"verdict table: claims {mixed} mix scales; one scale per claim")


def _limits(rows: pd.DataFrame) -> tuple[float, float]:
    """The range drawn: the estimates, finite band edges, 0 and the intervals, long intervals cut."""
    core = np.concatenate([[0.0], rows["estimate"], rows["band_low"], rows["band_high"]]).astype(float)
    core = core[np.isfinite(core)]
    span = max(float(core.max() - core.min()), 1e-3)
    ends = rows[["ci_low", "ci_high"]].to_numpy(float).ravel()
    ends = ends[np.isfinite(ends)]
    low = max(min(core.min(), ends.min(initial=np.inf)), core.min() - CLIP_FACTOR * span)
    high = min(max(core.max(), ends.max(initial=-np.inf)), core.max() + CLIP_FACTOR * span)
    return low, high


def _draw_row(ax: Axes, y: float, row: pd.Series, limits: tuple[float, float]) -> None:
    colour = GREY if row["verdict"] in GREYED else REFERENCE_COLOUR
    band = (row["band_low"], row["band_high"])
    if not (np.isnan(band[0]) or np.isnan(band[1])):
        reach = limits[1] - limits[0]  # an infinite band runs to the panel's edge (the axes clip it)
        left, right = max(band[0], limits[0] - reach), min(band[1], limits[1] + reach)
        ax.fill_betweenx([y - 0.5, y + 0.5], left, right, color=BAND_COLOUR, lw=0, zorder=0, gid="band")
    low, high = row["ci_low"], row["ci_high"]
    if np.isfinite(low) and np.isfinite(high):
        ax.plot([max(low, limits[0]), min(high, limits[1])], [y, y], color=colour, lw=1.8, solid_capstyle="butt",
                gid="interval")
        for end, edge, marker in ((low, limits[0], "<"), (high, limits[1], ">")):
            if (end < edge) if marker == "<" else (end > edge):
                ax.plot([edge], [y], marker=marker, color=colour, ms=6, gid="cut")
    if np.isfinite(row["estimate"]):
        ax.plot([row["estimate"]], [y], marker="o", ms=6, color=colour, ls="none", gid="estimate")


def _panel(ax: Axes, rows: pd.DataFrame, title: str, xlabel: str, scale: str, width: float) -> None:
    limits = _limits(rows)
    ys = -np.arange(len(rows), dtype=float)
    for y, (_, row) in zip(ys, rows.iterrows()):
        _draw_row(ax, y, row, limits)
    ax.axvline(0.0, color=REFERENCE_COLOUR, lw=0.8, zorder=1)
    pad = 0.06 * (limits[1] - limits[0])
    ax.set_xlim(limits[0] - pad, limits[1] + pad)
    ax.set_ylim(ys[-1] - 0.6, 0.6)
    ax.set_yticks(ys, labels=list(rows["label"]))
    ax.grid(False, axis="y")
    ax.tick_params(axis="y", length=0)
    if scale == "percent":
        ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    size = FontProperties(size=plt.rcParams["axes.titlesize"]).get_size_in_points()
    chars = int(TITLE_SHARE * width * 72 / (TITLE_EM * size))
    ax.set_title(textwrap.fill(title, chars), loc="left")
    ax.set_xlabel(xlabel)
    verdicts = ax.secondary_yaxis("right")
    verdicts.set_yticks(ys, labels=list(rows["verdict"]))
    verdicts.tick_params(axis="y", length=0)
    verdicts.spines["right"].set_visible(False)
    for label, text, verdict in zip(ax.get_yticklabels(), verdicts.get_yticklabels(), rows["verdict"]):
        text.set_color(VERDICT_COLOURS[verdict])
        text.set_fontweight("bold" if verdict in ("yes", "no") else "normal")
        if verdict in GREYED:
            label.set_color(GREY)


def verdict_forest(table: pd.DataFrame, width: float = TEXT_WIDTH, row_height: float = ROW_HEIGHT) -> Figure:
    """A forest plot of the verdicts: one panel per claim, one row per group (columns: module docstring).

    Panels are stacked in the order the claims first appear, rows in the table's order; the figure is
    ``width`` inches wide and ``row_height`` inches per row plus each panel's title and axis.
    """
    _check(table)
    table = table.reset_index(drop=True)
    claims = list(dict.fromkeys(table["claim"]))
    sizes = [int((table["claim"] == c).sum()) for c in claims]
    heights = [n * row_height + PANEL_MARGIN for n in sizes]
    fig = plt.figure(figsize=(width, sum(heights) + 0.5), layout="constrained")
    axes = fig.subplots(len(claims), 1, gridspec_kw={"height_ratios": heights}, squeeze=False)[:, 0]
    for ax, claim in zip(axes, claims):
        rows = table[table["claim"] == claim]
        scale = str(rows["scale"].iloc[0])
        measure = rows["measure"].iloc[0] if "measure" in rows.columns else None
        xlabel = measure if isinstance(measure, str) and measure else SCALE_LABELS[scale]
        _panel(ax, rows, f"Claim {claim}: {rows['claim_title'].iloc[0]}", xlabel, scale, width)
    handles = [Line2D([], [], color=REFERENCE_COLOUR, marker="o", lw=1.8, label="estimate, 95 % interval"),
               Patch(color=BAND_COLOUR, label="margin of the verdict rule"),
               Line2D([], [], color=GREY, marker="o", lw=1.8, label="underpowered or not tested")]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, frameon=False)
    return fig
