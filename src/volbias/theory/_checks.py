"""Input validation shared by the theory modules, and the tie rule of their maximisers."""

from __future__ import annotations

import numpy as np

TIE_TOLERANCE = 1e-12
"""Scores closer than this count as equal: it exceeds the error of every score computed here."""


def as_probabilities(p: np.ndarray, name: str = "p") -> np.ndarray:
    """Return ``p`` as a float64 array, raising a one-line error unless all values lie in [0, 1]."""
    arr = np.asarray(p, dtype=np.float64)
    if arr.size and not (np.all(np.isfinite(arr)) and arr.min() >= 0.0 and arr.max() <= 1.0):
        raise ValueError(f"{name}: probabilities must be finite and lie in [0, 1]")
    return arr


def first_maximiser(scores: np.ndarray, tolerance: float = TIE_TOLERANCE) -> int:
    """Index of the first score within ``tolerance`` of the maximum: the tie rule of every optimum here.

    Scores are listed by growing mask (top-k masks by ``k``), so among masks whose scores agree to
    within the tolerance, the smallest wins; a tie therefore never hinges on the last bits of a
    floating-point sum.  ``-inf`` marks a candidate that is not allowed.
    """
    scores = np.asarray(scores, dtype=np.float64)
    return int(np.flatnonzero(scores >= scores.max() - tolerance)[0])
