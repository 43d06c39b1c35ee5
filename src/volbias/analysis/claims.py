"""The verdict table: the paper's claims 1-3 (paper-facts.md) against our results, group by group.

The papers' exact table values were not available, so every verdict rests on an interval or a corrected
test computed from the held-out cases (SD's thresholded volume, CE's soft volume, relative volume bias
``sum(V - E[V]) / sum(E[V])``, percentile bootstrap over cases):

- claim 1 (SD gives higher Dice than CE): paired Wilcoxon signed-rank test of the SD - CE Dice, with the
  p-values Holm-corrected over the claim-1 rows of the table; the verdict reads the corrected p-value;
- claim 2 (with high inherent uncertainty SD biases the volume): "yes" only when the 95 % CI of SD's bias
  excludes 0 and the paired-bootstrap 95 % CI of ``|bias SD| - |bias CE|`` (cases resampled with both
  losses together) lies above 0; "no" when SD's CI lies inside +-tolerance (the bias is negligible) or the
  difference's CI lies below 0; else "inconclusive";
- claim 3 (with low inherent uncertainty SD shows little bias): an equivalence test, "yes" only when SD's
  CI lies inside +-tolerance, "no" when it lies wholly outside, else "inconclusive";
- phantom groups (task ``synthetic``) are scored against the theory for their label-noise model instead of
  claims 2 and 3 (claim "theory"): the CI of SD's bias minus the bias of the Dice-optimal mask on the same
  phantoms (column ``theory_volume``, :func:`volbias.analysis.phantom_theory.attach_theory_volumes`) inside
  +-tolerance is "yes", wholly outside "no", else "inconclusive".

A group with a CE or SD run that is not recorded as converged (``converged`` column of the cases) is
"not tested"; its row names the runs (loss, fold, seed, setting) and why. Groups selected on the labels
are exploratory: :func:`exploratory_table` gives their statistics without verdicts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from volbias.analysis.present import format_estimate, format_p_value
from volbias.analysis.tables import (
    PAIR_KEYS,
    abs_bias_difference,
    abs_bias_difference_ci,
    bias_difference,
    bias_difference_ci,
    holm_adjust,
    paired_test,
    relative_bias,
    relative_bias_ci,
)

CLAIMS: dict[int, str] = {
    1: "Training with soft Dice (SD) gives higher Dice scores than cross-entropy (CE).",
    2: "With high inherent uncertainty SD biases the volume (under- or overestimation).",
    3: "With low inherent uncertainty SD shows little volume bias.",
}
"""Claims 1-3 of the paper (claim 4, volume estimation, has its own chapter)."""

CLAIM_ORDER: tuple[str, ...] = ("1", "2", "3", "theory")
"""Values of the table's ``claim`` column, in display order ("theory": phantom groups against the theory)."""

VERDICTS: tuple[str, ...] = ("yes", "no", "inconclusive", "not tested")
"""The verdicts of :func:`claims_table`."""

PAPER_UNCERTAINTY: dict[str, str] = {"MO17": "low", "BR18": "low", "IS17": "high", "IS18": "high"}
"""Inherent uncertainty of the paper's tasks as the paper classifies them."""

LABEL_SELECTED: dict[str, str] = {
    "LIDC, 4 raters agree": "selected on the labels after training (nodules whose four raters agree closely); "
                            "its nodules are also part of 'LIDC, all nodules'",
}
"""Groups defined by a property of the labels themselves (post hoc): exploratory, never scored."""

COLUMNS: tuple[str, ...] = (
    "claim", "group", "uncertainty", "n", "paper claim", "measure", "estimate", "ci_low", "ci_high",
    "sd_bias", "sd_bias_ci_low", "sd_bias_ci_high", "theory_bias", "p_value", "p_holm", "our result", "note",
    "verdict",
)
"""Columns of :func:`claims_table`: the interval behind each verdict (``measure``, ``estimate``,
``ci_low``, ``ci_high``), SD's bias with its CI, the raw and the Holm-corrected p-value (claim 1), n (paired
cases), a readable summary, and ``note`` (why a row is not tested)."""


