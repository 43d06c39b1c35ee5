"""Expected volume and the optima of cross-entropy and plug-in soft Dice under inherent uncertainty.

Model: for a given image the reference mask is random, ``Y_i ~ Bernoulli(p_i)``, with voxel
marginals ``p``.  The expected reference volume is ``sum_i p_i``.  Cross-entropy is a strictly
proper scoring rule, so its expected value is minimised by the calibrated map ``s = p`` and the
soft volume ``sum_i s_i`` is unbiased.  The plug-in soft Dice

    SD(s; p) = 2 <s, p> / (sum_i s_i + sum_i p_i)

is linear-fractional in ``s``; its maximum over the cube ``[0, 1]^N`` is attained at a vertex, and
since ``dSD/ds_i = 2 (p_i - SD/2) / (sum s + sum p)`` the maximiser keeps exactly the voxels with
``p_i > tau* = SD*/2``, a top-k mask by ``p`` with ``tau* <= 1/2``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from volbias.theory._checks import as_probabilities, first_maximiser


def voxel_volume(spacing: Sequence[float] | None, ndim: int) -> float:
    """Volume of one voxel in the unit of ``spacing`` cubed (1.0 when ``spacing`` is None)."""
    if spacing is None:
        return 1.0
    spacing = tuple(float(s) for s in np.atleast_1d(spacing))
    if len(spacing) == 1:
        spacing = spacing * ndim
    if len(spacing) != ndim or min(spacing) <= 0:
        raise ValueError(f"spacing: need {ndim} positive values, got {spacing}")
    return float(np.prod(spacing))


def expected_volume(p: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """Expected volume ``E[sum_i Y_i] = sum_i p_i`` of the random reference mask.

    In voxels when ``spacing`` is None, else times the voxel volume ``prod(spacing)`` (one value
    per axis of ``p``, or a single isotropic value).
    """
    p = as_probabilities(p)
    return float(p.sum()) * voxel_volume(spacing, p.ndim)


def cross_entropy_optimum(p: np.ndarray) -> np.ndarray:
    """The minimiser of the expected cross-entropy ``E[-Y log s - (1 - Y) log(1 - s)]``: ``s = p``."""
    return as_probabilities(p).copy()


def plugin_soft_dice(s: np.ndarray, p: np.ndarray) -> float:
    """Plug-in soft Dice ``2 <s, p> / (sum s + sum p)``; 1.0 when both sums are zero."""
    s = as_probabilities(s, "s")
    p = as_probabilities(p)
    if s.shape != p.shape:
        raise ValueError(f"s: shape {s.shape} differs from p's {p.shape}")
    denominator = s.sum() + p.sum()
    return 1.0 if denominator == 0 else float(2.0 * np.dot(s.ravel(), p.ravel()) / denominator)


def _soft_dice_best_cut(p: np.ndarray) -> tuple[float, float]:
    """Return ``(SD*, cut value v)`` of the plug-in soft Dice optimum, whose mask is ``p >= v``.

    Only cuts between distinct values of ``p`` are considered, so tied voxels are kept or dropped
    together; among equally good cuts (:func:`first_maximiser`) the smallest mask wins.
    """
    values = np.sort(p.ravel())[::-1]
    total = values.sum()
    if total == 0:  # empty reference: the empty mask scores 1 (0/0 read as the eps-smoothed limit)
        return 1.0, np.inf
    top_sums = np.cumsum(values)
    k = np.arange(1, values.size + 1)
    group_end = np.append(values[1:] != values[:-1], True)  # last voxel of each tie group
    scores = np.where(group_end, 2.0 * top_sums / (k + total), -np.inf)
    best = first_maximiser(scores)
    return float(scores[best]), float(values[best])


def soft_dice_optimum(p: np.ndarray) -> np.ndarray:
    """Maximiser of the plug-in soft Dice ``2<s,p>/(sum s + sum p)`` over ``s`` in ``[0, 1]^N``.

    The maximiser is binary and keeps the voxels with the largest ``p`` (top-k).  Ties are broken
    deterministically: voxels with equal ``p`` are all kept or all dropped, and where several
    masks reach the same maximum (to within ``TIE_TOLERANCE``, see
    :func:`volbias.theory._checks.first_maximiser`) the smallest is returned.  An all-zero ``p``
    gives the empty mask (soft Dice 1 by the 0/0 convention of :func:`plugin_soft_dice`).
    """
    p = as_probabilities(p)
    _, cut = _soft_dice_best_cut(p)
    return p >= cut


def soft_dice_threshold(p: np.ndarray) -> float:
    """The threshold ``tau* = SD*/2`` (at most 1/2): the soft Dice optimum is ``p > tau*``."""
    best, _ = _soft_dice_best_cut(as_probabilities(p))
    return best / 2.0
