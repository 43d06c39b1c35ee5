"""Optima of the later losses against brute-force minimisation over grids, all masks and bounded optimisers."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import minimize

from volbias.theory.later_optima import (
    dsc_plus_plus_optimum,
    dsc_plus_plus_ratio,
    focal_expected_loss,
    focal_optimum,
    tversky_index,
    tversky_optimal_mask,
)


def _grid_minimiser(p: float, gamma: float) -> float:
    """Minimiser of the expected focal loss on a fine grid of s, refined once around the grid's best point."""
    s = np.linspace(1e-9, 1 - 1e-9, 200_001)
    best = s[np.argmin(-p * (1 - s) ** gamma * np.log(s) - (1 - p) * s**gamma * np.log1p(-s))]
    fine = np.linspace(max(best - 1e-5, 1e-12), min(best + 1e-5, 1 - 1e-12), 20_001)
    return float(fine[np.argmin(-p * (1 - fine) ** gamma * np.log(fine) - (1 - p) * fine**gamma * np.log1p(-fine))])


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0, 3.0])
def test_focal_optimum_is_the_grid_minimiser(gamma: float) -> None:
    p = np.array([1e-4, 0.003, 0.02, 0.1, 0.3, 0.5, 0.62, 0.9, 0.999])
    got = focal_optimum(p, gamma)
    for q, s in zip(p, got):
        assert s == pytest.approx(_grid_minimiser(q, gamma), abs=2e-6)
        # and no point of a coarse grid does better (a single minimum, found)
        grid = np.linspace(1e-6, 1 - 1e-6, 5001)
        assert focal_expected_loss(s, q, gamma) <= focal_expected_loss(grid, np.full(grid.shape, q), gamma).min() + 1e-12


def test_focal_gamma_two_inflates_small_probabilities() -> None:
    s = focal_optimum(np.array([0.0, 0.02, 0.5, 0.98, 1.0]), 2.0)
    assert s[1] == pytest.approx(0.19, abs=0.005)  # the value quoted in the chapter
    assert (s[0], s[2], s[4]) == (0.0, pytest.approx(0.5, abs=1e-9), 1.0)
    assert s[3] == pytest.approx(1 - s[1], abs=1e-9)  # symmetric about 1/2
    grid = focal_optimum(np.linspace(0, 1, 2001), 2.0)  # increasing: s* > 1/2 exactly where p > 1/2
    assert np.all(np.diff(grid) > 0)
    small = np.array([1e-4, 1e-6, 1e-8, 1e-10])
    ratio = focal_optimum(small, 2.0) / (small / 3) ** (1 / 3)  # the small-p limit (p / 3)^(1/3)
    assert np.all(np.diff(ratio) < 0) and ratio[-1] == pytest.approx(1.0, abs=0.005)
    np.testing.assert_array_equal(focal_optimum(small, 0.0), small)  # gamma = 0 is cross-entropy: proper


def test_tversky_mask_is_the_best_of_all_masks() -> None:
    rng = np.random.default_rng(0)
    for alpha, beta in [(0.3, 0.7), (0.5, 0.5), (0.7, 0.3), (0.2, 0.5)]:
        for _ in range(15):
            p = rng.beta(0.6, 0.6, 9)
            mask = tversky_optimal_mask(p, alpha, beta)
            best = max(tversky_index(np.array(m, float), p, alpha, beta)
                       for m in itertools.product([0, 1], repeat=p.size))
            found = tversky_index(mask.astype(float), p, alpha, beta)
            assert found == pytest.approx(best, abs=1e-12)
            # no fractional map does better (linear-fractional: the optimum is a vertex)
            for _ in range(20):
                assert tversky_index(rng.uniform(size=p.size), p, alpha, beta) <= found + 1e-12
            # the stated cut: kept voxels above alpha TI* / (1 - TI* (1 - alpha - beta)), dropped ones not
            cut = alpha * found / (1 - found * (1 - alpha - beta))
            assert np.all(p[mask] >= cut - 1e-12) and np.all(p[~mask] <= cut + 1e-12)


def test_tversky_with_small_alpha_keeps_more_than_soft_dice() -> None:
    from volbias.theory import soft_dice_optimum

    rng = np.random.default_rng(1)
    for _ in range(10):
        p = rng.beta(0.5, 0.5, 200)
        assert tversky_optimal_mask(p, 0.3, 0.7).sum() >= soft_dice_optimum(p).sum()
        np.testing.assert_array_equal(tversky_optimal_mask(p, 0.5, 0.5), soft_dice_optimum(p) > 0.5)
    assert not tversky_optimal_mask(np.zeros(4)).any()


def test_dsc_plus_plus_optimum_against_a_bounded_optimiser() -> None:
    rng = np.random.default_rng(2)
    for _ in range(12):
        p = rng.beta(0.7, 0.7, 8)
        got = dsc_plus_plus_optimum(p)
        best = min((minimize(dsc_plus_plus_ratio, x0, args=(p,), bounds=[(0, 1)] * p.size, method="L-BFGS-B",
                             options={"ftol": 1e-15, "gtol": 1e-12})
                    for x0 in [p, np.full(p.size, 0.5), rng.uniform(size=p.size)]), key=lambda r: r.fun)
        assert dsc_plus_plus_ratio(got, p) <= best.fun + 1e-10
        np.testing.assert_allclose(got, best.x, atol=2e-4)
        # one common inflation factor for every unclipped voxel, at least 1
        factor = got[got < 1] / p[got < 1]
        assert np.ptp(factor) < 1e-9 and factor.min() >= 1.0


def test_dsc_plus_plus_edge_cases() -> None:
    np.testing.assert_array_equal(dsc_plus_plus_optimum(np.zeros(3)), np.zeros(3))
    binary = np.array([0.0, 1.0, 1.0])
    np.testing.assert_array_equal(dsc_plus_plus_optimum(binary), binary)  # certain labels: nothing to inflate
    with pytest.raises(ValueError):
        focal_optimum(np.array([0.2]), -1.0)
    with pytest.raises(ValueError):
        tversky_optimal_mask(np.array([0.2]), 0.0, 0.0)
