"""Evaluation metrics: Dice, soft and thresholded volumes, volume errors in ml, calibration.

Conventions: masks are boolean arrays (or 0/1); probability maps lie in [0, 1]; ``spacing`` is
the voxel size in mm per axis (or one isotropic value), volumes in ml are ``count * prod(spacing)
/ 1000``, and without a spacing volumes stay in voxels.  Calibration binning uses
``monai.metrics.calibration_binning`` (equal-width bins on [0, 1], left edges included).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from monai.metrics import calibration_binning


def _as_bool(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype != bool:
        if arr.size and not np.all((arr == 0) | (arr == 1)):
            raise ValueError(f"{name}: a hard mask must hold only 0 and 1 (threshold probabilities first)")
        arr = arr.astype(bool)
    return arr


def _as_prob(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.size and not (np.all(np.isfinite(arr)) and arr.min() >= 0 and arr.max() <= 1):
        raise ValueError(f"{name}: probabilities must be finite and lie in [0, 1]")
    return arr


def _same_shape(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names}: shapes differ, {a.shape} vs {b.shape}")


def dice(pred: np.ndarray, ref: np.ndarray, empty_value: float = 1.0) -> float:
    """Dice ``2|pred & ref| / (|pred| + |ref|)``; ``empty_value`` (default 1.0) when both masks are empty."""
    pred, ref = _as_bool(pred, "pred"), _as_bool(ref, "ref")
    _same_shape(pred, ref, "pred/ref")
    total = int(pred.sum()) + int(ref.sum())
    if total == 0:
        return float(empty_value)
    return 2.0 * int(np.count_nonzero(pred & ref)) / total


def voxel_volume_ml(spacing: Sequence[float] | float | None, ndim: int) -> float:
    """Volume of one voxel in ml (``prod(spacing) / 1000``), or 1.0 (volumes in voxels) without spacing."""
    if spacing is None:
        return 1.0
    values = tuple(float(s) for s in np.atleast_1d(spacing))
    if len(values) == 1:
        values *= ndim
    if len(values) != ndim or min(values) <= 0:
        raise ValueError(f"spacing: need {ndim} positive values in mm, got {values}")
    return float(np.prod(values)) / 1000.0


def soft_volume(prob: np.ndarray, spacing: Sequence[float] | float | None = None) -> float:
    """Soft volume ``sum prob`` (ml with ``spacing``, else voxels)."""
    prob = _as_prob(prob, "prob")
    return float(prob.sum()) * voxel_volume_ml(spacing, prob.ndim)


def hard_volume(
    prob: np.ndarray, spacing: Sequence[float] | float | None = None, threshold: float = 0.5
) -> float:
    """Volume of ``prob > threshold`` (ml with ``spacing``, else voxels); a boolean mask is counted as is."""
    arr = np.asarray(prob)
    count = np.count_nonzero(arr) if arr.dtype == bool else np.count_nonzero(_as_prob(arr, "prob") > threshold)
    return float(count) * voxel_volume_ml(spacing, arr.ndim)


def volume_error(pred_volume: float | np.ndarray, true_volume: float | np.ndarray) -> float | np.ndarray:
    """Signed volume error ``pred - true`` (positive = over-estimation), in the unit of the inputs."""
    return np.subtract(pred_volume, true_volume)


def absolute_volume_error(pred_volume: float | np.ndarray, true_volume: float | np.ndarray) -> float | np.ndarray:
    """Absolute volume error ``|pred - true|``, in the unit of the inputs."""
    return np.abs(np.subtract(pred_volume, true_volume))


def reliability_bins(
    prob: np.ndarray, label: np.ndarray, n_bins: int = 10, mask: np.ndarray | None = None
) -> pd.DataFrame:
    """Reliability-diagram table: one row per equal-width bin of ``prob`` (voxels where ``mask`` is set).

    Columns ``bin_lower``, ``bin_upper``, ``mean_probability``, ``observed_frequency`` (mean
    label; soft labels allowed) and ``count``; empty bins hold NaN means and count 0.
    """
    prob, label = _as_prob(prob, "prob"), _as_prob(label, "label")
    _same_shape(prob, label, "prob/label")
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    if mask is not None:
        mask = _as_bool(mask, "mask")
        _same_shape(prob, mask, "prob/mask")
        prob, label = prob[mask], label[mask]
    y_pred = torch.as_tensor(prob.ravel(), dtype=torch.float64).reshape(1, 1, -1)
    y = torch.as_tensor(label.ravel(), dtype=torch.float64).reshape(1, 1, -1)
    mean_p, mean_y, counts = calibration_binning(y_pred, y, num_bins=n_bins)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return pd.DataFrame(
        {
            "bin_lower": edges[:-1],
            "bin_upper": edges[1:],
            "mean_probability": mean_p[0, 0].double().numpy(),
            "observed_frequency": mean_y[0, 0].double().numpy(),
            "count": counts[0, 0].numpy().astype(np.int64),
        }
    )


def calibration_error_of_bins(table: pd.DataFrame) -> float:
    """Expected calibration error ``sum_b (n_b / n) |mean prob_b - mean label_b|`` of a reliability table
    (:func:`reliability_bins`, or several pooled); NaN when every bin is empty."""
    filled = table["count"] > 0
    if not filled.any():
        return float("nan")
    gaps = (table["mean_probability"] - table["observed_frequency"]).abs()[filled]
    weights = table["count"][filled]
    return float((gaps * weights).sum() / weights.sum())


def expected_calibration_error(
    prob: np.ndarray, label: np.ndarray, n_bins: int = 10, mask: np.ndarray | None = None
) -> float:
    """Expected calibration error ``sum_b (n_b / n) |mean prob_b - mean label_b|`` over equal-width bins."""
    table = reliability_bins(prob, label, n_bins, mask)
    if not (table["count"] > 0).any():
        raise ValueError("prob: no voxels to assess (empty input or mask)")
    return calibration_error_of_bins(table)
