"""Tests of volbias.analysis.headline: the uncertainty index by hand, the theory's curves against direct
computations on the same phantoms, and the figure holding every curve and measured point."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from matplotlib.colors import same_color

from volbias.analysis import headline
from volbias.analysis.phantom_theory import theory_bias, theory_volumes
from volbias.analysis.plots import loss_colour
from volbias.data import make_phantoms


def test_uncertainty_index_by_hand() -> None:
    assert headline.uncertainty_index(np.array([[1.0, 1.0], [0.0, 0.0]])) == 0.0  # one rater: no uncertainty
    assert headline.uncertainty_index(np.full((3, 3), 0.5)) == pytest.approx(0.5)
    a, b = np.array([1.0, 0.25]), np.array([0.5, 0.5, 0.0])
    expected = (0 + 0.25 * 0.75 + 2 * 0.25) / (1.25 + 1.0)  # pooled over maps, not averaged
    assert headline.uncertainty_index([a, b]) == pytest.approx(expected)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        headline.uncertainty_index(np.array([0.5, 1.5]))
    with pytest.raises(ValueError, match="sum to 0"):
        headline.uncertainty_index(np.zeros(4))


@given(arrays(float, st.integers(1, 30), elements=st.floats(0, 1)))
def test_uncertainty_index_lies_in_the_unit_interval(p: np.ndarray) -> None:
    if p.sum() == 0:
        return
    u = headline.uncertainty_index(p)
    assert 0.0 <= u <= 1.0
    assert u == pytest.approx(float(np.sum(p - p**2)) / float(np.sum(p)))


def test_dataset_uncertainty_reads_marginals_else_labels() -> None:
    labelled = SimpleNamespace(marginals=None, label=np.array([1.0, 1.0, 0.0]))
    rated = SimpleNamespace(marginals=np.array([0.5, 0.25, 0.0]), label=np.array([1.0, 0.0, 0.0]))
    assert headline.dataset_uncertainty([labelled]) == 0.0
    assert headline.dataset_uncertainty([labelled, rated]) == pytest.approx((0.25 + 0.1875) / (2 + 0.75))


def test_theory_curves_match_direct_computation_on_the_same_phantoms() -> None:
    ratios = (0.1, 0.9)
    curves = headline.theory_curves(ratios, shift_relative_sigma=(0.9,), n_cases=3)
    assert set(curves["curve"]) == set(headline.THEORY_CURVES)

    def family(rel: float, noise: str) -> list:
        return make_phantoms(dims=2, radius=headline.FAMILY_RADIUS, sigma=rel * headline.FAMILY_RADIUS, n_cases=3,
                             size=headline.PHANTOM_SIZE, n_raters=1, noise=noise)

    for rel in ratios:
        cases = family(rel, "independent")
        p = np.concatenate([c.marginals.astype(float).ravel() for c in cases])
        at = curves[(curves["relative_sigma"] == rel) & (curves["noise"] == "independent")].set_index("curve")
        np.testing.assert_allclose(at["uncertainty"], np.sum(p * (1 - p)) / p.sum(), rtol=1e-6)
        assert at.loc["ce_soft", "bias"] == 0.0
        hard = sum(np.count_nonzero(c.marginals > 0.5) for c in cases)
        assert at.loc["ce_threshold", "bias"] == pytest.approx(hard / p.sum() - 1, rel=1e-5)
    shifted = curves[curves["curve"] == "dice_shift"]
    assert list(shifted["relative_sigma"]) == [0.9]
    assert shifted["bias"].iloc[0] == pytest.approx(theory_bias(theory_volumes(family(0.9, "shift")))["dice_optimal"])
    by = curves.pivot_table(index="relative_sigma", columns="curve", values="bias")
    # the theory chapter's signs at large blur: thresholded CE under-, the soft Dice optimum over-estimates
    assert by.loc[0.9, "ce_threshold"] < 0 < by.loc[0.9, "sd_plugin"]
    u = curves[curves["curve"] == "sd_plugin"].sort_values("relative_sigma")["uncertainty"]
    assert u.is_monotonic_increasing


def measured() -> pd.DataFrame:
    rows = [("phantoms", "ind 0.9", 0.5, 0.2, 0.1, 0.3, "sd", "thresholded"),
            ("phantoms", "ind 0.9", 0.5, 0.01, -0.02, 0.04, "ce", "soft"),
            ("LIDC", "LIDC", 0.24, 0.08, float("nan"), float("nan"), "sd", "thresholded"),
            ("BraTS sample", "BraTS", 0.0, -0.01, -0.05, 0.03, "ce", "soft")]
    return pd.DataFrame(rows, columns=list(headline.MEASURED_COLUMNS))


def test_the_figure_holds_the_curves_and_every_point() -> None:
    theory = pd.DataFrame([
        {"curve": c, "uncertainty": u, "bias": b} for c in headline.THEORY_CURVES for u, b in ((0.1, 0.0), (0.5, 0.1))
    ])
    points = measured()
    fig = headline.headline_figure(theory, points)
    (ax,) = fig.axes
    drawn = {line.get_gid() for line in ax.get_lines()}
    assert {f"theory-{c}" for c in headline.DRAWN_CURVES} <= drawn
    assert "theory-dice_optimal" not in drawn  # not drawn by default
    markers = [c for c in ax.containers if c.lines[0].get_gid() == "measured"]
    assert len(markers) == len(points)
    sources = {}
    for container, row in zip(markers, points.itertuples()):
        line = container.lines[0]
        assert line.get_ydata()[0] == pytest.approx(row.bias)
        assert line.get_xdata()[0] == pytest.approx(row.uncertainty, abs=0.02)
        assert same_color(line.get_color(), loss_colour(row.loss))
        assert same_color(line.get_markerfacecolor(), "white") == (row.volume == "thresholded")
        sources.setdefault(row.source, set()).add(line.get_marker())
        has_bar = bool(container.lines[2])
        assert has_bar == np.isfinite(row.ci_low)
    assert all(len(m) == 1 for m in sources.values()) and len({m.pop() for m in sources.values()}) == 3
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"phantoms", "LIDC", "BraTS sample"} <= set(legend)
    plt.close(fig)


def test_bad_measured_frames_are_refused() -> None:
    theory = pd.DataFrame({"curve": ["ce_soft"], "uncertainty": [0.1], "bias": [0.0]})
    with pytest.raises(KeyError, match="loss"):
        headline.headline_figure(theory, measured().drop(columns="loss"))
    with pytest.raises(ValueError, match="soft"):
        headline.headline_figure(theory, measured().assign(volume="median"))


def test_the_summary_pastes_as_html_on_another_page() -> None:
    text = "Soft Dice **over-estimates** volumes by <12 %> at high uncertainty."
    summary = headline.Summary(text)
    assert summary._repr_markdown_() == text
    html = summary._repr_html_()
    assert "<strong>over-estimates</strong>" in html and "&lt;12 %&gt;" in html and "<p>" not in html
    for math in ("the bias $b$ grows", "the bias \\(b\\) grows"):
        with pytest.raises(ValueError, match="no math"):
            headline.Summary(math)
