"""The Theory chapter at the smoke profile: its glued numbers against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

pytestmark = pytest.mark.slow


@pytest.fixture
def glued(book):
    """The Theory chapter executed by the session's book (tests/book_runner.py)."""
    return book.step("theory")


def disk_marginals(radius: float, sigma: float, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Distances and marginals of a blurred disk on the grid the chapter uses (built here anew)."""
    half = int(np.ceil(radius + margin * sigma)) + 1
    x, y = np.meshgrid(np.arange(-half, half + 1.0), np.arange(-half, half + 1.0))
    d = np.hypot(x, y)
    return d, stats.norm.cdf((radius - d) / sigma)


def soft_dice_best(p: np.ndarray) -> tuple[int, float]:
    """Size and score of the best top-k mask for the plug-in soft Dice, by scanning every k."""
    values = np.sort(p.ravel())[::-1]
    scores = 2 * np.cumsum(values) / (np.arange(1, values.size + 1) + values.sum())
    return int(np.argmax(scores)) + 1, float(scores.max())


def test_core_rim_numbers(glued) -> None:
    assert glued.value("theory_qcrit_r1") == pytest.approx(np.sqrt(2) - 1)
    # r = 1, q = 0.45: above q_crit, so soft Dice keeps the rim; CE (q < 1/2) drops it
    assert glued.value("theory_core_rim_sd_bias") == pytest.approx((1 - 0.45) / 1.45)
    assert glued.value("theory_core_rim_ce_bias") == pytest.approx(-0.45 / 1.45)


def test_blurred_disk_biases(glued) -> None:
    radius, ratio = glued.value("theory_radius_2d"), glued.value("theory_ratio_2d")
    d, p = disk_marginals(radius, ratio * radius, margin=5.0)
    expected = p.sum()
    k, best = soft_dice_best(p)
    assert glued.value("theory_bias_2d_sd") == pytest.approx(k / expected - 1, abs=1e-9)
    assert glued.value("theory_tau_2d") == pytest.approx(best / 2, abs=1e-12)
    assert glued.value("theory_bias_2d_ce_threshold") == pytest.approx(np.count_nonzero(p > 0.5) / expected - 1)
    assert glued.value("theory_bias_2d_ce_soft") == 0.0
    # boundary shift: Dice of the k nearest voxels against a disk of radius R + delta, by sampling delta
    delta = np.random.default_rng(0).normal(0, ratio * radius, 20000)
    m = np.searchsorted(np.sort(d.ravel()), radius + delta)  # voxels strictly inside R + delta
    ks = np.arange(1, d.size + 1)[:, None]
    sampled = (2 * np.minimum(ks, m) / (ks + m)).mean(axis=1)
    assert glued.value("theory_bias_2d_dice_shift") < 0 < glued.value("theory_bias_2d_sd")
    k_shift = (glued.value("theory_bias_2d_dice_shift") + 1) * expected
    assert sampled[int(round(k_shift)) - 1] == pytest.approx(sampled.max(), abs=2e-3)


def test_free_logit_experiment(glued) -> None:
    # smoke profile: disk R = 3, sigma = 1 on the default grid (6 sigma margin)
    _, p = disk_marginals(3.0, 1.0, margin=6.0)
    assert glued.value("theory_gd_expected_volume") == pytest.approx(p.sum())
    assert glued.value("theory_gd_ce_volume") == pytest.approx(p.sum(), rel=0.1)
    assert glued.value("theory_gd_ce_distance") < 0.02
    assert glued.value("theory_gd_sd_binariness") < 0.01
    assert abs(glued.value("theory_gd_sd_volume") - glued.value("theory_gd_dice_opt_volume")) < 0.15 * p.sum()
    # the Dice-optimal volume maximises the sampled expected Dice of top-k masks (independent voxels)
    ps = np.sort(p.ravel())[::-1]
    labels = np.random.default_rng(1).random((20000, ps.size)) < ps
    ks = np.arange(1, ps.size + 1)
    sampled = (2 * np.cumsum(labels, axis=1) / (ks + labels.sum(1, keepdims=True))).mean(axis=0)
    assert sampled[int(glued.value("theory_gd_dice_opt_volume")) - 1] == pytest.approx(sampled.max(), abs=3e-3)
    assert glued.value("theory_tau_min") <= glued.value("theory_tau_2d") < 0.5