def slug(text: str) -> str:
    """A name usable as a glue key: lower case, runs of other characters replaced by ``_``."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def equivalence_verdict(low: float, high: float, tolerance: float) -> str:
    """"yes" when [low, high] lies inside [-tolerance, tolerance], "no" when wholly outside, else "inconclusive"."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "inconclusive"
    if -tolerance <= low and high <= tolerance:
        return "yes"
    if high < -tolerance or low > tolerance:
        return "no"
    return "inconclusive"


def bias_claim_verdict(sd_low: float, sd_high: float, diff_low: float, diff_high: float, tolerance: float) -> str:
    """Claim 2 from SD's bias CI and the CI of ``|bias SD| - |bias CE|`` (see the module docstring)."""
    if not all(np.isfinite([sd_low, sd_high, diff_low, diff_high])):
        return "inconclusive"
    if (-tolerance <= sd_low and sd_high <= tolerance) or diff_high < 0:
        return "no"
    if (sd_low > 0 or sd_high < 0) and diff_low > 0:
        return "yes"
    return "inconclusive"


def dice_verdict(mean_diff: float, p_corrected: float, alpha: float) -> str:
    """Claim 1: "yes"/"no" (sign of SD - CE) when the corrected p-value is below ``alpha``, else "inconclusive"."""
    if not p_corrected < alpha:
        return "inconclusive"
    return "yes" if mean_diff > 0 else "no"


def _is_converged(value: object) -> bool:
    return value is True or value is np.True_ or (isinstance(value, str) and value.strip().lower() == "true")


def _run_keys(cases: pd.DataFrame) -> list[str]:
    """Columns that tell one run's rows from another's: ``run_dir`` where every row has one."""
    if "run_dir" in cases.columns and cases["run_dir"].notna().all():
        return ["run_dir"]
    return [c for c in ("task", "setting", "loss", "fold", "seed") if c in cases.columns]


def unconverged_runs(cases: pd.DataFrame) -> list[str]:
    """One line per run in ``cases`` not recorded as converged: ``"SD fold 0 seed 0 (setting): why"``.

    Runs are told apart by ``run_dir`` where every row has one (else by loss, fold, seed and setting, as in
    stored tables without run directories); the reason is the run's ``convergence`` text, or "no convergence
    record" where the ``converged`` column is missing or empty.
    """
    keys = _run_keys(cases)
    lines = []
    for _, run in cases.drop_duplicates(keys).sort_values(["loss", "fold", "seed"]).iterrows():
        recorded = "converged" in cases.columns and pd.notna(run["converged"])
        if recorded and _is_converged(run["converged"]):
            continue
        reason = "no convergence record"
        if recorded:
            text = run.get("convergence")
            reason = str(text) if isinstance(text, str) and text else "not converged"
        setting = run.get("setting_name") if isinstance(run.get("setting_name"), str) else run.get("setting")
        where = f" ({setting})" if isinstance(setting, str) and setting and setting != "default" else ""
        lines.append(f"{str(run['loss']).upper()} fold {int(run['fold'])} seed {int(run['seed'])}{where}: {reason}")
    return lines


def _paired_volumes(sub: pd.DataFrame, ce: str, sd: str) -> pd.DataFrame:
    """CE's and SD's rows of the same cases side by side (inner join on fold, seed and case id)."""
    keys = list(PAIR_KEYS)
    columns = ["expected_volume", "pred_volume_soft", "pred_volume_hard"]
    columns += ["theory_volume"] if "theory_volume" in sub.columns else []
    left = sub[sub["loss"] == ce].set_index(keys)[columns]
    right = sub[sub["loss"] == sd].set_index(keys)[columns]
    if left.index.has_duplicates or right.index.has_duplicates:
        raise ValueError(f"cases are not unique on {keys} within a group; split the group further")
    return left.merge(right, how="inner", left_index=True, right_index=True, suffixes=("_ce", "_sd"))


