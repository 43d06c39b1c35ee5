"""The volume estimators of the chapter "Which volume to trust", applied to the audited cases.

Threshold, soft sum, tau* threshold and Dice-optimal mask (and nnU-Net's argmax mask for a softmax over three
or more classes) come from each case alone (its row of ``cases.csv``): they need no labelled cases.
Temperature scaling (:func:`volbias.estimators.fit_temperature`) and the linear volume re-calibration (:func:`volbias.estimators.fit_linear_recalibration`) have parameters; they are cross-fitted as in the chapter for runs of a single fold: the cases, sorted by id, are dealt into
``n_splits`` groups, and each group is corrected with parameters fitted on the other groups, so no case
contributes to its own correction.  The temperature is fitted against the reference (rater mean) on the
calibration regions of the training groups, at most :data:`TEMPERATURE_VOXELS_PER_CASE` voxels per case (a
seeded uniform draw where a region is larger: the fit's cost grows with the pooled voxels, its precision
hardly beyond this).  The temperature scales the map where it was fitted, inside the calibration region, and
leaves the rest as it is, so the temperature-scaled volume is summed over the same voxels as the soft volume
(the whole map) and equals it at ``T = 1``; scaling is ``sigmoid(logit(p) / T)`` without clipping, which
keeps 0 and 1.  These two estimators need labelled cases of the audited population.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.special import expit, logit

from volbias.audit.measures import CaseMeasures

from volbias.estimators import fit_linear_recalibration, fit_temperature
from volbias.estimators.compare import ranked_summary
from volbias.metrics import expected_calibration_error

MIN_FIT_CASES = 3
"""Cases needed for the fitted estimators: each correction is fitted on at least two other cases."""
AUDIT_TASK, AUDIT_MODEL = "audit", "model"
TEMPERATURE_VOXELS_PER_CASE = 20_000


ARGMAX = "argmax (nnU-Net)"
NEEDS_LABELS = ("temperature-scaled", "re-calibrated")
"""Estimators fitted on labelled cases of the audited population (cross-fitted here)."""


def estimator_names(threshold: float) -> tuple[str, ...]:
    """Display names in the chapter's order; the first is the audit's threshold."""
    return (f"threshold {threshold:g}", "soft sum", "temperature-scaled", "re-calibrated", "tau* threshold",
            "Dice-optimal")


def scale_probabilities(prob: np.ndarray, temperature: float) -> np.ndarray:
    """``sigmoid(logit(p) / T)`` (float64), with ``logit(0) = -inf`` and ``logit(1) = inf``: 0 and 1 stay as they
    are, and ``T = 1`` returns ``p`` (to round-off)."""
    with np.errstate(divide="ignore"):
        return expit(logit(np.asarray(prob, dtype=np.float64)) / temperature)


def temperature_scaled_volume(m: CaseMeasures, temperature: float) -> float:
    """Soft volume (ml) of the case's map scaled by ``temperature`` inside its calibration region, as is outside."""
    scaled = float(scale_probabilities(m.region_prob, temperature).sum()) if m.region_prob.size else 0.0
    return (m.outside_soft + scaled) * m.row["voxel_volume_ml"]


def fit_groups(case_ids: Sequence[str], n_splits: int) -> np.ndarray:
    """Cross-fitting group of every case: its rank among the sorted ids, modulo ``n_splits``."""
    order = np.argsort(np.asarray(case_ids), kind="stable")
    groups = np.empty(len(case_ids), dtype=int)
    groups[order] = np.arange(len(case_ids)) % n_splits
    return groups


def temperature_voxels(region: np.ndarray, seed: int, index: int) -> np.ndarray:
    """The voxels of a calibration region a temperature fit uses: all of them, or a uniform draw of
    :data:`TEMPERATURE_VOXELS_PER_CASE` (generator ``default_rng([seed, index])``, ``index`` = the case's
    rank among the sorted case ids) when the region is larger."""
    inside = np.flatnonzero(region)
    if inside.size <= TEMPERATURE_VOXELS_PER_CASE:
        return region
    keep = np.random.default_rng([seed, index]).choice(inside.size, TEMPERATURE_VOXELS_PER_CASE, replace=False)
    mask = np.zeros(region.shape, dtype=bool)
    mask.flat[inside[keep]] = True
    return mask


def _temperature_scaled(m: CaseMeasures, temperature: float, n_bins: int) -> dict[str, float]:
    """Soft volume and ECE of the case's map scaled by ``temperature`` (NaN without a temperature)."""
    if not np.isfinite(temperature):
        return {"temperature_scaled_volume_ml": float("nan"), "temperature_scaled_ece": float("nan")}
    ece = (expected_calibration_error(scale_probabilities(m.region_prob, temperature), m.reference(), n_bins)
           if m.region_prob.size else float("nan"))
    return {"temperature_scaled_volume_ml": temperature_scaled_volume(m, temperature), "temperature_scaled_ece": ece}


