"""Core + rim closed forms and the boundary-shift model against direct computation and sampling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from volbias.theory import (
    core_rim_correlated_expected_dice,
    core_rim_marginals,
    core_rim_relative_bias,
    dice_optimal_mask,
    keeps_rim,
    q_crit,
    sample_shift_labels,
    shift_dice_optimal_mask,
    shift_disk,
    shift_expected_dice_topk,
    soft_dice_optimum,
)


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.floats(0.0, 1.0))
def test_soft_dice_optimum_keeps_rim_exactly_above_q_crit(core: int, rim: int, q: float) -> None:
    p = core_rim_marginals(core, rim, q)
    np.testing.assert_array_equal(p, np.r_[np.ones(core), np.full(rim, q)])
    r = rim / core
    total = core + rim * q  # plug-in soft Dice 2 <s, p> / (sum s + sum p) of the two candidate masks
    with_rim, without_rim = 2 * total / (core + rim + total), 2 * core / (core + total)
    if abs(with_rim - without_rim) < 1e-12:
        return  # on the boundary q = q_crit both are optimal
    mask = soft_dice_optimum(p)
    assert bool(mask[core:].all()) == keeps_rim(r, q) == (with_rim > without_rim)
    if not mask[core:].all():
        assert not mask[core:].any()  # all or nothing
    expected = p.sum()
    assert core_rim_relative_bias(r, q) == pytest.approx(mask.sum() / expected - 1, abs=1e-12)


def test_q_crit_solves_the_indifference_equation() -> None:
    r = np.array([0.01, 0.3, 1.0, 4.0, 50.0])
    q = q_crit(r)
    np.testing.assert_allclose(2 / (2 + r * q), 2 * (1 + r * q) / (2 + r + r * q), rtol=1e-12)
    assert np.all((q < 0.5) & (q > 0)) and q_crit(0.0) == 0.5
    assert np.all(np.diff(q) < 0)


def test_threshold_and_soft_biases() -> None:
    assert core_rim_relative_bias(1.0, 0.45, "ce_threshold") == pytest.approx(-0.45 / 1.45)
    assert core_rim_relative_bias(1.0, 0.45, "sd") == pytest.approx(0.55 / 1.45)
    assert core_rim_relative_bias(2.0, 0.3, "ce_soft") == 0.0
    with pytest.raises(ValueError, match="method"):
        core_rim_relative_bias(1.0, 0.3, "dice")


def test_correlated_rim_closed_form_matches_monte_carlo() -> None:
    rng = np.random.default_rng(0)
    core, rim, q = 30, 20, 0.4
    rim_on = rng.random(20000) < q
    for keep in (False, True):
        mask = np.r_[np.ones(core, bool), np.full(rim, keep)]
        overlap = core + keep * rim * rim_on
        dice = 2 * overlap / (mask.sum() + core + rim * rim_on)
        assert core_rim_correlated_expected_dice(rim / core, q, keep) == pytest.approx(dice.mean(), abs=0.01)
    assert keeps_rim(rim / core, 0.4, "correlated") is False and keeps_rim(rim / core, 0.6, "correlated") is True


def test_independent_rim_with_many_voxels_follows_q_crit() -> None:
    # for a large object the expected hard Dice behaves like the plug-in soft Dice
    core, rim = 2000, 2000
    r = rim / core
    for q in (q_crit(r) - 0.05, q_crit(r) + 0.05):
        mask = dice_optimal_mask(core_rim_marginals(core, rim, q))
        assert mask[core:].mean() == pytest.approx(float(keeps_rim(r, q)), abs=0.02)


def test_shift_expected_dice_matches_monte_carlo() -> None:
    radius, sigma = 5.0, 1.5
    d, _ = shift_disk(radius, sigma, dims=2)
    order, values = shift_expected_dice_topk(d, radius, sigma)
    labels = sample_shift_labels(d, radius, sigma, 4000, seed=1).reshape(4000, -1)
    for k in (20, 60, 80, 120):
        mask = np.zeros(d.size, bool)
        mask[order[:k]] = True
        dice = 2 * (labels & mask).sum(1) / (k + labels.sum(1))
        assert values[k] == pytest.approx(dice.mean(), abs=4 * dice.std() / np.sqrt(4000) + 1e-9)


def test_shift_labels_have_the_stated_marginals() -> None:
    d, p = shift_disk(4.0, 1.0, dims=2)
    labels = sample_shift_labels(d, 4.0, 1.0, 20000, seed=2)
    np.testing.assert_allclose(labels.mean(0), p, atol=0.015)


def test_bias_sign_flips_between_independent_and_shifted_boundary() -> None:
    radius, sigma = 20.0, 6.0
    d, p = shift_disk(radius, sigma, dims=2)
    expected = p.sum()
    independent = dice_optimal_mask(p).sum() / expected - 1
    shifted = shift_dice_optimal_mask(d, radius, sigma).sum() / expected - 1
    assert independent > 0.03 and shifted < -0.03
    # the shift optimum is a brute-force maximiser over radii (disks) by sampling
    labels = sample_shift_labels(d, radius, sigma, 3000, seed=3).reshape(3000, -1)
    scores = []
    for rho in np.arange(radius - 8, radius + 8, 0.5):
        mask = (d < rho).ravel()
        scores.append((2 * (labels & mask).sum(1) / (mask.sum() + labels.sum(1))).mean())
    best_rho = np.arange(radius - 8, radius + 8, 0.5)[int(np.argmax(scores))]
    assert np.pi * best_rho**2 < expected
