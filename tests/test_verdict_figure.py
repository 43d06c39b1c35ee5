"""Tests of volbias.analysis.verdict_figure: the forest plot holds every row of a hand-made verdict table."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import same_color

from volbias.analysis import verdict_figure as vf

NAN = float("nan")


def verdicts() -> pd.DataFrame:
    rows = [
        ("1", "SD gives higher Dice", "A", 0.012, -0.01, 0.03, NAN, NAN, "dice", "inconclusive"),
        ("1", "SD gives higher Dice", "B", 0.05, 0.03, 0.07, NAN, NAN, "dice", "yes"),
        ("2", "high uncertainty: SD biases the volume", "A", 0.12, 0.05, 0.2, -0.05, 0.05, "percent", "yes"),
        ("2", "high uncertainty: SD biases the volume", "L", 0.01, -0.9, 2.5, -0.05, 0.05, "percent", "underpowered"),
        ("2", "high uncertainty: SD biases the volume", "C", 0.03, NAN, NAN, -0.05, 0.05, "percent", "not tested"),
        ("3", "low uncertainty: little bias", "B", -0.02, -0.04, 0.01, -np.inf, np.inf, "percent", "no"),
    ]
    return pd.DataFrame(rows, columns=list(vf.REQUIRED_COLUMNS))


def _artists(ax, gid: str) -> list:  # noqa: ANN001 - a matplotlib Axes
    return [a for a in ax.get_children() if a.get_gid() == gid]


def _row_y(ax, label: str) -> float:  # noqa: ANN001
    ticks = dict(zip([t.get_text() for t in ax.get_yticklabels()], ax.get_yticks()))
    return ticks[label]


def test_one_panel_per_claim_one_row_per_group() -> None:
    table = verdicts()
    fig = vf.verdict_forest(table)
    axes = fig.axes
    assert len(axes) == table["claim"].nunique()
    for ax, (claim, rows) in zip(axes, table.groupby("claim", sort=False)):
        assert ax.get_title(loc="left").startswith(f"Claim {claim}: ")
        assert [t.get_text() for t in ax.get_yticklabels()] == list(rows["label"])
        (secondary,) = ax.child_axes
        assert [t.get_text() for t in secondary.get_yticklabels()] == list(rows["verdict"])
        estimates = sorted((a.get_ydata()[0], a.get_xdata()[0]) for a in _artists(ax, "estimate"))
        expected = sorted((_row_y(ax, r.label), r.estimate) for r in rows.itertuples())
        np.testing.assert_allclose(estimates, expected)
    plt.close(fig)


def test_intervals_bands_and_grey_rows_follow_the_table() -> None:
    fig = vf.verdict_forest(verdicts())
    dice, bias, low = fig.axes
    # claim 1: two intervals drawn where given, no band (NaN)
    spans = sorted(tuple(a.get_xdata()) for a in _artists(dice, "interval"))
    assert spans == [(-0.01, 0.03), (0.03, 0.07)]
    assert _artists(dice, "band") == []
    # claim 2: the row without an interval still has its estimate; the long interval is cut, with arrows
    assert len(_artists(bias, "estimate")) == 3 and len(_artists(bias, "interval")) == 2
    left, right = bias.get_xlim()
    cut = [a for a in _artists(bias, "interval") if _row_y(bias, "L") == a.get_ydata()[0]][0]
    assert left < cut.get_xdata()[0] and cut.get_xdata()[1] < right and cut.get_xdata()[1] < 2.5
    assert len(_artists(bias, "cut")) == 2
    for band in _artists(bias, "band"):
        xs = band.get_paths()[0].vertices[:, 0]
        np.testing.assert_allclose([xs.min(), xs.max()], [-0.05, 0.05])
    # greyed rows: underpowered and not tested, labels and markers
    for label in bias.get_yticklabels():
        assert same_color(label.get_color(), vf.GREY) == (label.get_text() in ("L", "C"))
    for marker in _artists(bias, "estimate"):
        grey = _row_y(bias, "A") != marker.get_ydata()[0]
        assert same_color(marker.get_color(), vf.GREY) == grey
    # an infinite band runs over the whole panel
    xs = _artists(low, "band")[0].get_paths()[0].vertices[:, 0]
    assert xs.min() <= low.get_xlim()[0] and xs.max() >= low.get_xlim()[1]
    assert low.xaxis.get_major_formatter()(0.05, 0).startswith("5")  # percent
    plt.close(fig)


def test_titles_wrap_to_the_figure_width() -> None:
    table = verdicts().assign(claim_title="a claim title that is long enough to need more than one line of text "
                                          "in a panel that is only this wide")
    fig = vf.verdict_forest(table, width=5.0)
    fig.canvas.draw()
    for ax in fig.axes:
        title = ax.title if ax.get_title() else ax._left_title
        assert 1 < len(title.get_text().splitlines()) <= 3
        assert title.get_window_extent().x1 <= fig.bbox.x1 + 1
    plt.close(fig)


@pytest.mark.parametrize(("change", "message"), [
    (lambda t: t.drop(columns="band_low"), "band_low"),
    (lambda t: t.assign(verdict="maybe"), "unknown verdicts"),
    (lambda t: t.assign(scale="log"), "unknown scales"),
    (lambda t: t.assign(scale=["dice"] * 5 + ["percent"]).assign(claim="1"), "mix scales"),
    (lambda t: t.iloc[:0], "no rows"),
])
def test_bad_tables_are_refused(change, message: str) -> None:  # noqa: ANN001
    with pytest.raises((KeyError, ValueError), match=message):
        vf.verdict_forest(change(verdicts()))
