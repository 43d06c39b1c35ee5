"""Volume bias of the loss optima against boundary uncertainty ``sigma / R`` for blurred disks/spheres."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from volbias.theory.boundary_shift import shift_dice_optimal_mask
from volbias.theory.expected_dice import dice_optimal_mask
from volbias.theory.optima import soft_dice_optimum, soft_dice_threshold
from volbias.theory.phantoms import blurred_ball, centre_distances

VOLUME_COLUMNS = {
    "ce_soft": "CE optimum, soft volume",
    "ce_threshold": "CE optimum thresholded at 0.5",
    "sd": "soft Dice optimum",
    "dice_independent": "Dice-optimal mask, independent voxels",
    "dice_shift": "Dice-optimal mask, boundary shift",
}
"""Predicted-volume columns of :func:`bias_curve` and their labels for figures."""


def bias_curve(
    radius: float, sigma_over_radius: Iterable[float], dims: int = 2, margin: float = 5.0
) -> pd.DataFrame:
    """Volumes and relative volume biases of the loss optima for a blurred disk/sphere.

    One row per ``sigma / R``: ``expected_volume`` (``sum p``), the predicted volume of every
    column of :data:`VOLUME_COLUMNS`, the relative bias ``bias_<column> = volume / expected - 1``,
    the soft Dice threshold ``tau_star`` and the grid size ``n_voxels``.  Volumes in voxels.
    """
    rows = []
    for ratio in sigma_over_radius:
        sigma = float(ratio) * radius
        if sigma <= 0:
            raise ValueError(f"sigma_over_radius: values must be positive, got {ratio}")
        p = blurred_ball(radius, sigma, dims, margin)
        distances = centre_distances(radius, sigma, dims, margin)
        expected = float(p.sum())
        volumes = {
            "ce_soft": expected,
            "ce_threshold": float(np.count_nonzero(p > 0.5)),
            "sd": float(soft_dice_optimum(p).sum()),
            "dice_independent": float(dice_optimal_mask(p).sum()),
            "dice_shift": float(shift_dice_optimal_mask(distances, radius, sigma).sum()),
        }
        row = {"sigma_over_radius": float(ratio), "radius": radius, "dims": dims, "n_voxels": p.size}
        row |= {"expected_volume": expected, "tau_star": soft_dice_threshold(p)}
        row |= {f"volume_{k}": v for k, v in volumes.items()}
        row |= {f"bias_{k}": v / expected - 1.0 for k, v in volumes.items()}
        rows.append(row)
    return pd.DataFrame(rows)