def _fitted(measures: Sequence[CaseMeasures], n_splits: int, n_bins: int, seed: int) -> pd.DataFrame:
    """Per case: temperature, re-calibration line, temperature-scaled volume and its ECE (cross-fitted)."""
    ids = [m.row["case_id"] for m in measures]
    groups = fit_groups(ids, n_splits)
    rank = {case_id: k for k, case_id in enumerate(sorted(ids))}
    fit_voxels = {case_id: temperature_voxels(np.ones(m.region_prob.shape, bool), seed, rank[case_id])
                  for case_id, m in zip(ids, measures)}
    soft = np.array([m.row["soft_volume_ml"] for m in measures])
    ref = np.array([m.row["ref_volume_ml"] for m in measures])
    rows = []
    for g in np.unique(groups):
        train = [m for m, k in zip(measures, groups) if k != g]
        try:
            voxels = [fit_voxels[m.row["case_id"]] for m in train]
            temperature = fit_temperature([m.region_prob[v] for m, v in zip(train, voxels)],
                                          [m.region_votes[v] / float(m.n_raters) for m, v in zip(train, voxels)])
        except ValueError:  # no calibration voxels in the training cases: nothing to fit
            temperature = float("nan")
        try:
            line = fit_linear_recalibration(soft[groups != g], ref[groups != g])
            intercept, slope = line.intercept, line.slope
        except ValueError:  # all training volumes equal: no line to fit
            line, intercept, slope = None, float("nan"), float("nan")
        for m, k in zip(measures, groups):
            if k == g:
                rows.append({"case_id": m.row["case_id"], "temperature": temperature, "recal_intercept": intercept,
                             "recal_slope": slope, "recalibrated_volume_ml": (float(line.apply(m.row["soft_volume_ml"])) if line is not None
                                                else float("nan")),
                             **_temperature_scaled(m, temperature, n_bins)})
    return pd.DataFrame(rows).set_index("case_id")


def estimator_table(measures: Sequence[CaseMeasures], threshold: float, n_splits: int = 5,
                    n_bins: int = 10, seed: int = 0) -> pd.DataFrame:
    """Long table, one row per case and estimator: volume, signed/absolute error (ml), Dice and ECE.

    An estimator without a volume for every case is left out: the two fitted ones with fewer than
    :data:`MIN_FIT_CASES` cases, or when their fit failed (all volumes equal, no calibration voxels).  The columns
    follow :func:`volbias.estimators.compare.compare_estimators` (``task`` is ``"audit"``, ``loss``
    is ``"model"``, ``fold`` and ``seed`` are 0: one model, one set of cases), so its summaries apply.
    """
    names = estimator_names(threshold)
    fitted = _fitted(measures, n_splits, n_bins, seed) if len(measures) >= MIN_FIT_CASES else None
    rows = []
    for m in measures:
        case = m.row
        values = {names[0]: (case["hard_volume_ml"], case["dice"], case["ece"]),
                  names[1]: (case["soft_volume_ml"], np.nan, case["ece"]),
                  names[4]: (case["tau_star_volume_ml"], case["tau_star_dice"], case["ece"]),
                  names[5]: (case["dice_optimal_volume_ml"], case["dice_optimal_dice"], case["ece"])}
        if "argmax_volume_ml" in case:
            values[ARGMAX] = (case["argmax_volume_ml"], case["argmax_dice"], case["ece"])
        if fitted is not None:
            fit = fitted.loc[case["case_id"]]
            values[names[2]] = (fit.temperature_scaled_volume_ml, np.nan, fit.temperature_scaled_ece)
            values[names[3]] = (fit.recalibrated_volume_ml, np.nan, case["ece"])
        for name in (*names, ARGMAX):
            if name not in values:
                continue
            volume, mask_dice, ece = values[name]
            err = float(volume) - case["ref_volume_ml"]
            parameters = ({k: float(fitted.loc[case["case_id"], k]) for k in ("temperature", "recal_intercept",
                                                                               "recal_slope")}
                          if fitted is not None else {})
            rows.append({"task": AUDIT_TASK, "loss": AUDIT_MODEL, "fold": 0, "seed": 0, "case_id": case["case_id"],
                         "estimator": name, "volume": float(volume), "reference_volume": case["ref_volume_ml"],
                         "err": err, "abs_err": abs(err), "dice": float(mask_dice), "ece": float(ece), **parameters})
    table = pd.DataFrame(rows)
    unfitted = table.loc[~np.isfinite(table["volume"]), "estimator"].unique()
    return table[~table["estimator"].isin(unfitted)].reset_index(drop=True)


def estimator_summary(table: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Mean and bootstrap 95% CI of error, absolute error, Dice and ECE per estimator, ranked by absolute error.

    Besides the columns of :func:`volbias.estimators.compare.ranked_summary`: ``needs_labels`` (the estimator
    is fitted on labelled cases of the audited population) and ``among_best`` (the paired 95% CI of its
    absolute error minus the best's reaches 0, or cannot be computed: the cases do not separate it from the
    best).
    """
    ranked = ranked_summary(table, by=("task", "loss", "estimator"), seed=seed)
    ranked["needs_labels"] = ranked["estimator"].isin(NEEDS_LABELS)
    ranked["among_best"] = (ranked["rank"] == 1) | ~(ranked["vs_best_low"] > 0)
    return ranked
