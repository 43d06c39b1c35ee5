"""The verdict table: the paper's claims 1-3 against our results, group by group, by the analysis plan.

Every rule, margin and minimum size lives in :mod:`volbias.analysis.plan`; this module computes the
intervals (two-level bootstrap over networks and cases, :mod:`volbias.analysis.resampling`) and reads the
plan's rules off them. Per confirmatory group:

- claim 1: the paired SD - CE difference of the group's Dice (:func:`volbias.analysis.plan.dice_column`);
- high inherent uncertainty: claim 2 (SD's bias) and "2 vs CE" (``|bias SD| - |bias CE|``);
- low inherent uncertainty: claim 3 (SD's bias) and "3 vs CE" (bias SD - bias CE);
- phantoms, besides: "theory" (SD's bias minus the Dice-optimal mask's, column ``theory_volume`` of
  :func:`volbias.analysis.phantom_theory.attach_theory_volumes`), with the rival predictions.

SD's volume is its map thresholded at 0.5, CE's its soft sum (each loss's volume as the theory reads it), both
against the expected volume. Groups whose runs the convergence rule does not pass are "not tested" (with
``gate=False`` the rule is ignored, to show what it changes); groups with too few networks or cases are
"underpowered"; both still show their intervals. Groups selected on the labels are exploratory:
:func:`exploratory_table` gives their statistics without verdicts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from volbias.analysis import plan
from volbias.analysis.present import format_estimate
from volbias.analysis.resampling import (
    Interval,
    TwoLevelBootstrap,
    abs_bias_difference,
    bias_difference,
    relative_bias,
    weighted_mean,
)

CLAIMS: dict[int, str] = {
    1: "Training with soft Dice (SD) gives higher Dice scores than cross-entropy (CE).",
    2: "With high inherent uncertainty SD biases the volume (under- or overestimation).",
    3: "With low inherent uncertainty SD shows little volume bias.",
}
"""Claims 1-3 of the paper (claim 4, volume estimation, has its own chapter)."""

QUESTIONS: dict[str, str] = {
    "1": "SD's Dice higher than CE's",
    "2": "SD's volume biased",
    "2 vs CE": "SD more biased than CE",
    "3": "SD's volume unbiased",
    "3 vs CE": "SD's bias differs from CE's",
    "theory": "SD's bias is the theory's",
}
"""The question each row answers (its verdict answers it), by the value of the ``claim`` column."""

CLAIM_ORDER: tuple[str, ...] = tuple(QUESTIONS)
"""Values of the table's ``claim`` column, in display order."""

VERDICTS = plan.VERDICTS

PAPER_UNCERTAINTY: dict[str, str] = {"MO17": "low", "BR18": "low", "IS17": "high", "IS18": "high"}
"""Inherent uncertainty of the paper's tasks as the paper classifies them."""

LABEL_SELECTED: dict[str, str] = {
    "LIDC, 4 raters agree": "selected on the labels after training (nodules whose four raters agree closely); "
                            "its nodules are also part of 'LIDC, all nodules'",
}
"""Groups defined by a property of the labels themselves (post hoc): exploratory, never scored."""

COLUMNS: tuple[str, ...] = (
    "claim", "question", "group", "label", "uncertainty", "networks", "n", "dice", "measure", "estimate",
    "ci_low", "ci_high", "half_width", "interval", "margin", "band_low", "band_high", "scale", "theory_bias",
    "rivals", "stability", "our result", "note", "verdict",
)
"""Columns of :func:`claims_table`: the interval behind each verdict (``estimate``, ``ci_low``, ``ci_high``,
``half_width``, ``interval`` = method and level), the margin it is judged against (``margin``; ``band_low``,
``band_high`` the band a figure shades, ``scale`` "dice" or "percent"), the networks per loss and paired cases,
which Dice (claim 1), the theory's bias and the rival predictions (phantoms), the stability under twice the
training steps, a readable summary and ``note`` (why a row is not tested or underpowered)."""

SHORT_NAMES: dict[str, str] = {"synthetic": "phantoms", "independent noise": "indep.", "shift noise": "shift",
                               "sigma/R = ": "σ/R ", "BR18-sample": "BraTS sample", "LIDC, all nodules": "LIDC",
                               "LIDC, 4 raters agree": "LIDC agree"}
"""Replacements that make a group's short label (figures, narrow tables)."""


