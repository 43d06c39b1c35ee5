"""Per-case numbers of the audit: Dice, volumes, calibration, tau* and the Dice-optimal mask.

Conventions (the report's definitions):

- the reference of a case is the mean of its raters' foreground masks, ``r_i`` (the label itself with one
  rater); its volume is ``sum_i r_i`` (the expected volume of a randomly drawn rater), its mask for the
  Dice is the strict majority ``r_i > 0.5`` (3 of 4 raters, 2 of 3; a tie is background), the rule of
  ``p_i > 0.5`` for a map and of the book's LIDC majority reference;
- the thresholded (hard) mask is ``p_i > threshold``, the soft volume ``sum_i p_i`` over the whole map;
  volumes in ml; for a softmax over three or more classes the argmax mask (nnU-Net's segmentation) too;
- tau* is the soft-Dice-optimal threshold of the map itself, ``SD*/2``
  (:func:`volbias.theory.soft_dice_threshold`), the Dice-optimal mask the top-k mask that maximises the
  expected Dice when every voxel is foreground with probability ``p_i``
  (:func:`volbias.theory.dice_optimal_mask`); the expected Dice of a mask under the map's own
  probabilities is :func:`volbias.theory.expected_dice`;
- calibration is measured on the *calibration region*: the bounding box of the voxels that any rater
  marks, grown by :data:`CALIBRATION_MARGIN` voxels per side.  It comes from the reference alone, so the
  ECEs of two models audited against the same references cover the same voxels; a case with an empty
  reference has none.  ECE: :data:`ECE_DEFINITION`;
- the intermediate share is the share of the voxels with ``p_i > 0.05`` whose probability is below 0.95.

A case is measured on its whole map, and only what the audit needs later is kept: the numbers, the
reliability table and probability histogram, and the calibration region's map and votes (for the
temperature scaling that is fitted across cases), with the soft volume outside the region.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from volbias.audit.calibration import case_reliability
from volbias.metrics import calibration_error_of_bins, dice, hard_volume, voxel_volume_ml
from volbias.theory import dice_optimal_mask, expected_dice

CALIBRATION_MARGIN = 5
"""Voxels added on every side of the reference's bounding box to make the calibration region."""
INTERMEDIATE = (0.05, 0.95)
"""Probabilities strictly between these bounds count as intermediate."""
HISTOGRAM_MIN_PROBABILITY = 0.01
"""The probability histogram counts the voxels with at least this probability (the background would swamp it)."""
HISTOGRAM_BINS = 20
ECE_DEFINITION = ("expected calibration error: sum over equal-width probability bins of (voxels in the bin / all "
                  "voxels) x |mean probability - mean reference| (Guo et al. 2017), over the calibration region's "
                  "voxels")


@dataclass
class CaseMeasures:
    """One case's row of ``cases.csv`` and what the cross-case summaries need (small, whatever the map's size).

    ``region_prob`` and ``region_votes`` are the map (float32) and the raters' votes (uint8) inside the
    calibration region (a box; empty arrays when the reference is empty), ``outside_soft`` the sum of the
    probabilities outside it (voxels), ``histogram`` the counts of :data:`HISTOGRAM_BINS` equal-width bins of
    the probabilities of at least :data:`HISTOGRAM_MIN_PROBABILITY`, ``intermediate`` the voxels with
    ``p > 0.05`` and below 0.95, and all with ``p > 0.05``; ``channels`` which channels of the file the map is,
    ``notes`` what the report should say of the case.
    """

    row: dict[str, Any]
    region_prob: np.ndarray
    region_votes: np.ndarray
    n_raters: int
    reliability: pd.DataFrame
    histogram: np.ndarray
    outside_soft: float
    intermediate: tuple[int, int]
    spacing: tuple[float, ...]
    channels: str = ""
    notes: list[str] = field(default_factory=list)

    def reference(self) -> np.ndarray:
        """The rater mean (float64) inside the calibration region."""
        return self.region_votes / float(self.n_raters)


def calibration_box(votes: np.ndarray, margin: int = CALIBRATION_MARGIN) -> tuple[slice, ...] | None:
    """Slices of the bounding box of ``votes > 0`` grown by ``margin`` voxels (None for an empty reference)."""
    box = []
    for axis in range(votes.ndim):
        others = tuple(a for a in range(votes.ndim) if a != axis)
        hits = np.flatnonzero(votes.any(axis=others))
        if hits.size == 0:
            return None
        box.append(slice(max(int(hits[0]) - margin, 0), min(int(hits[-1]) + 1 + margin, votes.shape[axis])))
    return tuple(box)


