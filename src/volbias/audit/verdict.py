"""The audit's verdict in plain words, from the overall numbers (:func:`volbias.audit.summary.overall_numbers`).

Rules:

- with fewer than :data:`MIN_CASES` cases there is no verdict: the report shows the numbers only;
- a volume is *equivalent* to the reference when the 95% bootstrap CI of its relative bias lies inside
  ``[-tolerance, +tolerance]`` (an equivalence test at the 2.5% level per side); it *over-* or
  *under-estimates beyond the tolerance* when the whole CI lies above ``+tolerance`` or below
  ``-tolerance``; otherwise the cases cannot tell (the sentence says whether the CI excludes zero).  The
  per-case median relative error and its interquartile range stand beside the pooled number;
- one of the soft and the thresholded volume is the better estimate when the 95% CI of the mean paired
  difference of their absolute errors excludes zero;
- the best volume estimators are those whose paired CI of the absolute error minus the best's reaches
  zero (:func:`volbias.audit.estimators.estimator_summary`), each marked by whether it needs labelled
  cases of the audited population.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

MIN_CASES = 20
"""Fewest cases for a verdict: below it the bootstrap CIs of a bias are too rough to act on."""
NEARLY_BINARY_SHARE = 0.05
"""Below this share of intermediate probabilities a map is called nearly binary."""
EQUIVALENT, OVER, UNDER, UNCLEAR, UNDEFINED = "equivalent", "over", "under", "unclear", "undefined"


def bias_status(bias: Mapping[str, float], tolerance: float) -> str:
    """:data:`EQUIVALENT`, :data:`OVER` / :data:`UNDER` (beyond the tolerance), :data:`UNCLEAR` or
    :data:`UNDEFINED` (no finite CI) for a relative bias with its 95% CI."""
    low, high = bias["ci_low"], bias["ci_high"]
    if not (np.isfinite(low) and np.isfinite(high)):
        return UNDEFINED
    if -tolerance <= low and high <= tolerance:
        return EQUIVALENT
    if low > tolerance:
        return OVER
    if high < -tolerance:
        return UNDER
    return UNCLEAR


def tolerance_text(tolerance: float) -> str:
    """``"±5%"``, or ``"±2.5%"`` where a whole percent would round."""
    return f"±{tolerance:.0%}" if round(tolerance * 100, 6) == round(tolerance * 100) else f"±{tolerance:.1%}"


def _per_case(bias: Mapping[str, Any]) -> str:
    spread = bias.get("per_case")
    if not spread or not np.isfinite(spread["median"]):
        return ""
    return (f"; per case: median {spread['median']:+.1%}, interquartile range {spread['q25']:+.1%} to "
            f"{spread['q75']:+.1%}")


def bias_sentence(name: str, bias: Mapping[str, Any], tolerance: float) -> str:
    """One sentence on the relative bias of the ``name`` volumes against the reference."""
    value, low, high = bias["value"], bias["ci_low"], bias["ci_high"]
    if not np.isfinite(value):
        return f"The {name} volumes cannot be compared: the reference volumes are all zero."
    ci = f"95% CI {low:+.1%} to {high:+.1%}{_per_case(bias)}"
    margin = tolerance_text(tolerance)
    status = bias_status(bias, tolerance)
    if status == EQUIVALENT:
        return f"The {name} volumes are equivalent to the reference within {margin}: bias {value:+.1%} ({ci})."
    if status == OVER:
        return (f"The {name} volumes over-estimate the reference by {value:.1%} ({ci}), beyond the tolerance of "
                f"{margin}.")
    if status == UNDER:
        return (f"The {name} volumes under-estimate the reference by {-value:.1%} ({ci}), beyond the tolerance of "
                f"{margin}.")
    if status == UNDEFINED:
        return f"The {name} volumes deviate by {value:+.1%} from the reference; no confidence interval."
    if low > 0:
        direction = f"over-estimate the reference by {value:.1%}"
    elif high < 0:
        direction = f"under-estimate the reference by {-value:.1%}"
    else:
        direction = f"show no clear bias ({value:+.1%})"
    return (f"The {name} volumes {direction} ({ci}); the interval reaches beyond {margin}, so the cases cannot "
            "tell whether the bias is within the tolerance.")


def comparison_sentence(numbers: Mapping[str, Any]) -> str:
    """Which of the soft and the thresholded volume is closer to the reference, with both mean absolute errors."""
    soft, hard = numbers["mean_abs_error_ml"]["soft"]["mean"], numbers["mean_abs_error_ml"]["hard"]["mean"]
    diff = numbers["abs_error_soft_minus_hard_ml"]
    if diff["ci_high"] < 0:
        return (f"The soft volume is the better estimate here: mean absolute error {soft:.3g} ml against "
                f"{hard:.3g} ml for the thresholded volume.")
    if diff["ci_low"] > 0:
        return (f"The thresholded volume is the better estimate here: mean absolute error {hard:.3g} ml against "
                f"{soft:.3g} ml for the soft volume.")
    return (f"Neither the soft nor the thresholded volume is clearly closer to the reference (mean absolute "
            f"error {soft:.3g} ml and {hard:.3g} ml).")


def best_estimators_sentence(estimators: pd.DataFrame) -> str:
    """The estimators not separated from the best, each marked by whether it needs labelled cases."""
    best = estimators[estimators["among_best"]].sort_values("abs_err")
    parts = [f"{row.estimator} ({row.abs_err:.3g} ml, "
             f"{'needs labelled cases of this population' if row.needs_labels else 'needs no labelled cases'})"
             for row in best.itertuples()]
    if len(parts) == 1:
        return (f"Of the volume estimators of the chapter \"Which volume to trust\", {parts[0]} has the smallest "
                "mean absolute error, clearly below every other.")
    return (f"Of the volume estimators of the chapter \"Which volume to trust\", these are not separated from the "
            f"best by the cases (mean absolute error): {'; '.join(parts)}.")


def verdict(numbers: Mapping[str, Any], threshold: float, estimators: pd.DataFrame | None = None,
            tolerance: float = 0.05, binary: bool = False) -> list[str]:
    """Sentences of the verdict; the first one or two carry the answer.

    ``estimators`` is the ranked summary of :func:`volbias.audit.estimators.estimator_summary` (optional);
    ``binary`` says that 0/1 maps were audited (``--allow-binary``).
    """
    n = numbers["n_cases"]
    notes = (["The maps are binary (--allow-binary): their soft volume is their thresholded volume."]
             if binary else [])
    if n < MIN_CASES:
        return [f"Not enough cases to judge: {n} case{'s' if n != 1 else ''} audited; a verdict needs at least "
                f"{MIN_CASES}. The numbers below are shown without a verdict.", *notes]
    bias = numbers["relative_bias"]
    sentences = [bias_sentence(f"thresholded (p > {threshold:g})", bias["hard"], tolerance),
                 bias_sentence("soft", bias["soft"], tolerance)]
    if "argmax" in bias:
        sentences.append(bias_sentence("argmax (nnU-Net's segmentation)", bias["argmax"], tolerance))
    sentences.append(comparison_sentence(numbers))
    if estimators is not None and not estimators.empty:
        sentences.append(best_estimators_sentence(estimators))
    share = numbers["calibration"]["intermediate_share"]
    if not binary and np.isfinite(share) and share < NEARLY_BINARY_SHARE:
        sentences.append(f"The map is nearly binary ({share:.1%} of its voxels above 0.05 lie below 0.95), as "
                         "after soft Dice training: its soft volume adds little to the thresholded one.")
    return sentences + notes
