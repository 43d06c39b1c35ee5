"""Optima of the later losses (focal, Tversky, DSC++) under inherent uncertainty, as for CE and SD in :mod:`.optima`.

Model: labels ``Y_i ~ Bernoulli(p_i)``.  Each function returns the map ``s`` that minimises the loss's
expected value (focal, which is a sum over voxels) or its *plug-in* value (the Dice-type losses: the
expectations of the true-positive, false-positive and false-negative sums are put into the ratio, the same
reading that gives soft Dice's threshold ``tau* = SD*/2``).

- Focal loss [lin2017focal], ``-(1 - p_t)^gamma log p_t``: the expected loss of voxel ``i`` is
  ``-p (1 - s)^gamma log s - (1 - p) s^gamma log(1 - s)``.  For ``gamma > 0`` it is not a proper scoring
  rule: its minimiser ``s*(p)`` pulls ``p`` towards 1/2 (``s*(0.02) ~ 0.19`` for ``gamma = 2``; for small
  ``p``, ``s* ~ (p / 3)^(1/3)``), keeps ``s*(1/2) = 1/2`` and so the 0.5-threshold mask of ``p``, and
  inflates the soft volume of a map with many faint voxels.
- Tversky [salehi2017tversky], plug-in ``TI = TP / (TP + alpha FP + beta FN)`` with ``TP = <s, p>``,
  ``FP = <s, 1 - p>``, ``FN = <1 - s, p>``: linear-fractional in ``s``, so the maximiser is a top-k mask by
  ``p``; it keeps the voxels with ``p_i > alpha TI* / (1 - TI* (1 - alpha - beta))`` (``alpha TI*`` when
  ``alpha + beta = 1``; soft Dice is ``alpha = beta = 1/2``).  With ``alpha = 0.3`` the cut lies lower than
  soft Dice's, so the mask is larger.
- DSC++ [yeung2023dscpp] with ``gamma = 2``: the plug-in score is ``N / (N + D)`` with ``N = <s, p>`` and
  ``D = 1/2 sum_i [p_i (1 - s_i)^2 + (1 - p_i) s_i^2]``.  Maximising it minimises ``D / N``; by Dinkelbach's
  argument the minimiser is ``s_i = min(1, (1 + lambda*) p_i)`` with ``lambda* = min D / N >= 0``, the root of
  ``min_s (D - lambda N)``: every probability is inflated by the same factor.

Root finding uses :mod:`scipy.optimize` (``elementwise.find_root`` for the focal optimum of every voxel at
once, ``brentq`` for ``lambda*``).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq, elementwise

from volbias.theory._checks import as_probabilities, first_maximiser

_EDGE = 1e-12  # the focal optimum of 0 < p < 1 lies strictly inside (_EDGE, 1 - _EDGE)


def focal_expected_loss(s: np.ndarray, p: np.ndarray, gamma: float = 2.0) -> np.ndarray:
    """Expected focal loss ``-p (1 - s)^gamma log s - (1 - p) s^gamma log(1 - s)`` of each voxel."""
    s, p = np.asarray(s, dtype=np.float64), as_probabilities(p)
    with np.errstate(divide="ignore", invalid="ignore"):
        pos = np.where(p > 0, -p * (1 - s) ** gamma * np.log(s), 0.0)
        neg = np.where(p < 1, -(1 - p) * s**gamma * np.log1p(-s), 0.0)
    return pos + neg


def _focal_slope(s: np.ndarray, p: np.ndarray, gamma: float) -> np.ndarray:
    """Derivative in ``s`` of :func:`focal_expected_loss` (for ``0 < s < 1``)."""
    return (p * gamma * (1 - s) ** (gamma - 1) * np.log(s) - p * (1 - s) ** gamma / s
            - (1 - p) * gamma * s ** (gamma - 1) * np.log1p(-s) + (1 - p) * s**gamma / (1 - s))


def focal_optimum(p: np.ndarray, gamma: float = 2.0) -> np.ndarray:
    """The map ``s*`` minimising the expected focal loss voxel by voxel (``s* = p`` for ``gamma = 0``)."""
    if gamma < 0:
        raise ValueError(f"gamma must be non-negative, got {gamma}")
    p = as_probabilities(p)
    s = p.copy()
    inner = (p > 0) & (p < 1)
    if gamma == 0 or not inner.any():
        return s
    q = p[inner]
    result = elementwise.find_root(lambda x, q: _focal_slope(x, q, gamma), (np.full(q.shape, _EDGE),
                                   np.full(q.shape, 1 - _EDGE)), args=(q,),
                                   tolerances={"xatol": 1e-13, "xrtol": 1e-12})
    if not np.all(result.success):
        raise ArithmeticError("focal optimum: root finding did not converge")
    s[inner] = result.x
    return s


def tversky_optimal_mask(p: np.ndarray, alpha: float = 0.3, beta: float = 0.7) -> np.ndarray:
    """The top-k mask maximising the plug-in Tversky index ``TP / (TP + alpha FP + beta FN)``.

    Only cuts between distinct values of ``p`` are considered (tied voxels go together); among equally good
    masks the smallest wins; an all-zero ``p`` gives the empty mask.
    """
    if alpha < 0 or beta < 0 or alpha + beta == 0:
        raise ValueError(f"alpha and beta must be non-negative and not both 0, got {alpha}, {beta}")
    p = as_probabilities(p)
    total = p.sum()
    if total == 0:
        return np.zeros(p.shape, dtype=bool)
    values = np.sort(p.ravel())[::-1]
    tp = np.cumsum(values)
    k = np.arange(1, values.size + 1)
    last_of_tie = np.append(values[1:] != values[:-1], True)
    scores = np.where(last_of_tie, tp / (tp + alpha * (k - tp) + beta * (total - tp)), -np.inf)
    return p >= values[first_maximiser(scores)]


def tversky_index(s: np.ndarray, p: np.ndarray, alpha: float = 0.3, beta: float = 0.7) -> float:
    """Plug-in Tversky index of a map ``s`` against marginals ``p`` (0 when ``<s, p> = 0``)."""
    s, p = as_probabilities(s, "s"), as_probabilities(p)
    tp = float(np.sum(s * p))
    if tp == 0:
        return 0.0
    return tp / (tp + alpha * float(np.sum(s * (1 - p))) + beta * float(np.sum((1 - s) * p)))


def dsc_plus_plus_ratio(s: np.ndarray, p: np.ndarray) -> float:
    """``D / N`` of the plug-in DSC++ (``gamma = 2``), whose score is ``1 / (1 + D / N)``; inf when ``N = 0``."""
    s, p = as_probabilities(s, "s"), as_probabilities(p)
    n = float(np.sum(s * p))
    d = 0.5 * float(np.sum(p * (1 - s) ** 2 + (1 - p) * s**2))
    return np.inf if n == 0 else d / n


def dsc_plus_plus_optimum(p: np.ndarray) -> np.ndarray:
    """The map maximising the plug-in DSC++ score with ``gamma = 2``: ``min(1, (1 + lambda*) p)``."""
    p = as_probabilities(p)
    if not p.any():
        return np.zeros(p.shape)

    def inflated(lam: float) -> np.ndarray:
        return np.minimum(1.0, (1.0 + lam) * p)

    def gap(lam: float) -> float:  # min_s D(s) - lam N(s), decreasing in lam; zero at lambda*
        s = inflated(lam)
        return 0.5 * float(np.sum(p * (1 - s) ** 2 + (1 - p) * s**2)) - lam * float(np.sum(s * p))

    upper = dsc_plus_plus_ratio(p, p)  # D/N at s = p bounds the minimum from above
    if upper == 0:
        return p.copy()
    return inflated(brentq(gap, 0.0, upper, xtol=1e-14, rtol=1e-14))
