"""When is a run converged? The rule that gates every verdict of the book.

A run is *converged* when, over the last fifth of its final training stage (at least
:data:`MIN_WINDOW` epochs), its epoch training loss changed by less than :data:`LOSS_TOLERANCE`: the mean
loss of the window's second half differs from that of its first half by less than this fraction of the
window's mean (means of halves, because each epoch's loss is measured on freshly drawn annotations and
single epochs are noisy) — or by less than twice that and by less than twice the change's standard error
(a change the epoch-to-epoch noise cannot tell from none) — and,
for a run whose final stage trains with cross-entropy, the mean ratio of the training soft volume to the
label volume over that window lies in :data:`CE_VOLUME_RATIO` (a calibrated CE network predicts, on its
own training data, as much soft volume as the labels hold).

The rule looks at training data only: it says whether optimisation has settled, not whether the network
generalises; held-out Dice is reported separately.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

LOSS_TOLERANCE = 0.05
"""Largest relative change of the training loss over the last fifth of training."""
CE_VOLUME_RATIO = (0.9, 1.1)
"""Range of CE's training soft-volume ratio (soft prediction / label volume) for a converged run."""
MIN_WINDOW = 10
"""Fewest epochs in the window the rule looks at: with one random annotation per case and epoch the epoch losses
are noisy, and the trend of fewer points would mostly be noise."""
CE_LOSSES = ("ce",)
"""Final-stage losses to which the soft-volume condition applies (their optimum is calibrated)."""


NOISE_FACTOR = 2.0
"""A change up to ``NOISE_FACTOR`` x :data:`LOSS_TOLERANCE` still counts as settled when it is also below
``NOISE_FACTOR`` standard errors (no trend the noise of the epoch losses could not explain)."""


@dataclass(frozen=True)
class Convergence:
    """The verdict on one run's training curve and the numbers behind it."""

    converged: bool
    reason: str
    loss_change: float  # relative change of the training loss over the window (signed: < 0 = falling)
    change_error: float  # standard error of loss_change from the spread of the epoch losses
    volume_ratio: float  # mean training soft-volume ratio over the window (nan when not recorded)
    window: int  # epochs in the window


def relative_change(values: np.ndarray) -> float:
    """Mean of the second half of ``values`` minus the mean of the first half, relative to their mean
    (the middle value of an odd count belongs to neither half)."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2 or not np.all(np.isfinite(values)):
        return float("nan")
    half = len(values) // 2
    mean = float(np.mean(values))
    change = float(np.mean(values[-half:]) - np.mean(values[:half]))
    return change / mean if mean != 0 else float("nan")


def change_standard_error(values: np.ndarray) -> float:
    """Standard error of :func:`relative_change` from the spread of the values within each half."""
    values = np.asarray(values, dtype=np.float64)
    half = len(values) // 2
    if half < 2:
        return float("nan")
    first, second = values[:half], values[-half:]
    variance = np.var(first, ddof=1) / half + np.var(second, ddof=1) / half
    return float(np.sqrt(variance) / abs(np.mean(values)))


def assess(log: pd.DataFrame, final_loss: str, loss_tolerance: float = LOSS_TOLERANCE,
           volume_ratio: tuple[float, float] = CE_VOLUME_RATIO) -> Convergence:
    """Apply the convergence rule to a run's ``train_log`` (columns ``stage``, ``train_loss`` and, when
    recorded, ``soft_volume_ratio``); ``final_loss`` is the loss of the run's last stage."""
    if log.empty:
        return Convergence(False, "not converged: no training epochs", math.nan, math.nan, math.nan, 0)
    last = log[log["stage"] == log["stage"].max()]
    window = max(MIN_WINDOW, math.ceil(len(last) / 5))
    if len(last) < window:
        return Convergence(False, f"not converged: only {len(last)} epochs in the final stage", math.nan,
                           math.nan, math.nan, len(last))
    tail = last.tail(window)
    losses = tail["train_loss"].to_numpy()
    change, error = relative_change(losses), change_standard_error(losses)
    ratio = (float(np.mean(tail["soft_volume_ratio"])) if "soft_volume_ratio" in tail else math.nan)
    loss_text = f"training loss changed {change:+.1%} (standard error {error:.1%}) over the last {window} epochs"
    within_noise = abs(change) < NOISE_FACTOR * loss_tolerance and abs(change) < NOISE_FACTOR * error
    problems = []
    if not (abs(change) < loss_tolerance or within_noise):
        problems.append(f"{loss_text} (limit {loss_tolerance:.0%}, or {NOISE_FACTOR * loss_tolerance:.0%} "
                        f"within {NOISE_FACTOR:g} standard errors)")
    ratio_text = ""
    if final_loss in CE_LOSSES:
        ratio_text = f"; CE training soft-volume ratio {ratio:.2f}"
        low, high = volume_ratio
        if not low <= ratio <= high:
            problems.append(f"CE training soft-volume ratio {ratio:.2f} outside [{low:g}, {high:g}]")
    if problems:
        return Convergence(False, "not converged: " + "; ".join(problems), change, error, ratio, window)
    return Convergence(True, f"converged: {loss_text}{ratio_text}", change, error, ratio, window)