def slug(text: str) -> str:
    """A name usable as a glue key: lower case, runs of other characters replaced by ``_``."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def short_label(group: str) -> str:
    """A group's short label, e.g. ``"phantoms, indep., σ/R 0.9"`` for the independent-noise phantoms."""
    for long, short in SHORT_NAMES.items():
        group = group.replace(long, short)
    return group


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


PAIR_KEYS: tuple[str, ...] = ("fold", "seed", "case_id")
"""A case of one network: the network's fold and seed, and the case."""


def _paired(sub: pd.DataFrame, ce: str, sd: str, dice: str) -> pd.DataFrame:
    """CE's and SD's rows of the same cases side by side, with each case's unit (network) and cluster."""
    columns = [dice, "expected_volume", "pred_volume_soft", "pred_volume_hard", "cluster"]
    columns += [c for c in ("theory_volume", "theory_ce_threshold") if c in sub.columns]
    keys = list(PAIR_KEYS)
    left = sub[sub["loss"] == ce].set_index(keys)[columns]
    right = sub[sub["loss"] == sd].set_index(keys)[columns]
    if left.index.has_duplicates or right.index.has_duplicates:
        raise ValueError(f"cases are not unique on {keys} within a group; split the group further")
    pairs = left.merge(right, how="inner", left_index=True, right_index=True, suffixes=("_ce", "_sd")).reset_index()
    pairs["unit"] = "fold" + pairs["fold"].astype(str) + "-seed" + pairs["seed"].astype(str)
    return pairs


def _networks(sub: pd.DataFrame, ce: str, sd: str) -> dict[str, int]:
    return {loss: int(sub.loc[sub["loss"] == loss, ["fold", "seed"]].drop_duplicates().shape[0]) for loss in (ce, sd)}


def _row(claim: str, base: dict[str, object], interval: Interval, measure: str, margin: float, band: tuple[float, float],
         scale: str, verdict: str, confidence: float, text: str, **extra: object) -> dict[str, object]:
    return {**base, "claim": claim, "question": QUESTIONS[claim], "measure": measure,
            "estimate": interval.estimate, "ci_low": interval.low, "ci_high": interval.high,
            "half_width": interval.half_width, "interval": f"{interval.method} {_level(confidence)}",
            "margin": margin, "band_low": band[0], "band_high": band[1], "scale": scale, "verdict": verdict,
            "our result": text, **extra}


def _level(confidence: float) -> str:
    """``0.9875`` as ``"98.75%"``, ``0.95`` as ``"95%"``."""
    return f"{100 * confidence:.2f}".rstrip("0").rstrip(".") + "%"


def _percent(interval: Interval) -> str:
    return format_estimate(interval.estimate, interval.low, interval.high, as_percent=True)


def _stability(pairs: pd.DataFrame, doubled: pd.DataFrame | None, ce: str, sd: str) -> str:
    """How far SD's and CE's volume biases move with twice the steps, on the cases both budgets scored
    ("not stable" beyond :data:`volbias.analysis.plan.STABILITY_SHIFT`); empty without doubled runs."""
    if doubled is None or doubled.empty or set(doubled["loss"]) < {ce, sd}:
        return ""
    again = _paired(doubled.assign(cluster=plan.case_cluster(doubled)), ce, sd, "dice")
    both = pairs.merge(again, on=list(PAIR_KEYS), suffixes=("", "_x2"))
    if both.empty:
        return ""
    ref = both["expected_volume_sd"].sum()
    moves = {"SD": (both["pred_volume_hard_sd_x2"] - both["pred_volume_hard_sd"]).sum() / ref,
             "CE": (both["pred_volume_soft_ce_x2"] - both["pred_volume_soft_ce"]).sum() / ref}
    stable = all(abs(move) <= plan.STABILITY_SHIFT for move in moves.values())
    text = ", ".join(f"{loss} {move:+.1%}" for loss, move in moves.items())
    return f"{'stable' if stable else 'not stable'} (twice the steps: {text})"


