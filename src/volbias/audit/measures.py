"""Per-case numbers of the audit: Dice, volumes, calibration, tau* and the Dice-optimal mask.

Conventions (the report's definitions):

- the reference of a case is the mean of its raters' foreground masks, ``r_i`` (the label itself with one
  rater); its volume is ``sum_i r_i`` (the expected volume of a randomly drawn rater), its mask for the
  Dice is the strict majority ``r_i > 0.5`` (3 of 4 raters, 2 of 3; a tie is background), the rule of
  ``p_i > 0.5`` for a map and of the book's LIDC majority reference;
- the thresholded (hard) mask is ``p_i > threshold``, the soft volume ``sum_i p_i``; volumes in ml;
- tau* is the soft-Dice-optimal threshold of the map itself, ``SD*/2``
  (:func:`volbias.theory.soft_dice_threshold`), the Dice-optimal mask the top-k mask that maximises the
  expected Dice when every voxel is foreground with probability ``p_i``
  (:func:`volbias.theory.dice_optimal_mask`); the expected Dice of a mask under the map's own
  probabilities is :func:`volbias.theory.expected_dice`;
- calibration (ECE, reliability) is measured on the *calibration region*: the bounding box of the
  voxels with ``p_i >= 0.01`` or ``r_i > 0``, grown by :data:`CALIBRATION_MARGIN` voxels per side.  A box,
  not a value threshold, so that no voxel is selected by its own probability; the far background
  (``p_i < 0.01`` and ``r_i = 0``) would otherwise dominate every bin and make any map look calibrated;
- the intermediate share is the share of the voxels with ``p_i > 0.05`` whose probability is below 0.95.

Every voxel outside the bounding box of ``p_i > 0`` and ``r_i > 0`` has ``p_i = r_i = 0``, lies in none of
the masks and adds nothing to any volume, Dice, expected Dice, tau* or Dice-optimal mask, so each case is
cropped to that box (joined with the calibration region) to keep many large cases in memory; the theory
functions see the whole crop, zeros included.  All numbers are exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from volbias.audit.calibration import case_reliability
from volbias.metrics import calibration_error_of_bins, dice, hard_volume, soft_volume, voxel_volume_ml
from volbias.theory import dice_optimal_mask, expected_dice, soft_dice_threshold

CALIBRATION_MIN_PROBABILITY = 0.01
"""Voxels with at least this probability (or inside the reference) span the calibration region."""
CALIBRATION_MARGIN = 5
"""Voxels added on every side of the calibration region's bounding box."""
INTERMEDIATE = (0.05, 0.95)
"""Probabilities strictly between these bounds count as intermediate."""


@dataclass
class CaseMeasures:
    """One case's row of ``cases.csv`` and the cropped arrays the cross-case estimators need.

    The reference is kept as rater votes (uint8) to keep a hundred large cases in memory.
    """

    row: dict[str, Any]
    prob: np.ndarray  # float32, as read
    votes: np.ndarray  # uint8: raters marking each voxel
    n_raters: int
    calibration_region: np.ndarray
    reliability: pd.DataFrame
    spacing: tuple[float, ...]

    def reference(self, where: np.ndarray | None = None) -> np.ndarray:
        """The rater mean (float64) of the cropped case, or of the voxels ``where`` selects."""
        votes = self.votes if where is None else self.votes[where]
        return votes / float(self.n_raters)


def _box(mask: np.ndarray, margin: int = 0) -> list[tuple[int, int]] | None:
    """Per axis ``(start, stop)`` of the bounding box of ``mask`` grown by ``margin`` (None if empty)."""
    box = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=others))
        if hits.size == 0:
            return None
        box.append((max(int(hits[0]) - margin, 0), min(int(hits[-1]) + 1 + margin, mask.shape[axis])))
    return box


def calibration_box(prob: np.ndarray, reference: np.ndarray) -> list[tuple[int, int]] | None:
    """The calibration region's box (see the module docstring); None when it is empty."""
    return _box((prob >= CALIBRATION_MIN_PROBABILITY) | (reference > 0), CALIBRATION_MARGIN)


def _crop(prob: np.ndarray, reference: np.ndarray) -> tuple[tuple[slice, ...], np.ndarray]:
    """Slices of the crop and the calibration region as a mask inside it."""
    support = _box((prob > 0) | (reference > 0))
    calibration = calibration_box(prob, reference)
    boxes = [b for b in (support, calibration) if b is not None]
    if not boxes:  # empty map and empty reference: one voxel stands for the case
        crop = tuple(slice(0, 1) for _ in prob.shape)
        return crop, np.zeros((1,) * prob.ndim, dtype=bool)
    crop = tuple(slice(min(b[a][0] for b in boxes), max(b[a][1] for b in boxes)) for a in range(prob.ndim))
    region = np.zeros(tuple(s.stop - s.start for s in crop), dtype=bool)
    if calibration is not None:
        region[tuple(slice(lo - s.start, hi - s.start) for (lo, hi), s in zip(calibration, crop))] = True
    return crop, region


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def measure_case(case_id: str, prob: np.ndarray, votes: np.ndarray, n_raters: int, spacing: Sequence[float],
                 threshold: float = 0.5, n_bins: int = 10) -> CaseMeasures:
    """The numbers of one case from its probability map (in [0, 1]) and its raters' votes (0..``n_raters``)."""
    crop, region = _crop(prob, votes)
    p = np.asarray(prob[crop], dtype=np.float64)
    r = votes[crop] / float(n_raters)
    ref_mask = r > 0.5
    hard = p > threshold
    tau = soft_dice_threshold(p)
    tau_mask = p > tau
    optimal = dice_optimal_mask(p)
    voxel_ml = voxel_volume_ml(tuple(spacing), p.ndim)
    ref_volume, soft, hard_ml = soft_volume(r, spacing), soft_volume(p, spacing), hard_volume(p, spacing, threshold)
    above = p > INTERMEDIATE[0]
    reliability = case_reliability(p[region], r[region], n_bins)
    row: dict[str, Any] = {
        "case_id": case_id,
        "dice": dice(hard, ref_mask),
        "ref_volume_ml": ref_volume,
        "soft_volume_ml": soft,
        "hard_volume_ml": hard_ml,
        "soft_error_ml": soft - ref_volume,
        "hard_error_ml": hard_ml - ref_volume,
        "soft_relative_error": _ratio(soft - ref_volume, ref_volume),
        "hard_relative_error": _ratio(hard_ml - ref_volume, ref_volume),
        "tau_star": tau,
        "tau_star_volume_ml": hard_volume(tau_mask, spacing),
        "tau_star_dice": dice(tau_mask, ref_mask),
        "dice_optimal_volume_ml": hard_volume(optimal, spacing),
        "dice_optimal_dice": dice(optimal, ref_mask),
        "expected_dice_hard": expected_dice(hard, p),
        "expected_dice_optimal": expected_dice(optimal, p),
        "ece": calibration_error_of_bins(reliability),
        "intermediate_share": _ratio(float(np.count_nonzero(above & (p < INTERMEDIATE[1]))),
                                     float(np.count_nonzero(above))),
        "calibration_voxels": int(np.count_nonzero(region)),
        "n_raters": n_raters,
        "voxel_volume_ml": voxel_ml,
    }
    return CaseMeasures(row, p.astype(np.float32), votes[crop].astype(np.uint8), n_raters, region, reliability,
                        tuple(float(s) for s in spacing))
