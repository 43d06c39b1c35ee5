"""Volume estimators from one probability map (numpy).

Volumes are in ml when ``spacing`` (voxel size in mm) is given, else in voxels, as in
:mod:`volbias.metrics`; the thresholded and the soft volume are that module's functions.

- :func:`hard_volume`: the thresholded mask ``p > t`` (``t = 0.5`` is the usual segmentation);
- :func:`soft_volume`: ``sum_i p_i``, unbiased for calibrated maps (expected volume);
- :func:`temperature_scaled_volume`: the soft volume of ``sigmoid(logit(p) / T)``;
- :func:`tau_star_volume`: the map thresholded at its own soft-Dice-optimal threshold
  ``tau* = SD*/2`` (:func:`volbias.theory.soft_dice_threshold`), i.e. what soft Dice training would
  produce from a calibrated (CE) map;
- :func:`dice_optimal_volume`: the mask that maximises the expected Dice under independent
  Bernoulli voxels (:func:`volbias.theory.dice_optimal_mask`).
The linear re-calibration of volumes is in :mod:`volbias.estimators.recalibration`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from volbias.estimators.temperature import apply_temperature
from volbias.metrics import hard_volume, soft_volume
from volbias.theory import dice_optimal_mask, soft_dice_threshold

Spacing = Sequence[float] | float | None

__all__ = ["dice_optimal_volume", "hard_volume", "soft_volume", "tau_star_mask", "tau_star_volume",
           "temperature_scaled_volume"]


def temperature_scaled_volume(
    prob: np.ndarray, temperature: float, mask: np.ndarray | None = None, spacing: Spacing = None
) -> float:
    """Soft volume of the temperature-scaled map (voxels outside ``mask`` contribute nothing)."""
    return soft_volume(apply_temperature(prob, temperature, mask), spacing)


def tau_star_mask(prob: np.ndarray) -> np.ndarray:
    """The map thresholded at its own soft-Dice-optimal threshold ``tau*``: ``prob > tau*``."""
    p = np.asarray(prob, dtype=np.float64)
    return p > soft_dice_threshold(p)


def tau_star_volume(prob: np.ndarray, spacing: Spacing = None) -> float:
    """Volume of :func:`tau_star_mask`."""
    return hard_volume(tau_star_mask(prob), spacing)


def dice_optimal_volume(prob: np.ndarray, spacing: Spacing = None) -> float:
    """Volume of the expected-Dice-optimal mask :func:`volbias.theory.dice_optimal_mask`."""
    return hard_volume(np.asarray(dice_optimal_mask(prob), dtype=bool), spacing)
