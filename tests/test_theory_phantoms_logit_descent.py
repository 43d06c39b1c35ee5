"""Blurred disks/spheres, bias curves and the free-logit optimisation experiment."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from volbias.theory import (
    bias_curve,
    blurred_disk,
    blurred_sphere,
    centre_distances,
    optimise_free_logits,
)


def test_blurred_disk_and_sphere_volumes_approach_the_continuum() -> None:
    radius, sigma = 12.0, 2.0
    # E[pi (R + delta)^2] = pi (R^2 + sigma^2); E[4/3 pi (R + delta)^3] = 4/3 pi (R^3 + 3 R sigma^2)
    assert blurred_disk(radius, sigma).sum() == pytest.approx(np.pi * (radius**2 + sigma**2), rel=0.01)
    assert blurred_sphere(radius, sigma).sum() == pytest.approx(4 / 3 * np.pi * (radius**3 + 3 * radius * sigma**2), rel=0.01)
    d = centre_distances(radius, sigma, dims=2)
    np.testing.assert_allclose(blurred_disk(radius, sigma), stats.norm.sf((d - radius) / sigma))
    assert blurred_disk(3.0, 0.0).sum() == np.count_nonzero(centre_distances(3.0, 0.0, 2) < 3.0)
    with pytest.raises(ValueError, match="dims"):
        centre_distances(3.0, 1.0, dims=4)


def disk_grid(radius: float, sigma: float, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """Distances to the centre and marginals Phi((R - d) / sigma) of a blurred disk, built here anew."""
    half = int(np.ceil(radius + margin * sigma)) + 1
    x, y = np.meshgrid(np.arange(-half, half + 1.0), np.arange(-half, half + 1.0))
    d = np.hypot(x, y).ravel()
    return d, stats.norm.cdf((radius - d) / sigma)


def sampled_top_k_dice(p: np.ndarray, n_draws: int, seed: int) -> np.ndarray:
    """Monte Carlo E[Dice] of the k most probable voxels (index k - 1) against labels Y_i ~ Bernoulli(p_i)."""
    ranked = np.sort(p.ravel())[::-1]
    labels = np.random.default_rng(seed).random((n_draws, ranked.size)) < ranked
    k = np.arange(1, ranked.size + 1)
    return (2 * np.cumsum(labels, axis=1, dtype=np.int32) / (k + labels.sum(1, keepdims=True))).mean(axis=0)


def sampled_shift_dice(d: np.ndarray, radius: float, sigma: float, n_draws: int, seed: int) -> np.ndarray:
    """Monte Carlo E[Dice] of the k voxels nearest the centre against the disk of radius R + delta,
    delta ~ N(0, sigma^2) (the boundary-shift model), for every k (index k - 1)."""
    delta = np.random.default_rng(seed).normal(0.0, sigma, n_draws)
    m = np.searchsorted(np.sort(d), radius + delta)  # voxels strictly inside R + delta
    k = np.arange(1, d.size + 1)[:, None]
    return (2 * np.minimum(k, m) / (k + m)).mean(axis=1)


@pytest.mark.parametrize("row_index, ratio", [(0, 0.1), (1, 0.3)])
def test_bias_curve_columns_against_scans_and_sampling(row_index: int, ratio: float) -> None:
    radius = 8.0
    row = bias_curve(radius, [0.1, 0.3], dims=2).iloc[row_index]
    d, p = disk_grid(radius, ratio * radius, margin=5.0)
    expected = p.sum()
    assert row.n_voxels == p.size and row.expected_volume == pytest.approx(expected)
    assert row.volume_ce_soft == pytest.approx(expected) and row.bias_ce_soft == pytest.approx(0.0, abs=1e-12)
    assert row.volume_ce_threshold == np.count_nonzero(p > 0.5)
    # plug-in soft Dice 2 <s, p> / (sum s + sum p) of every top-k mask, scanned
    ranked = np.sort(p)[::-1]
    scores = 2 * np.cumsum(ranked) / (np.arange(1, p.size + 1) + expected)
    assert row.volume_sd == np.argmax(scores) + 1 and row.tau_star == pytest.approx(scores.max() / 2)
    # expected hard Dice, independent voxels and boundary shift: the column's k is the sampled maximiser
    independent = sampled_top_k_dice(p, 3000, seed=row_index)
    assert independent[int(row.volume_dice_independent) - 1] == pytest.approx(independent.max(), abs=2e-3)
    shift = sampled_shift_dice(d, radius, ratio * radius, 20000, seed=row_index)
    assert shift[int(row.volume_dice_shift) - 1] == pytest.approx(shift.max(), abs=2e-3)
    for name in ("ce_threshold", "sd", "dice_independent", "dice_shift"):
        assert row[f"bias_{name}"] == pytest.approx(row[f"volume_{name}"] / expected - 1)


def test_bias_curve_threshold_falls_with_uncertainty() -> None:
    table = bias_curve(8.0, [0.1, 0.3, 0.6], dims=2)
    assert table.tau_star.iloc[2] < table.tau_star.iloc[1] < table.tau_star.iloc[0] < 0.5
    assert (table.bias_sd > 0).all() and (table.bias_ce_threshold < 0).all()


def test_free_logits_ce_converges_to_p_and_sd_to_a_binary_map() -> None:
    p = blurred_disk(3.0, 1.0)
    ce = optimise_free_logits(p, "ce", steps=300, seed=0)
    sd = optimise_free_logits(p, "sd", steps=300, seed=0)
    assert ce.history.distance_to_p.iloc[-1] < 0.01
    assert ce.probabilities.sum() == pytest.approx(p.sum(), rel=0.05)
    assert sd.history.binariness.iloc[-1] < 0.01
    # soft Dice on sampled labels approaches the mask of largest expected Dice (independent voxels)
    best_k = int(np.argmax(sampled_top_k_dice(p, 20000, seed=1))) + 1
    assert abs((sd.probabilities > 0.5).sum() - best_k) <= 0.1 * p.sum()
    again = optimise_free_logits(p, "sd", steps=300, seed=0)
    np.testing.assert_array_equal(again.probabilities, sd.probabilities)
