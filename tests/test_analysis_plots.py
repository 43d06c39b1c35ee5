"""Tests of volbias.analysis.plots: statistics drawn match hand computations, figures hold the data."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import matplotlib.pyplot as plt
from matplotlib.colors import to_rgb
import numpy as np
import pandas as pd
import pytest

from volbias.analysis import plots, tables


def make_cases(n: int = 10) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    ref = rng.uniform(10, 50, n)
    rows = []
    for loss, scale in (("ce", 1.0), ("sd", 1.3)):
        pred = ref * scale + rng.normal(0, 1, n)
        rows += [{"task": "t", "loss": loss, "fold": 0, "seed": 0, "case_id": f"c{i}", "dice": 0.8,
                  "true_volume": ref[i], "expected_volume": ref[i], "pred_volume_soft": pred[i],
                  "pred_volume_hard": pred[i] + 1, "voxel_volume_ml": 1.0} for i in range(n)]
    return pd.DataFrame(rows)


def test_bland_altman_stats_by_hand() -> None:
    pred, ref = np.array([3.0, 5.0, 9.0, 4.0]), np.array([2.0, 5.0, 6.0, 5.0])
    d = pred - ref
    s = plots.bland_altman_stats(pred, ref)
    sd = np.sqrt(((d - d.mean()) ** 2).sum() / 3)
    assert s["bias"] == pytest.approx(0.75)
    assert s["sd"] == pytest.approx(sd)
    assert s["loa_low"] == pytest.approx(0.75 - 1.96 * sd)
    assert s["loa_high"] == pytest.approx(0.75 + 1.96 * sd)
    with pytest.raises(ValueError, match="at least 2"):
        plots.bland_altman_stats([1.0], [1.0])


def test_plot_bland_altman_and_scatter_hold_the_cases() -> None:
    cases = make_cases()
    fig, axes = plots.new_figure(2)
    stats = plots.plot_bland_altman(cases, axes[0], volume="hard").set_index("loss")
    sd = cases[cases.loss == "sd"]
    assert stats.loc["sd", "bias"] == pytest.approx((sd.pred_volume_hard - sd.expected_volume).mean())
    ys = np.sort(np.concatenate([c.get_offsets()[:, 1] for c in axes[0].collections]))
    np.testing.assert_allclose(ys, np.sort(cases.pred_volume_hard - cases.expected_volume))
    plots.plot_volume_scatter(cases, axes[1])
    assert sum(len(c.get_offsets()) for c in axes[1].collections) == len(cases)
    with pytest.raises(ValueError, match="volume must be"):
        plots.plot_volume_scatter(cases, axes[1], volume="median")
    plt.close(fig)


def test_probabilities_round_trip_and_pooling(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    probs = {"a": rng.uniform(0, 1, (4, 5)).astype(np.float16), "b": rng.uniform(0, 1, (4, 5)).astype(np.float16)}
    np.savez(tmp_path / "probabilities.npz", **probs)
    loaded = plots.load_probabilities(tmp_path)
    np.testing.assert_array_equal(loaded["a"], probs["a"].astype(np.float32))
    mask = np.zeros((4, 5), bool)
    mask[1:3] = True
    label = (rng.uniform(0, 1, (4, 5)) > 0.5).astype(np.float32)
    soft = rng.uniform(0, 1, (4, 5)).astype(np.float32)
    cases = [SimpleNamespace(id="a", label=label, mask=mask, marginals=soft),
             SimpleNamespace(id="zz", label=label, mask=mask, marginals=None)]
    prob, lab = plots.pooled_probabilities(loaded, cases)
    np.testing.assert_array_equal(prob, loaded["a"][1:3].ravel())
    np.testing.assert_array_equal(lab, label[1:3].ravel())
    _, marg = plots.pooled_probabilities(loaded, cases[:1], target="marginals")
    np.testing.assert_array_equal(marg, soft[1:3].ravel())
    with pytest.raises(ValueError, match="target"):
        plots.pooled_probabilities(loaded, cases, target="raters")
    with pytest.raises(ValueError, match="case a"):
        plots.pooled_probabilities(loaded, [SimpleNamespace(id="a", label=label[:2], mask=mask[:2])])
    with pytest.raises(ValueError, match="has no marginals"):
        plots.pooled_probabilities(loaded, [SimpleNamespace(id="a", label=label, mask=mask, marginals=None)],
                                   target="marginals")
    with pytest.raises(FileNotFoundError, match="probabilities.npz"):
        plots.load_probabilities(tmp_path / "none")
    runs = pd.DataFrame({"loss": ["sd", "sd", "ce"], "run_dir": [str(tmp_path)] * 3})
    pooled = plots.probabilities_by_loss(runs, cases)
    assert list(pooled) == ["ce", "sd"]  # display order, each run read once
    np.testing.assert_array_equal(pooled["sd"][0], prob)
    np.testing.assert_array_equal(pooled["ce"][1], lab)


def step_heights(patch, edges: np.ndarray) -> np.ndarray:
    """Heights of a step histogram read back from its outline: the horizontal segment over each bin."""
    xy = patch.get_xy()
    heights = np.zeros(len(edges) - 1)
    for (x0, y0), (x1, y1) in zip(xy[:-1], xy[1:]):
        if y0 == y1 and x1 > x0:
            heights[(edges[:-1] >= x0 - 1e-12) & (edges[1:] <= x1 + 1e-12)] = y0
    return heights


def test_histogram_reliability_and_bias_plots() -> None:
    rng = np.random.default_rng(1)
    fig, axes = plots.new_figure(3)
    probs = {"sd": np.r_[np.full(90, 0.999), np.full(10, 0.5), np.full(50, 0.001)], "ce": rng.uniform(0, 1, 1000)}
    plots.plot_probability_histograms(probs, axes[0], bins=10)
    assert len(axes[0].patches) == 2
    edges = np.linspace(0, 1, 11)
    # densities over the voxels with p >= 0.01: SD puts 90 of its 100 kept voxels in the top bin (9 per unit)
    sd_heights = step_heights(axes[0].patches[plots.loss_order(probs).index("sd")], edges)
    np.testing.assert_allclose(sd_heights, [0, 0, 0, 0, 0, 1.0, 0, 0, 0, 9.0])
    ce = probs["ce"][probs["ce"] >= 0.01]
    ce_density = np.histogram(ce, bins=edges)[0] / (ce.size * 0.1)
    np.testing.assert_allclose(step_heights(axes[0].patches[plots.loss_order(probs).index("ce")], edges),
                               ce_density)
    bins = pd.DataFrame({"mean_probability": [0.1, 0.5, 0.9], "observed_frequency": [0.2, 0.5, 0.8],
                         "count": [5, 0, 5]})
    plots.plot_reliability({"ce": bins}, axes[1])
    (line,) = [l for l in axes[1].lines if l.get_marker() == "o"]  # the loss's curve, not the diagonal
    np.testing.assert_allclose(line.get_xdata(), [0.1, 0.9])  # empty bins are not drawn
    cases = make_cases()
    cases["sigma"] = np.where(np.arange(len(cases)) % 2, 1.0, 2.0)
    bias = tables.volume_bias_table(cases, by=("sigma", "loss"), n_resamples=200)
    theory = pd.DataFrame({"sigma": [1.0, 2.0], "bias": [0.1, 0.3]})
    plots.plot_bias_vs_uncertainty(bias, "sigma", axes[2], theory=theory)
    curve = [l for l in axes[2].lines if l.get_label() == "SD optimum (theory)"][0]
    np.testing.assert_allclose(curve.get_ydata(), [0.1, 0.3])
    plt.close(fig)


def test_each_loss_has_one_colour_in_every_figure() -> None:
    colours = list(plots.LOSS_COLOURS.values())
    assert len(set(colours)) == len(colours), "two losses share a colour"
    assert set(plots.LOSS_COLOURS) == set(plots.LOSS_ORDER)
    assert plots.loss_colour("ce-tversky") == plots.loss_colour("ce-tversky") not in colours
    cases = make_cases()
    fig, axes = plots.new_figure(2, 2)
    plots.plot_bland_altman(cases, axes[0])
    plots.plot_volume_scatter(cases, axes[1])
    plots.plot_probability_histograms({"sd": np.linspace(0.1, 1, 50), "ce": np.linspace(0.1, 1, 50)}, axes[2])
    bins = pd.DataFrame({"mean_probability": [0.2, 0.8], "observed_frequency": [0.3, 0.7], "count": [4, 4]})
    plots.plot_reliability({"sd": bins, "ce": bins}, axes[3])
    for loss, label in (("ce", "CE"), ("sd", "SD")):
        expected = to_rgb(plots.LOSS_COLOURS[loss])
        (points,) = [c for c in axes[0].collections if c.get_label() == label]
        assert np.allclose(to_rgb(points.get_facecolor()[0]), expected)
        legend = axes[1].get_legend()  # seaborn draws all points as one collection; its legend names the colours
        (handle,) = [h for h, t in zip(legend.legend_handles, legend.texts) if t.get_text() == label]
        assert np.allclose(to_rgb(handle.get_markerfacecolor()), expected)
        rows = np.flatnonzero(cases["loss"].to_numpy() == loss)
        assert np.allclose(axes[1].collections[0].get_facecolors()[rows, :3], expected)
        assert [p for p in axes[2].patches if p.get_label() == label and np.allclose(to_rgb(p.get_edgecolor()), expected)]
        assert [l for l in axes[3].lines if l.get_label() == label and np.allclose(to_rgb(l.get_color()), expected)]
    plt.close(fig)


@pytest.mark.parametrize(("ncols", "nrows", "grid"), [(1, 1, (1, 1)), (2, 1, (1, 2)), (3, 1, (2, 2)), (5, 1, (3, 2)),
                                                      (2, 3, (3, 2)), (4, 2, (2, 4))])
def test_new_figure_fits_the_text_column(ncols: int, nrows: int, grid: tuple[int, int]) -> None:
    width, height = 4.5, 3.6
    fig, axes = plots.new_figure(ncols, nrows, width=width, height=height)
    assert len(axes) == ncols * nrows == len(fig.axes)  # the spare axis of an odd row is removed
    rows, cols = grid
    fig_width, fig_height = fig.get_size_inches()
    assert fig_width <= plots.TEXT_WIDTH + 1e-9
    assert fig_width / fig_height == pytest.approx((cols * width) / (rows * height))
    assert all(ax.get_subplotspec().get_geometry()[:2] == grid for ax in axes)
    assert [ax.get_subplotspec().num1 for ax in axes] == list(range(len(axes)))  # reading order is kept
    plt.close(fig)


def test_new_figure_puts_images_three_in_a_row() -> None:
    fig, axes = plots.new_figure(3, width=3.0, height=3.0, max_cols=3)
    assert all(ax.get_subplotspec().get_geometry()[:2] == (1, 3) for ax in axes)
    assert fig.get_size_inches()[0] == pytest.approx(plots.TEXT_WIDTH)
    plt.close(fig)


def test_glue_figure_needs_a_figure_label_and_closes_the_figure() -> None:
    fig, _ = plots.new_figure()
    with pytest.raises(ValueError, match="must start with 'fig-'"):
        plots.glue_figure("curve", fig)
    plots.glue_figure("fig-curve", fig)
    assert not plt.fignum_exists(fig.number)
