"""When is a run converged? The rule that gates every verdict of the book.

The rule reads a run's ``train_log.csv`` only, so it can be re-applied to any stored run without retraining
(the analysis recomputes it whenever it reads a run: :func:`volbias.training.run_files.read_run`). It is the
same optimisation-only rule for every loss, and it asks two questions of the final training stage:

1. **Did the network learn more than the prior?** Each epoch also records the loss and the training Dice
   of the *null model* (a constant map at the training foreground prior) on the same batches. Over the last
   :data:`LEARNING_WINDOW_FRACTION` of the final stage (at least :data:`MIN_LEARNING_EPOCHS` epochs, or the
   whole stage when it is shorter), the mean training loss must lie at least :data:`NULL_LOSS_MARGIN` below
   the mean null loss (relative), and the mean training Dice at least :data:`NULL_DICE_MARGIN` above the
   null's. A network stuck at the prior has a loss equal to the null loss, whatever its soft volume.
2. **Had the loss stopped falling while the learning rate was still constant?** The learning rate of the
   step schedule ends at lr/100, where any loss is flat by schedule; so the rule looks at the last stretch
   of constant learning rate *before* the last decay (for the authors' step decay: the lr/10 stretch), or,
   for a schedule without steps (constant or cosine), the last fifth. A straight line fitted to the epoch losses there gives
   their relative change over the stretch; its 90 % confidence interval must lie inside
   +-:data:`LOSS_TOLERANCE` (an equivalence test at 5 % per side: a loss that is still clearly falling,
   or one too noisy to tell, is not converged).

CE's training soft-volume ratio (soft prediction over label volume) is reported, not gated: a rule that
required it near 1 would assume the unbiasedness that claim 2 tests. The rule says whether optimisation
settled, not whether the network generalises; held-out results are reported separately, and the result
sets re-train with twice the steps to see whether the volumes move (the analysis plan's stability check).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

NULL_LOSS_MARGIN = 0.2
"""The final training loss must be at least this fraction below the null model's loss on the same batches."""
NULL_DICE_MARGIN = 0.05
"""The final training Dice must exceed the null model's by at least this much."""
LOSS_TOLERANCE = 0.05
"""Largest relative change of the training loss over the last constant-learning-rate stretch (equivalence
margin of the trend test)."""
TREND_CONFIDENCE = 0.90
"""Confidence of the trend's interval: two one-sided tests at 5 % each."""
MIN_TREND_EPOCHS = 4
"""Fewest epochs on which the trend is judged (a line through fewer points says little)."""
LEARNING_WINDOW_FRACTION = 0.2
"""Share of the final stage over which loss and Dice are compared with the null model's."""
MIN_LEARNING_EPOCHS = 5
"""Fewest epochs in that comparison (the whole stage when it is shorter)."""
LOG_COLUMNS = ("stage", "train_loss", "train_dice", "null_loss", "null_dice", "lr")
"""Columns of ``train_log.csv`` the rule reads."""


@dataclass(frozen=True)
class Convergence:
    """The verdict on one run's training curve and the numbers behind it."""

    converged: bool
    reason: str
    loss_change: float  # relative change of the training loss over the trend stretch (signed: < 0 = falling)
    change_ci: tuple[float, float]  # its 90 % confidence interval
    trend_epochs: int  # epochs in the trend stretch
    loss_to_null: float  # mean training loss / mean null loss over the learning window
    dice_over_null: float  # mean training Dice - mean null Dice over the learning window
    volume_ratio: float  # mean training soft-volume ratio over the learning window (reported, not gated)


def trend_stretch(stage_log: pd.DataFrame) -> pd.DataFrame:
    """The epochs of one stage whose trend the rule tests: the last stretch of constant learning rate before
    the stage's last decay, or the last fifth where the learning rate never changes."""
    lr = stage_log["lr"].to_numpy(dtype=np.float64)
    levels = np.flatnonzero(~np.isclose(lr[1:], lr[:-1], rtol=1e-6, atol=0.0)) + 1  # first epoch of each new level
    if len(levels) == 0 or len(levels) > len(lr) / 2:  # constant, or decaying continuously (cosine)
        return stage_log.tail(max(MIN_TREND_EPOCHS, math.ceil(len(stage_log) / 5)))
    start = int(levels[-2]) if len(levels) >= 2 else 0
    return stage_log.iloc[start:int(levels[-1])]


