"""The audit's verdict in plain words, from the overall numbers (:func:`volbias.audit.summary.overall_numbers`).

Rules: with fewer than :data:`MIN_CASES` cases there is no verdict.  A volume kind is called biased when
the 95% bootstrap CI of its relative bias excludes zero.  One volume is called the better estimate when
the 95% CI of the mean paired difference of absolute errors (soft minus thresholded) excludes zero.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

MIN_CASES = 5
"""Fewest cases for a verdict; below it the bootstrap CIs of a bias are not worth reading."""
NEARLY_BINARY_SHARE = 0.05
"""Below this share of intermediate probabilities a map is called nearly binary."""


def _bias_sentence(name: str, bias: Mapping[str, float]) -> str:
    value, low, high = bias["value"], bias["ci_low"], bias["ci_high"]
    if not np.isfinite(value):
        return f"The {name} volumes cannot be compared: the reference volumes are all zero."
    ci = f"95% CI {low:+.1%} to {high:+.1%}"
    if low > 0:
        return f"The {name} volumes over-estimate the reference by {value:.1%} ({ci})."
    if high < 0:
        return f"The {name} volumes under-estimate the reference by {-value:.1%} ({ci})."
    return f"The {name} volumes show no clear bias ({value:+.1%}, {ci})."


def _comparison_sentence(numbers: Mapping[str, Any]) -> str:
    soft, hard = numbers["mean_abs_error_ml"]["soft"]["mean"], numbers["mean_abs_error_ml"]["hard"]["mean"]
    diff = numbers["abs_error_soft_minus_hard_ml"]
    errors = f"mean absolute error {soft:.3g} ml against {hard:.3g} ml"
    if diff["ci_high"] < 0:
        return f"The soft volume is the better estimate here ({errors})."
    if diff["ci_low"] > 0:
        return f"The thresholded volume is the better estimate here ({errors} for the soft volume)."
    return f"Neither the soft nor the thresholded volume is clearly closer to the reference ({errors})."


def verdict(numbers: Mapping[str, Any], threshold: float, estimators: pd.DataFrame | None = None) -> list[str]:
    """Sentences of the verdict; the first one or two carry the answer.

    ``estimators`` is the ranked summary of :func:`volbias.audit.estimators.estimator_summary` (optional).
    """
    n = numbers["n_cases"]
    if n < MIN_CASES:
        return [f"Not enough cases to tell: {n} case{'s' if n != 1 else ''} audited; a verdict needs at least "
                f"{MIN_CASES}."]
    bias = numbers["relative_bias"]
    sentences = [_bias_sentence(f"thresholded (p > {threshold:g})", bias["hard"]),
                 _bias_sentence("soft", bias["soft"]), _comparison_sentence(numbers)]
    if estimators is not None and not estimators.empty:
        best = estimators.sort_values("abs_err").iloc[0]
        sentences.append(f"Of the volume estimators of the chapter \"Which volume to trust\", the {best.estimator} "
                         f"volume has the smallest mean absolute error ({best.abs_err:.3g} ml).")
    share = numbers["calibration"]["intermediate_share"]
    if np.isfinite(share) and share < NEARLY_BINARY_SHARE:
        sentences.append(f"The map is nearly binary ({share:.1%} of its voxels above 0.05 lie below 0.95), as "
                         "after soft Dice training: its soft volume adds little to the thresholded one.")
    return sentences
