"""Metrics against direct computations: Dice, volumes in ml, volume errors, calibration."""

from __future__ import annotations

import numpy as np
import pytest

from volbias.metrics import (
    absolute_volume_error,
    dice,
    expected_calibration_error,
    hard_volume,
    reliability_bins,
    soft_volume,
    volume_error,
    voxel_volume_ml,
)


def test_dice_and_empty_convention() -> None:
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2] = True  # 8 voxels
    b[1:3] = True  # 8 voxels, 4 shared
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(a.astype(int), b.astype(float)) == pytest.approx(0.5)
    empty = np.zeros((4, 4), bool)
    assert dice(empty, empty) == 1.0 and np.isnan(dice(empty, empty, empty_value=np.nan))
    assert dice(a, empty) == 0.0
    with pytest.raises(ValueError, match="pred"):
        dice(np.full((4, 4), 0.3), b)
    with pytest.raises(ValueError, match="shapes differ"):
        dice(a, b[:2])


def test_volumes_in_ml_and_errors() -> None:
    rng = np.random.default_rng(0)
    prob = rng.random((5, 6, 7))
    spacing = (2.0, 1.5, 0.5)
    assert voxel_volume_ml(spacing, 3) == pytest.approx(1.5e-3)
    assert voxel_volume_ml(2.0, 3) == pytest.approx(8e-3)
    assert soft_volume(prob, spacing) == pytest.approx(prob.sum() * 1.5e-3)
    assert hard_volume(prob, spacing) == pytest.approx(np.count_nonzero(prob > 0.5) * 1.5e-3)
    assert hard_volume(prob > 0.2) == np.count_nonzero(prob > 0.2)
    assert soft_volume(prob) == pytest.approx(prob.sum())
    assert volume_error(12.0, 10.0) == 2.0 and volume_error(8.0, 10.0) == -2.0
    assert absolute_volume_error(8.0, 10.0) == 2.0
    with pytest.raises(ValueError, match="spacing"):
        soft_volume(prob, (1.0, 1.0))


def test_calibration_against_a_direct_binning() -> None:
    rng = np.random.default_rng(1)
    prob = rng.random(5000) ** 1.5
    label = rng.random(5000) < prob**0.8  # miscalibrated on purpose
    n_bins = 8
    index = np.minimum((prob * n_bins).astype(int), n_bins - 1)
    table = reliability_bins(prob, label, n_bins)
    ece = 0.0
    for b in range(n_bins):
        chosen = index == b
        row = table.iloc[b]
        assert row["count"] == chosen.sum()
        assert row.mean_probability == pytest.approx(prob[chosen].mean(), abs=1e-6)
        assert row.observed_frequency == pytest.approx(label[chosen].mean(), abs=1e-6)
        ece += chosen.mean() * abs(prob[chosen].mean() - label[chosen].mean())
    assert expected_calibration_error(prob, label, n_bins) == pytest.approx(ece, abs=1e-6)
    # a calibrated sample scores close to zero
    calibrated = rng.random(200_000) < prob.repeat(40)
    assert expected_calibration_error(prob.repeat(40), calibrated, 10) < 0.01


def test_calibration_mask_and_errors() -> None:
    prob = np.array([0.05, 0.15, 0.95, 0.9])
    label = np.array([0, 1, 1, 1])
    mask = np.array([True, False, True, True])
    table = reliability_bins(prob, label, 10, mask)
    assert table["count"].sum() == 3 and table["count"].iloc[1] == 0 and np.isnan(table.mean_probability.iloc[1])
    assert expected_calibration_error(prob, label, 10, mask) == pytest.approx((0.05 + 0.05 + 0.1) / 3)
    with pytest.raises(ValueError, match="no voxels"):
        expected_calibration_error(prob, label, 10, np.zeros(4, bool))
    with pytest.raises(ValueError, match="n_bins"):
        reliability_bins(prob, label, 0)