def relative_trend(values: np.ndarray, confidence: float = TREND_CONFIDENCE) -> tuple[float, float, float]:
    """Change of a least-squares line through ``values`` (one per epoch) from the first to the last epoch,
    relative to their mean, with its ``confidence`` interval (t distribution, n - 2 degrees of freedom).

    NaN when there are fewer than 3 values or their mean is 0.
    """
    y = np.asarray(values, dtype=np.float64)
    n = len(y)
    mean = float(np.mean(y)) if n else math.nan
    if n < 3 or not np.all(np.isfinite(y)) or mean == 0:
        return math.nan, math.nan, math.nan
    if np.ptp(y) == 0:  # a constant: no trend, and no spread to estimate one from
        return 0.0, 0.0, 0.0
    fit = stats.linregress(np.arange(n, dtype=np.float64), y)
    scale = (n - 1) / abs(mean)
    change = fit.slope * scale
    half = stats.t.ppf(0.5 + confidence / 2, n - 2) * fit.stderr * scale
    return float(change), float(change - half), float(change + half)


def _learning_window(stage_log: pd.DataFrame) -> pd.DataFrame:
    size = max(MIN_LEARNING_EPOCHS, math.ceil(LEARNING_WINDOW_FRACTION * len(stage_log)))
    return stage_log.tail(size)


def assess(log: pd.DataFrame, final_loss: str) -> Convergence:
    """Apply the convergence rule (module docstring) to a run's ``train_log``; ``final_loss`` names the loss
    of its last stage (used in the reason text)."""
    nan2 = (math.nan, math.nan)
    missing = [c for c in LOG_COLUMNS if c not in log.columns]
    if log.empty or missing:
        why = "no training epochs" if log.empty else f"the train log lacks {', '.join(missing)} (made by an older version)"
        return Convergence(False, f"not converged: {why}", math.nan, nan2, 0, math.nan, math.nan, math.nan)
    last = log[log["stage"] == log["stage"].max()].reset_index(drop=True)
    window = _learning_window(last)
    null_loss = float(np.mean(window["null_loss"]))
    loss_to_null = float(np.mean(window["train_loss"])) / null_loss if null_loss > 0 else math.nan
    dice_over_null = float(np.mean(window["train_dice"]) - np.mean(window["null_dice"]))
    ratio = float(np.mean(window["soft_volume_ratio"])) if "soft_volume_ratio" in window else math.nan
    stretch = trend_stretch(last)
    change, low, high = relative_trend(stretch["train_loss"].to_numpy())

    problems = []
    if not loss_to_null <= 1.0 - NULL_LOSS_MARGIN:
        problems.append(f"{final_loss.upper()} training loss {loss_to_null:.2f} x the null model's "
                        f"(needs <= {1 - NULL_LOSS_MARGIN:.2f})")
    if not dice_over_null >= NULL_DICE_MARGIN:
        problems.append(f"training Dice {dice_over_null:+.3f} above the null model's (needs >= {NULL_DICE_MARGIN})")
    if len(stretch) < MIN_TREND_EPOCHS:
        problems.append(f"only {len(stretch)} epochs at constant learning rate before the last decay "
                        f"(needs {MIN_TREND_EPOCHS})")
    elif not (-LOSS_TOLERANCE <= low and high <= LOSS_TOLERANCE):
        problems.append(f"training loss changed {change:+.1%} [{low:+.1%}, {high:+.1%}] over the {len(stretch)} "
                        f"epochs before the last decay (interval must lie inside +-{LOSS_TOLERANCE:.0%})")
    facts = (f"loss {loss_to_null:.2f} x null, Dice {dice_over_null:+.2f} over null, trend {change:+.1%} "
             f"[{low:+.1%}, {high:+.1%}] over {len(stretch)} epochs")
    if np.isfinite(ratio):
        facts += f", training soft-volume ratio {ratio:.2f}"
    if problems:
        return Convergence(False, "not converged: " + "; ".join(problems), change, (low, high), len(stretch),
                           loss_to_null, dice_over_null, ratio)
    return Convergence(True, f"converged: {facts}", change, (low, high), len(stretch), loss_to_null,
                       dice_over_null, ratio)
