"""Closed forms for a certain core plus an uncertain rim.

A core of ``c`` voxels with ``p = 1`` and a rim of ``m`` voxels with ``p = q``; ``r = m / c``.
Expected volume ``c + m q``.

Plug-in soft Dice (independent voxels, or the large-object limit of the expected Dice): the
optimum is binary and keeps the whole rim or none of it (equal ``p``).  Core only scores
``2 / (2 + r q)``, core plus rim ``2 (1 + r q) / (2 + r + r q)``; the rim is kept iff
``r q^2 + 2 q - 1 > 0``, i.e. ``q > q_crit(r) = (sqrt(1 + r) - 1) / r`` (``q_crit < 1/2``, ``-> 1/2``
as ``r -> 0``).  The relative volume bias is then ``r (1 - q) / (1 + r q) > 0``; otherwise it is
``-r q / (1 + r q) < 0``.

Fully correlated rim (the whole rim is foreground with probability ``q``, else none of it):
the hard Dice is 1 for the matching mask and ``2 / (2 + r)`` for the other, so the Dice-optimal
mask keeps the rim iff ``q > 1/2``, exactly the cross-entropy threshold.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Method = Literal["sd", "ce_threshold", "ce_soft", "correlated"]


def q_crit(r: np.ndarray | float) -> np.ndarray | float:
    """Rim probability above which the plug-in soft Dice optimum keeps the rim: ``(sqrt(1+r)-1)/r``."""
    r = np.asarray(r, dtype=np.float64)
    if np.any(r < 0):
        raise ValueError("r: the rim-to-core ratio must be non-negative")
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.where(r > 0, (np.sqrt(1.0 + r) - 1.0) / np.where(r > 0, r, 1.0), 0.5)
    return float(value) if value.ndim == 0 else value


def core_rim_marginals(core: int, rim: int, q: float) -> np.ndarray:
    """The marginal vector: ``core`` ones followed by ``rim`` values ``q``."""
    if core < 0 or rim < 0 or not 0 <= q <= 1:
        raise ValueError(f"need core, rim >= 0 and q in [0, 1], got {core}, {rim}, {q}")
    return np.concatenate([np.ones(core), np.full(rim, float(q))])


def keeps_rim(r: np.ndarray | float, q: np.ndarray | float, method: Method = "sd") -> np.ndarray | bool:
    """Whether the optimum of ``method`` predicts the rim as foreground (``ce_soft``: never binary, False)."""
    r, q = np.broadcast_arrays(np.asarray(r, float), np.asarray(q, float))
    if method == "sd":
        keep = q > q_crit(r)
    elif method in ("ce_threshold", "correlated"):
        keep = q > 0.5
    elif method == "ce_soft":
        keep = np.zeros(q.shape, dtype=bool)
    else:
        raise ValueError(f"method: expected 'sd', 'ce_threshold', 'ce_soft' or 'correlated', got {method!r}")
    return bool(keep) if keep.ndim == 0 else keep


def core_rim_relative_bias(r: np.ndarray | float, q: np.ndarray | float, method: Method = "sd") -> np.ndarray | float:
    """Relative volume bias ``(predicted - expected) / expected`` of the optimum of ``method``.

    ``"sd"``: plug-in soft Dice optimum; ``"ce_threshold"``: cross-entropy optimum ``p``
    thresholded at 1/2; ``"ce_soft"``: soft volume of the cross-entropy optimum (always 0);
    ``"correlated"``: Dice-optimal mask when the rim is fully correlated (threshold 1/2).
    """
    r, q = np.broadcast_arrays(np.asarray(r, float), np.asarray(q, float))
    if method == "ce_soft":
        bias = np.zeros(r.shape)
    else:
        keep = keeps_rim(r, q, method)
        bias = np.where(keep, r * (1 - q), -r * q) / (1 + r * q)
    return float(bias) if bias.ndim == 0 else bias


def core_rim_correlated_expected_dice(r: float, q: float, keep_rim: bool) -> float:
    """Expected hard Dice of core (plus rim if ``keep_rim``) when the rim is all-or-nothing with probability ``q``."""
    partial = 2.0 / (2.0 + r)
    return q + (1 - q) * partial if keep_rim else (1 - q) + q * partial