def _group_rows(sub: pd.DataFrame, name: str, level: str, ce: str, sd: str, gate: bool, doubled: pd.DataFrame | None,
                claim1_confidence: float, n_resamples: int, seed: int) -> list[dict[str, object]]:
    """The rows of one group (see the module docstring)."""
    dice = plan.dice_column(sub)
    sub = sub.assign(cluster=plan.case_cluster(sub))
    pairs = _paired(sub, ce, sd, dice)
    networks = _networks(sub, ce, sd)
    unconverged = unconverged_runs(sub) if gate else []
    too_few = min(networks.values()) < plan.MIN_NETWORKS or len(pairs) < plan.MIN_CASES
    note = ""
    if unconverged:
        note = f"not tested: runs not converged: {'; '.join(unconverged)}"
    elif too_few:
        note = (f"underpowered: {networks[ce]} / {networks[sd]} networks (CE / SD) and {len(pairs)} paired cases "
                f"(needs {plan.MIN_NETWORKS} and {plan.MIN_CASES})")
    stability = _stability(pairs, doubled, ce, sd)
    base = {"group": name, "label": short_label(name), "uncertainty": level,
            "networks": f"{networks[ce]} / {networks[sd]}", "n": len(pairs), "dice": "", "theory_bias": np.nan,
            "rivals": "", "stability": stability, "note": note}
    boot = TwoLevelBootstrap(pairs["unit"], pairs["cluster_sd"], n_resamples, seed)
    ref = pairs["expected_volume_sd"].to_numpy(float)
    sd_hard, ce_soft = pairs["pred_volume_hard_sd"].to_numpy(float), pairs["pred_volume_soft_ce"].to_numpy(float)
    tau, delta = plan.VOLUME_MARGIN, plan.DICE_MARGIN

    def judged(verdict: str) -> str:
        return "not tested" if unconverged else "underpowered" if too_few else verdict

    gap = boot.interval(weighted_mean(pairs[f"{dice}_sd"] - pairs[f"{dice}_ce"]), claim1_confidence)
    direction = "CE higher" if gap.high < 0 else "no relevant difference" if gap.high < delta else ""
    rows = [_row("1", {**base, "dice": plan.dice_description(dice)}, gap, "Dice SD - CE", delta, (0.0, delta),
                 "dice", judged(plan.superiority_verdict(gap.estimate, gap.low, gap.high)), claim1_confidence,
                 f"SD - CE {format_estimate(gap.estimate, gap.low, gap.high, decimals=3, signed=True)}"
                 + (f" ({direction})" if direction else ""))]
    sd_bias = boot.interval(relative_bias(sd_hard, ref))
    ce_bias = boot.interval(relative_bias(ce_soft, ref))
    volumes = f"SD {_percent(sd_bias)}, CE {_percent(ce_bias)}"
    band = (-tau, tau)
    if level == "high":
        rows.append(_row("2", base, sd_bias, "bias SD", tau, band, "percent",
                         judged(plan.outside_verdict(sd_bias.low, sd_bias.high)), plan.CONFIDENCE, volumes))
        more = boot.interval(abs_bias_difference(sd_hard, ce_soft, ref))
        rows.append(_row("2 vs CE", base, more, "|bias SD| - |bias CE|", tau, (0.0, tau), "percent",
                         judged(plan.superiority_verdict(more.estimate, more.low, more.high, tau)), plan.CONFIDENCE,
                         f"|SD| - |CE| {_percent(more)}"))
    else:
        rows.append(_row("3", base, sd_bias, "bias SD", tau, band, "percent",
                         judged(plan.inside_verdict(sd_bias.low, sd_bias.high)), plan.CONFIDENCE, volumes))
        apart = boot.interval(bias_difference(sd_hard, ce_soft, ref))
        rows.append(_row("3 vs CE", base, apart, "bias SD - bias CE", tau, band, "percent",
                         judged(plan.outside_verdict(apart.low, apart.high)), plan.CONFIDENCE,
                         f"SD - CE {_percent(apart)}"))
    if "theory_volume_sd" in pairs.columns and (sub["task"] == "synthetic").all():
        rows.append(_theory_row(base, boot, pairs, sd_bias, judged))
    return rows


