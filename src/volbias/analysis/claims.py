"""The verdict table: the paper's claims 1-3 (paper-facts.md) against our results, task by task.

The papers' exact table values were not available, so the comparison is qualitative: the sign and
significance of the Dice difference, and the size of the volume bias relative to a tolerance.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import pandas as pd

from volbias.analysis.tables import paired_test, volume_bias_table

CLAIMS: dict[int, str] = {
    1: "Training with soft Dice (SD) gives higher Dice scores than cross-entropy (CE).",
    2: "With high inherent uncertainty SD biases the volume (under- or overestimation).",
    3: "With low inherent uncertainty SD shows little volume bias.",
}
"""Claims 1-3 of the paper (claim 4, volume estimation, has its own chapter)."""

PAPER_UNCERTAINTY: dict[str, str] = {"MO17": "low", "BR18": "low", "IS17": "high", "IS18": "high"}
"""Inherent uncertainty of the paper's tasks as the paper classifies them."""


def slug(text: str) -> str:
    """A name usable as a glue key: lower case, runs of other characters replaced by ``_``."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _dice_verdict(row: pd.Series, alpha: float) -> tuple[str, str]:
    text = (f"SD - CE Dice = {row.mean_diff:+.3f} [{row.diff_ci_low:+.3f}, {row.diff_ci_high:+.3f}], "
            f"Wilcoxon p = {row.p_value:.2g}, n = {row.n_pairs}")
    if not row.p_value < alpha:
        return text, "inconclusive"
    return text, "yes" if row.mean_diff > 0 else "no"


def _bias_text(table: pd.DataFrame, loss: str, kind: str) -> str:
    row = table[table["loss"] == loss].iloc[0]
    return (f"{loss.upper()} {kind} {row[f'bias_{kind}']:+.1%} "
            f"[{row[f'bias_{kind}_ci_low']:+.1%}, {row[f'bias_{kind}_ci_high']:+.1%}]")


def claims_table(
    cases: pd.DataFrame,
    uncertainty: Mapping[str, str],
    group: str = "task",
    ce: str = "ce",
    sd: str = "sd",
    alpha: float = 0.05,
    tolerance: float = 0.05,
    min_dice: float = 0.0,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per claim and group: ``claim, group, uncertainty, paper claim, our result, agrees?``.

    ``uncertainty`` maps each value of ``group`` to ``"low"`` or ``"high"``; groups absent from the
    cases are skipped. Claim 1: Wilcoxon test of paired Dice (SD - CE), "yes"/"no" when significant
    at ``alpha``, else "inconclusive". Claims 2/3 use the relative volume bias sum(V - E[V])/sum(E[V])
    of SD's thresholded volume and CE's soft volume with bootstrap CIs: claim 2 holds when SD's bias CI
    excludes 0 and SD's |bias| exceeds CE's and ``tolerance``; claim 3 holds when SD's |bias| is at
    most ``tolerance``. A group whose CE or SD networks reach a mean Dice below ``min_dice`` on the cases
    with a non-empty reference is reported as "not tested" (the networks did not learn the task).
    """
    bad = {k: v for k, v in uncertainty.items() if v not in ("low", "high")}
    if bad:
        raise ValueError(f"uncertainty levels must be 'low' or 'high', got {bad}")
    rows = []
    for name, level in uncertainty.items():
        sub = cases[(cases[group] == name) & cases["loss"].isin([ce, sd])]
        if set(sub["loss"]) != {ce, sd}:
            continue
        learned = sub[sub["true_volume"] > 0].groupby("loss")["dice"].mean()
        untrained = bool(len(learned) < 2 or learned.min() < min_dice)
        note = (f"not tested: networks under-trained (Dice on non-empty references "
                f"{', '.join(f'{k.upper()} {v:.2f}' for k, v in learned.items())}); ") if untrained else ""
        dice = paired_test(sub, "dice", a=ce, b=sd, by=(group,), seed=seed).iloc[0]
        text, verdict = _dice_verdict(dice, alpha)
        rows.append({"claim": 1, "group": name, "uncertainty": level, "paper claim": CLAIMS[1],
                     "our result": note + text, "agrees?": "not tested" if untrained else verdict})
        bias = volume_bias_table(sub, by=("loss",), seed=seed)
        sd_row = bias[bias["loss"] == sd].iloc[0]
        ce_row = bias[bias["loss"] == ce].iloc[0]
        text = note + f"{_bias_text(bias, sd, 'hard')}; {_bias_text(bias, ce, 'soft')}"
        sd_bias, ce_bias = abs(sd_row["bias_hard"]), abs(ce_row["bias_soft"])
        if level == "high":
            excludes_zero = sd_row["bias_hard_ci_low"] > 0 or sd_row["bias_hard_ci_high"] < 0
            holds = excludes_zero and sd_bias > max(ce_bias, tolerance)
            answer = "yes" if holds else "no"
            rows.append({"claim": 2, "group": name, "uncertainty": level, "paper claim": CLAIMS[2],
                         "our result": text, "agrees?": "not tested" if untrained else answer})
        else:
            answer = "yes" if sd_bias <= tolerance else "no"
            rows.append({"claim": 3, "group": name, "uncertainty": level, "paper claim": CLAIMS[3],
                         "our result": text, "agrees?": "not tested" if untrained else answer})
    columns = ["claim", "group", "uncertainty", "paper claim", "our result", "agrees?"]
    return pd.DataFrame(rows, columns=columns).sort_values(["claim", "group"], ignore_index=True)


