"""Expected calibration error written out by hand, independently of volbias and MONAI, for the tests."""

from __future__ import annotations

import numpy as np


def ece_by_hand(prob: np.ndarray, target: np.ndarray, n_bins: int = 10) -> float:
    """Equal-width-bin ECE of the foreground probability (last bin closed); ``target`` may be soft."""
    prob, target = np.ravel(prob), np.ravel(target)
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        sel = (prob >= lo) & ((prob < hi) if b < n_bins - 1 else (prob <= hi))
        if sel.any():
            total += sel.sum() * abs(prob[sel].mean() - target[sel].mean())
    return total / prob.size