def soft_dice_threshold_of_map(p: np.ndarray) -> float:
    """tau* = SD*/2 of :func:`volbias.theory.soft_dice_threshold`, computed without sorting the whole map.

    The top-k score ``2 S_k / (k + sum p)`` grows with a voxel of value ``v`` exactly when ``v`` exceeds half
    the score, so the optimal mask holds only voxels above any half-score ``L``; ``L`` from the voxels above
    0.5 (else the largest voxel) bounds the voxels to sort.  The theory function sorts every voxel, minutes
    for a CT; hence this reduction, with the same tie rule (a tie group is kept or dropped as a whole).
    """
    flat = np.ravel(p)
    total = float(flat.sum(dtype=np.float64))
    if total == 0.0:
        return 0.5
    above = flat[flat > 0.5]
    bound = (float(above.sum(dtype=np.float64)) / (above.size + total) if above.size
             else float(flat.max()) / (1.0 + total))
    values = np.sort(flat[flat >= bound].astype(np.float64))[::-1]
    sums = np.cumsum(values)
    k = np.arange(1, values.size + 1)
    group_end = np.append(values[1:] != values[:-1], True)
    return float(np.max(np.where(group_end, sums / (k + total), -np.inf)))


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def _region(prob: np.ndarray, votes: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Map and votes inside the calibration region, and the map's sum outside it."""
    box = calibration_box(votes)
    total = float(prob.sum(dtype=np.float64))
    if box is None:
        return np.zeros(0, np.float32), np.zeros(0, np.uint8), total
    region_prob = np.array(prob[box], dtype=np.float32)
    return region_prob, np.array(votes[box], dtype=np.uint8), total - float(region_prob.sum(dtype=np.float64))


def measure_case(case_id: str, prob: np.ndarray, votes: np.ndarray, n_raters: int, spacing: Sequence[float],
                 threshold: float = 0.5, n_bins: int = 10, argmax: np.ndarray | None = None) -> CaseMeasures:
    """The numbers of one case from its probability map (in [0, 1]), its raters' votes (0..``n_raters``) and,
    for a softmax over three or more classes, nnU-Net's argmax mask."""
    voxel_ml = voxel_volume_ml(tuple(spacing), prob.ndim)
    ref_mask = votes > n_raters / 2
    hard = prob > threshold
    tau = soft_dice_threshold_of_map(prob)
    tau_mask = prob > tau
    optimal = dice_optimal_mask(prob)
    ref_volume = float(votes.sum(dtype=np.int64)) / n_raters * voxel_ml
    soft = float(prob.sum(dtype=np.float64)) * voxel_ml
    hard_ml = hard_volume(hard, spacing)
    above = prob > INTERMEDIATE[0]
    n_above = int(np.count_nonzero(above))
    n_between = int(np.count_nonzero(above & (prob < INTERMEDIATE[1])))
    region_prob, region_votes, outside = _region(prob, votes)
    reliability = case_reliability(region_prob.astype(np.float64), region_votes / float(n_raters), n_bins)
    histogram = np.histogram(prob[prob >= HISTOGRAM_MIN_PROBABILITY], bins=HISTOGRAM_BINS, range=(0.0, 1.0))[0]
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
    }
    if argmax is not None:
        argmax_ml = hard_volume(argmax, spacing)
        row.update({"argmax_volume_ml": argmax_ml, "argmax_dice": dice(argmax, ref_mask),
                    "argmax_error_ml": argmax_ml - ref_volume,
                    "argmax_relative_error": _ratio(argmax_ml - ref_volume, ref_volume)})
    row.update({
        "tau_star": tau,
        "tau_star_volume_ml": hard_volume(tau_mask, spacing),
        "tau_star_dice": dice(tau_mask, ref_mask),
        "dice_optimal_volume_ml": hard_volume(optimal, spacing),
        "dice_optimal_dice": dice(optimal, ref_mask),
        "expected_dice_hard": expected_dice(hard, prob),
        "expected_dice_optimal": expected_dice(optimal, prob),
        "ece": calibration_error_of_bins(reliability),
        "intermediate_share": _ratio(float(n_between), float(n_above)),
        "calibration_voxels": int(region_prob.size),
        "n_raters": n_raters,
        "voxel_volume_ml": voxel_ml,
    })
    return CaseMeasures(row, region_prob, region_votes, n_raters, reliability, histogram, outside,
                        (n_between, n_above), tuple(float(s) for s in spacing))