def _percent(value: float, low: float, high: float) -> str:
    return format_estimate(value, low, high, as_percent=True)


def _group_rows(sub: pd.DataFrame, name: str, level: str, group: str, ce: str, sd: str, tolerance: float,
                n_resamples: int, seed: int) -> list[dict[str, object]]:
    """The rows of one group (claim 1 plus claim 2, 3 or theory), verdicts of claims 2/3/theory included."""
    unconverged = unconverged_runs(sub)
    note = f"not tested: runs not converged: {'; '.join(unconverged)}" if unconverged else ""
    dice = paired_test(sub, "dice", a=ce, b=sd, by=(group,), seed=seed).iloc[0]
    base = {"group": name, "uncertainty": level, "note": note, "theory_bias": np.nan}
    dice_text = format_estimate(dice.mean_diff, dice.diff_ci_low, dice.diff_ci_high, decimals=3, signed=True)
    rows = [{**base, "claim": "1", "n": int(dice.n_pairs), "paper claim": CLAIMS[1], "measure": "Dice SD - CE",
             "estimate": dice.mean_diff, "ci_low": dice.diff_ci_low, "ci_high": dice.diff_ci_high,
             "sd_bias": np.nan, "sd_bias_ci_low": np.nan, "sd_bias_ci_high": np.nan, "p_value": dice.p_value,
             "our result": f"SD - CE Dice {dice_text}, n = {int(dice.n_pairs)}"}]

    pairs = _paired_volumes(sub, ce, sd)
    ref, sd_hard, ce_soft = (pairs[c].to_numpy(float) for c in
                             ("expected_volume_sd", "pred_volume_hard_sd", "pred_volume_soft_ce"))
    boot = {"n_resamples": n_resamples, "seed": seed}
    sd_bias, sd_ci = relative_bias(sd_hard, ref), relative_bias_ci(sd_hard, ref, **boot)
    ce_bias, ce_ci = relative_bias(ce_soft, ref), relative_bias_ci(ce_soft, ref, **boot)
    volumes = f"SD hard {_percent(sd_bias, *sd_ci)}; CE soft {_percent(ce_bias, *ce_ci)}; n = {len(pairs)}"
    row = {**base, "n": len(pairs), "sd_bias": sd_bias, "sd_bias_ci_low": sd_ci[0], "sd_bias_ci_high": sd_ci[1],
           "p_value": np.nan}
    phantoms = bool((sub["task"] == "synthetic").all())
    if phantoms:
        noise = sub["task_options.noise"].iloc[0] if "task_options.noise" in sub.columns else "unknown"
        theory = pairs["theory_volume_sd"].to_numpy(float) if "theory_volume_sd" in pairs.columns else None
        if theory is None or not np.all(np.isfinite(theory)):
            rows.append({**row, "claim": "theory", "paper claim": f"SD's bias equals the theory's ({noise} noise)",
                         "measure": "bias SD - theory", "estimate": np.nan, "ci_low": np.nan, "ci_high": np.nan,
                         "our result": volumes, "note": note or "not tested: no theory volumes for these phantoms",
                         "verdict": "not tested"})
            return rows
        theory_bias = relative_bias(theory, ref)
        diff, diff_ci = bias_difference(sd_hard, theory, ref), bias_difference_ci(sd_hard, theory, ref, **boot)
        rows.append({**row, "claim": "theory", "theory_bias": theory_bias,
                     "paper claim": f"With {noise} label noise SD's thresholded volume has the bias of the "
                                    f"Dice-optimal mask on the same phantoms ({theory_bias:+.1%})",
                     "measure": "bias SD - theory", "estimate": diff, "ci_low": diff_ci[0], "ci_high": diff_ci[1],
                     "our result": f"{volumes}; SD - theory {_percent(diff, *diff_ci)}",
                     "verdict": equivalence_verdict(*diff_ci, tolerance)})
    elif level == "high":
        diff = abs_bias_difference(sd_hard, ce_soft, ref)
        diff_ci = abs_bias_difference_ci(sd_hard, ce_soft, ref, **boot)
        rows.append({**row, "claim": "2", "paper claim": CLAIMS[2], "measure": "|bias SD| - |bias CE|",
                     "estimate": diff, "ci_low": diff_ci[0], "ci_high": diff_ci[1],
                     "our result": f"{volumes}; |SD| - |CE| {_percent(diff, *diff_ci)}",
                     "verdict": bias_claim_verdict(*sd_ci, *diff_ci, tolerance)})
    else:
        rows.append({**row, "claim": "3", "paper claim": CLAIMS[3], "measure": "bias SD", "estimate": sd_bias,
                     "ci_low": sd_ci[0], "ci_high": sd_ci[1], "our result": volumes,
                     "verdict": equivalence_verdict(*sd_ci, tolerance)})
    return rows