def _theory_row(base: dict[str, object], boot: TwoLevelBootstrap, pairs: pd.DataFrame, sd_bias: Interval,
                judged) -> dict[str, object]:
    """SD's bias against the Dice-optimal mask's, with the rival predictions."""
    ref = pairs["expected_volume_sd"].to_numpy(float)
    theory = pairs["theory_volume_sd"].to_numpy(float)
    tau = plan.VOLUME_MARGIN
    if not np.all(np.isfinite(theory)):
        return _row("theory", {**base, "note": base["note"] or "not tested: no theory volumes"},
                    Interval(np.nan, np.nan, np.nan, "none"), "bias SD - theory", tau, (-tau, tau), "percent",
                    "not tested", plan.CONFIDENCE, "")
    theory_bias = float(relative_bias(theory, ref)(np.ones((1, len(ref))))[0])
    gap = boot.interval(bias_difference(pairs["pred_volume_hard_sd"].to_numpy(float), theory, ref))
    rivals = {"E[V] (0 %)": 0.0}
    if "theory_ce_threshold_sd" in pairs.columns:
        ce_threshold = pairs["theory_ce_threshold_sd"].to_numpy(float)
        rivals[f"CE at 0.5 ({(ce_threshold.sum() - ref.sum()) / ref.sum():+.1%})"] = (
            (ce_threshold.sum() - ref.sum()) / ref.sum())
    excluded = [f"{name} {'excluded' if not sd_bias.low <= value <= sd_bias.high else 'not excluded'}"
                for name, value in rivals.items()]
    return _row("theory", base, gap, "bias SD - theory", tau, (-tau, tau), "percent",
                judged(plan.inside_verdict(gap.low, gap.high)), plan.CONFIDENCE,
                f"SD {_percent(sd_bias)}; theory {theory_bias:+.1%}; SD - theory {_percent(gap)}",
                theory_bias=theory_bias, rivals="; ".join(excluded))


def _table(cases: pd.DataFrame, uncertainty: Mapping[str, str], group: str, ce: str, sd: str, gate: bool,
           doubled: pd.DataFrame | None, n_resamples: int, seed: int) -> pd.DataFrame:
    bad = {k: v for k, v in uncertainty.items() if v not in ("low", "high")}
    if bad:
        raise ValueError(f"uncertainty levels must be 'low' or 'high', got {bad}")
    present = [name for name in uncertainty
               if set(cases.loc[cases[group] == name, "loss"]) >= {ce, sd}]
    claim1_confidence = 1.0 - (1.0 - plan.CONFIDENCE) / max(1, len(present))
    rows: list[dict[str, object]] = []
    for name in present:
        sub = cases[(cases[group] == name) & cases["loss"].isin([ce, sd])]
        twice = None
        if doubled is not None and group in doubled.columns:
            twice = doubled[(doubled[group] == name) & doubled["loss"].isin([ce, sd])]
        rows += _group_rows(sub, name, uncertainty[name], ce, sd, gate, twice, claim1_confidence, n_resamples, seed)
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    order = table["claim"].map({c: i for i, c in enumerate(CLAIM_ORDER)})
    return table.assign(_order=order).sort_values(["_order", "group"]).drop(columns="_order").reset_index(drop=True)


def claims_table(
    cases: pd.DataFrame,
    uncertainty: Mapping[str, str],
    group: str = "task",
    ce: str = "ce",
    sd: str = "sd",
    seed: int = 0,
    n_resamples: int = plan.N_RESAMPLES,
    gate: bool = True,
    doubled: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per claim (and companion question) and confirmatory group, with the interval behind each verdict.

    ``uncertainty`` maps each value of the ``group`` column to ``"low"`` or ``"high"``; groups without both CE
    and SD cases are skipped. ``gate``: apply the convergence rule (``converged`` column); ``doubled``: the
    cases of the same runs trained with twice the steps, grouped alike (the stability column). Verdicts and
    margins: :mod:`volbias.analysis.plan`; columns: :data:`COLUMNS`.
    """
    return _table(cases, uncertainty, group, ce, sd, gate, doubled, n_resamples, seed)


def exploratory_table(
    cases: pd.DataFrame,
    uncertainty: Mapping[str, str],
    reasons: Mapping[str, str],
    group: str = "task",
    ce: str = "ce",
    sd: str = "sd",
    n_resamples: int = plan.N_RESAMPLES,
    seed: int = 0,
) -> pd.DataFrame:
    """The statistics of :func:`claims_table` for exploratory groups, without verdicts.

    ``reasons`` maps each exploratory group to why it is exploratory (column ``selected``).
    """
    table = _table(cases, {g: level for g, level in uncertainty.items() if g in reasons}, group, ce, sd, False,
                   None, n_resamples, seed)
    table = table.drop(columns="verdict")
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