def claim_groups(cases: pd.DataFrame, lidc_agree: Iterable[str] = ()) -> tuple[pd.DataFrame, dict[str, str]]:
    """Assign the runs' cases to the groups of the verdict table and classify their uncertainty.

    - synthetic phantoms: per noise model, the settings with the largest (``high``) and smallest (``low``)
      boundary sigma relative to the radius (columns ``task_options.sigma`` / ``task_options.radius``);
    - BR18, BR18-sample: ``low``; IS17, IS18: ``high`` (the paper's classification);
    - LIDC: all nodules ``high`` (measured rater disagreement), and the nodules in ``lidc_agree`` (all
      raters agree closely) once more as the ``low`` group, the public counterpart of the private MO17.

    Returns the cases with a ``group`` column (rows of LIDC's agreeing nodules appear twice) and the
    mapping group -> uncertainty level for :func:`claims_table`.
    """
    frames, levels = [], {}
    synthetic = cases[cases["task"] == "synthetic"]
    if len(synthetic):
        rel = synthetic["task_options.sigma"].astype(float) / synthetic["task_options.radius"].astype(float)
        synthetic = synthetic.assign(_rel=rel.round(4))
        for noise, rows in synthetic.groupby("task_options.noise"):
            for level, value in (("high", rows["_rel"].max()), ("low", rows["_rel"].min())):
                name = f"synthetic, {noise} noise, sigma/R = {value:g}"
                frames.append(rows[rows["_rel"] == value].drop(columns="_rel").assign(group=name))
                levels[name] = level
    for task, rows in cases[cases["task"] != "synthetic"].groupby("task"):
        if task == "LIDC":
            frames.append(rows.assign(group="LIDC, all nodules"))
            levels["LIDC, all nodules"] = "high"
            agree = rows[rows["case_id"].isin(set(lidc_agree))]
            if len(agree):
                frames.append(agree.assign(group="LIDC, 4 raters agree"))
                levels["LIDC, 4 raters agree"] = "low"
        elif task in PAPER_UNCERTAINTY or task == "BR18-sample":
            frames.append(rows.assign(group=task))
            levels[task] = PAPER_UNCERTAINTY.get(task, "low")
    if not frames:
        return cases.assign(group=pd.Series(dtype=str)).iloc[:0], {}
    return pd.concat(frames, ignore_index=True), levels
