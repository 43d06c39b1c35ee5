"""The analysis plan: what each claim estimates, on which Dice and volume, resampling what, judged how.

The plan is fixed before any result is looked at; the verdicts (:mod:`volbias.analysis.claims`) only read it,
and the Results chapter shows it as its first table. Each verdict comes from one interval:

- **Claim 1** (SD gives a higher Dice than CE): the mean paired difference SD - CE of the task's Dice. "yes"
  when its interval lies above 0 and the estimate is at least :data:`DICE_MARGIN`; "no" when the interval lies
  below :data:`DICE_MARGIN` (CE higher, or no relevant difference: the row says which); else "inconclusive".
- **Claim 2** (with high inherent uncertainty SD biases the volume): SD's relative volume bias; "yes" when its
  interval lies wholly outside +-:data:`VOLUME_MARGIN`, "no" when it lies inside, else "inconclusive". Whether
  SD is *more* biased than CE (``|bias SD| - |bias CE|``) is a second finding in its own row, judged like
  claim 1 with the volume margin.
- **Claim 3** (with low inherent uncertainty SD shows little volume bias): SD's relative volume bias; "yes"
  when its interval lies inside +-:data:`VOLUME_MARGIN`, "no" when wholly outside, else "inconclusive"; beside
  it the paired SD - CE bias ("yes": the two differ, interval wholly outside +-:data:`VOLUME_MARGIN`; a bias
  common to both losses is generalisation error, not the loss).
- **Theory** (phantoms): SD's bias minus the bias of the Dice-optimal mask on the same phantoms, judged like
  claim 3; the row also says whether SD's interval excludes the two rival predictions (the expected volume,
  and CE's optimum thresholded at 0.5).

A group with fewer than :data:`MIN_NETWORKS` trained networks per loss or fewer than :data:`MIN_CASES`
paired cases is "underpowered" (its interval is still shown); a group with a run the convergence rule does
not pass is "not tested". One margin serves every volume statement and one every Dice statement; intervals are
95 %, those of the claim-1 rows Bonferroni-adjusted for their number.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

VOLUME_MARGIN = 0.05
"""tau: relative volume bias counted as negligible (every volume statement of the book)."""
DICE_MARGIN = 0.01
"""delta: the smallest Dice difference counted as relevant."""
CONFIDENCE = 0.95
"""Confidence of every interval (claim-1 intervals: simultaneous over the claim-1 rows, Bonferroni)."""
MIN_NETWORKS = 3
"""Fewest trained networks (distinct fold x seed) per loss for a verdict."""
MIN_CASES = 10
"""Fewest paired held-out cases for a verdict."""
MIN_BCA_UNITS = 10
"""BCa intervals from this many networks on (the jackknife over networks needs them); percentile below."""
N_RESAMPLES = 2000
"""Bootstrap resamples of every interval."""
STABILITY_SHIFT = VOLUME_MARGIN / 2
"""A group whose volume bias moves by more than this when the training steps are doubled is "not stable"."""

VERDICTS: tuple[str, ...] = ("yes", "no", "inconclusive", "underpowered", "not tested")
"""The verdicts, in this order of strength."""

DICE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("expected_dice", "expected Dice against a fresh label draw (phantoms: exact)"),
    ("dice_raters", "expected Dice against a randomly chosen rater (multi-rater data)"),
    ("dice", "Dice against the one reference"),
)
"""Which Dice claim 1 reads, in order of preference: the first column a group has (on multi-rater data the
Dice against a random rater is what SD optimises and what a single-annotation study measures; the Dice against
a majority of raters would reward CE's empty maps on nodules most raters did not mark)."""


@dataclass(frozen=True)
class ClaimPlan:
    """What one claim's rows estimate and how they are judged."""

    claim: str
    estimand: str
    dice: str
    volume: str
    reference: str
    unit: str
    margin: str
    rule: str


_UNIT = ("networks (fold x seed) within each loss, then held-out cases within networks (LIDC: patients), "
         "both losses resampled together")

PLAN: tuple[ClaimPlan, ...] = (
    ClaimPlan("1", "mean paired Dice difference SD - CE", "the first of: " + "; ".join(t for _, t in DICE_COLUMNS),
              "-", "-", _UNIT, f"delta = {DICE_MARGIN}",
              f"yes: interval > 0 and estimate >= delta; no: interval < delta; "
              f"interval {CONFIDENCE:.0%}, Bonferroni over the claim-1 rows"),
    ClaimPlan("2", "relative volume bias of SD, sum(V - E[V]) / sum(E[V])", "-",
              "SD: thresholded at 0.5 (CE: soft sum)", "E[V]: sum of the marginals (phantoms: exact; LIDC: mean rater; "
              "BraTS: the label)", _UNIT, f"tau = {VOLUME_MARGIN:.0%}",
              "yes: interval wholly outside +-tau; no: inside; beside it |bias SD| - |bias CE|"),
    ClaimPlan("3", "relative volume bias of SD", "-", "SD: thresholded at 0.5 (CE: soft sum)", "E[V] as for claim 2",
              _UNIT, f"tau = {VOLUME_MARGIN:.0%}",
              "yes: interval inside +-tau; no: wholly outside; beside it the paired bias SD - CE"),
    ClaimPlan("theory", "SD's bias minus the Dice-optimal mask's (phantoms)", "-", "SD: thresholded at 0.5",
              "E[V] exact", _UNIT, f"tau = {VOLUME_MARGIN:.0%}",
              "yes: interval inside +-tau; no: wholly outside; rivals: E[V] (bias 0), CE thresholded at 0.5"),
)
"""One entry per claim (the Results chapter's first table)."""

POWER_RULE = (f"underpowered: fewer than {MIN_NETWORKS} networks per loss or fewer than {MIN_CASES} paired cases; "
              f"not tested: a run the convergence rule does not pass; not stable: the volume bias moves by more "
              f"than {STABILITY_SHIFT:.1%} with twice the training steps")


def plan_table() -> pd.DataFrame:
    """The plan as a table: one row per claim."""
    return pd.DataFrame([vars(item) for item in PLAN])


def dice_column(cases: pd.DataFrame) -> str:
    """The Dice column claim 1 reads for these cases (:data:`DICE_COLUMNS`): the first present for every row."""
    for column, _ in DICE_COLUMNS:
        if column in cases.columns and cases[column].notna().all():
            return column
    raise ValueError("cases without a Dice column")


def dice_description(column: str) -> str:
    """What a Dice column of :data:`DICE_COLUMNS` measures."""
    return dict(DICE_COLUMNS)[column]


def case_cluster(cases: pd.DataFrame) -> pd.Series:
    """The resampling cluster of each case: the patient for LIDC (case ids ``<patient>_<nodule>`` of the
    release), the case itself otherwise."""
    ids = cases["case_id"].astype(str)
    lidc = cases["task"] == "LIDC"
    return ids.where(~lidc, ids.str.split("_", n=1).str[0])


def superiority_verdict(estimate: float, low: float, high: float, margin: float = DICE_MARGIN) -> str:
    """Claim 1's rule (and that of "SD more biased than CE"): "yes" when the interval lies above 0 and the
    estimate reaches ``margin``; "no" when the interval lies below ``margin``; else "inconclusive"."""
    if not all(map(_finite, (estimate, low, high))):
        return "inconclusive"
    if low > 0 and estimate >= margin:
        return "yes"
    if high < margin:
        return "no"
    return "inconclusive"


def outside_verdict(low: float, high: float, margin: float = VOLUME_MARGIN) -> str:
    """"yes" when [low, high] lies wholly outside [-margin, margin], "no" when inside, else "inconclusive"."""
    if not (_finite(low) and _finite(high)):
        return "inconclusive"
    if high < -margin or low > margin:
        return "yes"
    if -margin <= low and high <= margin:
        return "no"
    return "inconclusive"


def inside_verdict(low: float, high: float, margin: float = VOLUME_MARGIN) -> str:
    """"yes" when [low, high] lies inside [-margin, margin], "no" when wholly outside, else "inconclusive"."""
    return {"yes": "no", "no": "yes"}.get(outside_verdict(low, high, margin), "inconclusive")


def _finite(value: float) -> bool:
    return value == value and abs(value) != float("inf")
