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
    dice_optimal_mask,
    optimise_free_logits,
    soft_dice_optimum,
    soft_dice_threshold,
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


def test_bias_curve_columns_agree_with_direct_computation() -> None:
    table = bias_curve(8.0, [0.1, 0.3], dims=2)
    p = blurred_disk(8.0, 2.4, margin=5.0)
    row = table.iloc[1]
    assert row.expected_volume == pytest.approx(p.sum())
    assert row.volume_ce_threshold == np.count_nonzero(p > 0.5)
    assert row.volume_sd == soft_dice_optimum(p).sum()
    assert row.volume_dice_independent == dice_optimal_mask(p).sum()
    assert row.tau_star == pytest.approx(soft_dice_threshold(p))
    assert row.bias_ce_soft == 0.0 and row.bias_ce_threshold < 0
    assert table.tau_star.iloc[1] < table.tau_star.iloc[0] < 0.5


def test_free_logits_ce_converges_to_p_and_sd_to_a_binary_map() -> None:
    p = blurred_disk(3.0, 1.0)
    ce = optimise_free_logits(p, "ce", steps=300, seed=0)
    sd = optimise_free_logits(p, "sd", steps=300, seed=0)
    assert ce.history.distance_to_p.iloc[-1] < 0.01
    assert ce.probabilities.sum() == pytest.approx(p.sum(), rel=0.05)
    assert sd.history.binariness.iloc[-1] < 0.01
    assert abs((sd.probabilities > 0.5).sum() - dice_optimal_mask(p).sum()) <= 0.1 * p.sum()
    again = optimise_free_logits(p, "sd", steps=300, seed=0)
    np.testing.assert_array_equal(again.probabilities, sd.probabilities)