def _table(cases: pd.DataFrame, uncertainty: Mapping[str, str], group: str, ce: str, sd: str, tolerance: float,
           n_resamples: int, seed: int) -> pd.DataFrame:
    bad = {k: v for k, v in uncertainty.items() if v not in ("low", "high")}
    if bad:
        raise ValueError(f"uncertainty levels must be 'low' or 'high', got {bad}")
    rows: list[dict[str, object]] = []
    for name, level in uncertainty.items():
        sub = cases[(cases[group] == name) & cases["loss"].isin([ce, sd])]
        if set(sub["loss"]) == {ce, sd}:
            rows += _group_rows(sub, name, level, group, ce, sd, tolerance, n_resamples, seed)
    table = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "p_holm"])
    order = table["claim"].map({c: i for i, c in enumerate(CLAIM_ORDER)})
    return table.assign(_order=order).sort_values(["_order", "group"]).drop(columns="_order").reset_index(drop=True)


def claims_table(
    cases: pd.DataFrame,
    uncertainty: Mapping[str, str],
    group: str = "task",
    ce: str = "ce",
    sd: str = "sd",
    alpha: float = 0.05,
    tolerance: float = 0.05,
    n_resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per claim and confirmatory group, with the interval and test behind each verdict.

    ``uncertainty`` maps each value of the ``group`` column to ``"low"`` or ``"high"``; groups without both
    CE and SD cases are skipped. Verdicts (:data:`VERDICTS`) follow the rules of the module docstring;
    ``tolerance`` is the relative volume bias counted as negligible, ``alpha`` the family-wise error rate
    of the claim-1 tests (Holm over every claim-1 row of this table, tested or not). Columns: :data:`COLUMNS`.
    """
    table = _table(cases, uncertainty, group, ce, sd, tolerance, n_resamples, seed)
    first = table["claim"] == "1"
    table.insert(table.columns.get_loc("p_value") + 1, "p_holm", np.nan)
    table.loc[first, "p_holm"] = holm_adjust(table.loc[first, "p_value"].to_numpy(float))
    for index in table.index[first]:
        row = table.loc[index]
        table.loc[index, "verdict"] = dice_verdict(row.estimate, row.p_holm, alpha)
        test = (f"Wilcoxon p = {format_p_value(row.p_value)} (Holm {format_p_value(row.p_holm)})"
                if np.isfinite(row.p_value)
                else "no Wilcoxon test (fewer than 2 pairs, or all differences 0)")
        table.loc[index, "our result"] = f"{row['our result']}; {test}"
    table.loc[table["note"] != "", "verdict"] = "not tested"
    return table[list(COLUMNS)]


def exploratory_table(
    cases: pd.DataFrame,
    uncertainty: Mapping[str, str],
    reasons: Mapping[str, str],
    group: str = "task",
    ce: str = "ce",
    sd: str = "sd",
    n_resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """The statistics of :func:`claims_table` for exploratory groups, without verdicts or corrections.

    ``reasons`` maps each exploratory group to why it is exploratory (column ``selected``); p-values are
    uncorrected and labelled so (column ``p_uncorrected``).
    """
    table = _table(cases, {g: level for g, level in uncertainty.items() if g in reasons}, group, ce, sd,
                   0.0, n_resamples, seed)
    table = table.drop(columns="verdict").rename(columns={"p_value": "p_uncorrected"})
    table.insert(2, "selected", table["group"].map(reasons))
    return table


def exploratory_groups(groups: Iterable[str]) -> dict[str, str]:
    """The groups among ``groups`` that were selected on the labels, with the reason.

    A group matches a name of :data:`LABEL_SELECTED` exactly or after a source prefix (``"<source>: "``).
    """
    return {g: reason for g in groups for name, reason in LABEL_SELECTED.items()
            if g == name or g.endswith(f": {name}")}


def verdict_cases(cases: pd.DataFrame) -> pd.DataFrame:
    """The cases a verdict reads: of each run scored on fresh test cases (``split == "test"``) only those.

    Runs are told apart as in :func:`unconverged_runs`; runs without test cases, and tables without a
    ``split`` column, keep all their rows.
    """
    if "split" not in cases.columns or cases.empty:
        return cases
    keys = _run_keys(cases)
    is_test = cases["split"] == "test"
    run_has_test = is_test.groupby([cases[k] for k in keys], dropna=False).transform("any")
    return cases[is_test | ~run_has_test]


def claim_groups(cases: pd.DataFrame, lidc_agree: Iterable[str] = ()) -> tuple[pd.DataFrame, dict[str, str]]:
    """Assign the runs' cases to the groups of the verdict table and classify their uncertainty.

    - synthetic phantoms: per noise model, the settings with the largest (``high``) and smallest (``low``)
      boundary sigma relative to the radius (columns ``task_options.sigma`` / ``task_options.radius``; one
      ``high`` group where a noise model has a single setting);
    - BR18, BR18-sample: ``low``; IS17, IS18: ``high`` (the paper's classification);
    - LIDC: all nodules ``high`` (measured rater disagreement), and the nodules in ``lidc_agree`` (all
      raters agree closely) once more as the ``low`` group "LIDC, 4 raters agree". That group is selected
      on the labels of the same networks' cases: it is exploratory (:data:`LABEL_SELECTED`), not the
      counterpart of the paper's private MO17 task.

    Runs with non-default loss options (columns ``loss_options.*``, e.g. the LIDC sensitivity run of SD with
    the Dice over the batch) are sensitivity analyses of a loss, not the loss itself, and are left out. A run
    that was also scored on fresh test cases (column ``split``, as the phantom runs are) is judged on those
    alone (:func:`verdict_cases`).

    Returns the cases with a ``group`` column (rows of LIDC's agreeing nodules appear twice) and the
    mapping group -> uncertainty level for :func:`claims_table` / :func:`exploratory_table`.
    """
    options = [c for c in cases.columns if c.startswith("loss_options.")]
    if options:
        cases = cases[cases[options].isna().all(axis=1)]
    cases = verdict_cases(cases)
    frames, levels = [], {}
    synthetic = cases[cases["task"] == "synthetic"]
    if len(synthetic):
        rel = synthetic["task_options.sigma"].astype(float) / synthetic["task_options.radius"].astype(float)
        synthetic = synthetic.assign(_rel=rel.round(4))
        for noise, rows in synthetic.groupby("task_options.noise"):
            for level, value in (("high", rows["_rel"].max()), ("low", rows["_rel"].min())):
                name = f"synthetic, {noise} noise, sigma/R = {value:g}"
                if name in levels:  # a single setting of this noise model: one group, not two
                    continue
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
