"""Linear volume re-calibration: the book's reading of the journal paper's "optional re-calibration" [bertels2021].

The paper names the step without fixing its form; here, on cases other than those it corrects, the
reference volumes are regressed on the predicted volumes, ``V_true ~ a + b V_pred`` (ordinary least
squares, :func:`scipy.stats.linregress`), and held-out predictions are mapped to ``max(0, a + b V_pred)``:
a line with a positive intercept or a slope below 1 can cross zero, and a volume is never negative.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import linregress


@dataclass(frozen=True)
class LinearRecalibration:
    """Fitted map ``V -> max(0, intercept + slope * V)``."""

    intercept: float
    slope: float

    def apply(self, pred_volume: np.ndarray | float) -> np.ndarray | float:
        """Re-calibrated volume(s) of held-out predictions, clipped at zero."""
        out = np.maximum(0.0, self.intercept + self.slope * np.asarray(pred_volume, dtype=np.float64))
        return float(out) if out.ndim == 0 else out


def fit_linear_recalibration(pred_volumes: np.ndarray, true_volumes: np.ndarray) -> LinearRecalibration:
    """Least-squares fit of ``true ~ intercept + slope * pred`` on training-fold volume pairs."""
    pred = np.asarray(pred_volumes, dtype=np.float64).ravel()
    true = np.asarray(true_volumes, dtype=np.float64).ravel()
    if pred.shape != true.shape:
        raise ValueError(f"pred_volumes ({pred.size}) and true_volumes ({true.size}) differ in length")
    if not (np.all(np.isfinite(pred)) and np.all(np.isfinite(true))):
        raise ValueError("volumes must be finite")
    if pred.size < 2 or np.ptp(pred) == 0:
        raise ValueError("need at least two distinct predicted volumes to fit a re-calibration")
    fit = linregress(pred, true)
    return LinearRecalibration(intercept=float(fit.intercept), slope=float(fit.slope))
