"""All volume estimators applied to the held-out probability maps of finished runs, cross-fitted without leaks.

For every experiment (one task, setting, loss and seed; :mod:`volbias.estimators.maps`) the held-out maps
are reduced to one per case and split into held-out groups (:mod:`volbias.estimators.crossfit`).  Each
case gets six volume estimates.  The two estimators with fitted parameters (temperature scaling and the
linear volume re-calibration) use parameters fitted on the maps of the *other* groups' cases only, each
produced by a network that never saw them.  Temperatures are fitted, and calibration errors measured,
against the voxel marginals wherever the data have them (the exact ``p`` of the phantoms, the mean rater
of LIDC), else against the reference label.

The result is a long table, one row per case and estimator, with the volume, its signed, absolute and
relative error against a reference volume, the Dice of the estimator's mask (NaN for estimators without a
mask) and the expected calibration error of the map the estimator reads.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from volbias.analysis.present import format_estimate
from volbias.analysis.tables import bootstrap_ci, summarize
from volbias.data.case import Case
from volbias.estimators.crossfit import case_cluster, crossfit_sets, one_map_per_case
from volbias.estimators.maps import EXPERIMENT_KEYS, HeldOutMap, by_experiment, load_held_out_maps, run_loss_name
from volbias.estimators.recalibration import fit_linear_recalibration
from volbias.estimators.temperature import apply_temperature, fit_temperature
from volbias.estimators.volume import tau_star_mask
from volbias.metrics import dice, expected_calibration_error, hard_volume, soft_volume
from volbias.theory import dice_optimal_mask

__all__ = ["ESTIMATORS", "EXPERIMENT_KEYS", "HeldOutMap", "LABELLED", "LABEL_FREE", "NEEDS",
           "calibration_target", "compare_estimators", "display_table", "load_held_out_maps", "ranked_summary",
           "recalibration_fits", "run_loss_name"]

ESTIMATORS: tuple[str, ...] = (
    "threshold 0.5",
    "soft sum",
    "temperature-scaled",
    "re-calibrated",
    "tau* threshold",
    "Dice-optimal",
)
"""Display names of the estimators, in the order of the chapter."""

LABEL_FREE = "label-free"
LABELLED = "needs labelled cases"
NEEDS: dict[str, str] = {
    "threshold 0.5": LABEL_FREE, "soft sum": LABEL_FREE, "tau* threshold": LABEL_FREE, "Dice-optimal": LABEL_FREE,
    "temperature-scaled": LABELLED, "re-calibrated": LABELLED,
}
"""What each estimator needs besides the network: nothing, or labelled local cases to fit its parameters on
(voxel labels for the temperature, reference volumes for the re-calibration line)."""


def _reference(case: Case, reference: str) -> float:
    if reference == "expected_volume":
        return case.expected_volume
    if reference == "true_volume":
        return float(case.label.sum(dtype=np.float64)) * case.voxel_volume_ml
    raise ValueError(f"reference={reference!r}: expected 'expected_volume' or 'true_volume'")


def calibration_target(case: Case) -> np.ndarray:
    """What a calibrated map should equal: the voxel marginals where known, else the reference label."""
    return case.marginals if case.marginals is not None else case.label


def _ece(prob: np.ndarray, case: Case, n_bins: int) -> float:
    target = calibration_target(case)
    return float(expected_calibration_error(prob[case.mask], target[case.mask], n_bins=n_bins))


def _spacing(case: Case) -> tuple[float, ...] | None:
    """The case's voxel size for volumes in ml, or None (volumes in voxels) when it is unknown."""
    return case.spacing if case.spacing_known else None


def _rows_for_case(m: HeldOutMap, temperature: float, intercept: float, slope: float, reference: str,
                   n_bins: int, fit: dict[str, object]) -> list[dict[str, object]]:
    case, prob = m.case, m.prob
    spacing = _spacing(case)
    label = case.label > 0.5
    scaled = apply_temperature(prob, temperature, case.mask)
    ece_raw, ece_scaled = _ece(prob, case, n_bins), _ece(scaled, case, n_bins)
    soft = soft_volume(prob, spacing)
    masks = {"threshold 0.5": prob > 0.5, "tau* threshold": tau_star_mask(prob),
             "Dice-optimal": np.asarray(dice_optimal_mask(prob), dtype=bool)}
    volumes = {name: hard_volume(mask, spacing) for name, mask in masks.items()}
    line = intercept + slope * soft
    volumes.update({"soft sum": soft, "temperature-scaled": soft_volume(scaled, spacing),
                    "re-calibrated": max(0.0, line)})
    ref = _reference(case, reference)
    base = {"task": m.task, "setting": m.setting, "loss": m.loss, "seed": m.seed, "fold": m.fold,
            "replicate": f"seed {m.seed}, fold {m.fold}", "split": m.split, "case_id": case.id,
            "cluster": case_cluster(case), "volume_unit": case.volume_unit, "reference_volume": ref,
            "temperature": temperature, "recal_intercept": intercept, "recal_slope": slope, **fit}
    rows = []
    for name in ESTIMATORS:
        volume = volumes[name]
        err = volume - ref
        rel = err / ref if ref > 0 else float("nan")
        rows.append({
            **base, "estimator": name, "needs": NEEDS[name], "volume": volume, "err": err, "abs_err": abs(err),
            "rel_err": rel, "abs_rel_err": abs(rel), "clipped": name == "re-calibrated" and line < 0,
            "dice": dice(masks[name], label) if name in masks else float("nan"),
            "ece": ece_scaled if name == "temperature-scaled" else ece_raw,
        })
    return rows


def compare_estimators(
    maps: Sequence[HeldOutMap], reference: str = "expected_volume", n_splits: int = 5, n_bins: int = 10
) -> pd.DataFrame:
    """Long table (one row per case and estimator) of volumes, errors, Dice and ECE, cross-fitted without leaks.

    Each case appears once per estimator (:func:`volbias.estimators.crossfit.one_map_per_case`).  Besides the
    fitted parameters (``temperature``, ``recal_intercept``, ``recal_slope``) each row names its network
    (``fold``, and ``replicate`` = seed and fold, the unit a ranking resamples first), its ``cluster`` (patient
    or case, resampled second), its held-out group (``fit_group``), the number of cases the parameters were
    fitted on (``n_fit``), what the estimator ``needs`` (:data:`NEEDS`), whether a re-calibrated volume was
    ``clipped`` at zero, and the unit of its volumes (``volume_unit``, the case's
    :attr:`volbias.data.case.Case.volume_unit`).  ``rel_err`` is the error over the reference volume.
    """
    if not maps:
        raise ValueError("no held-out maps to compare; train the runs first")
    rows: list[dict[str, object]] = []
    for group in by_experiment(one_map_per_case(maps)).values():
        for cf in crossfit_sets(group, n_splits):
            temperature = fit_temperature([m.prob for m in cf.fit], [calibration_target(m.case) for m in cf.fit],
                                          [m.case.mask for m in cf.fit])
            recal = fit_linear_recalibration(np.array([soft_volume(m.prob, _spacing(m.case)) for m in cf.fit]),
                                             np.array([_reference(m.case, reference) for m in cf.fit]))
            fit = {"fit_group": cf.group, "n_fit": len(cf.fit)}
            for m in cf.held_out:
                rows.extend(_rows_for_case(m, temperature, recal.intercept, recal.slope, reference, n_bins, fit))
    return pd.DataFrame(rows)


SUMMARY_METRICS: tuple[str, ...] = ("err", "abs_err", "dice", "ece")


PAIR_ON: tuple[str, ...] = ("fold", "seed", "case_id")
"""Keys that identify one held-out case across losses and estimators (for paired comparisons)."""


def ranked_summary(comparison: pd.DataFrame, by: Sequence[str] = ("task", "loss", "estimator"),
                   seed: int = 0) -> pd.DataFrame:
    """Per group: mean and bootstrap 95% CI of signed/absolute volume error, Dice and ECE, ranked.

    Wide table (columns ``<metric>``, ``<metric>_low``, ``<metric>_high``), ranked within each task by the
    mean absolute volume error (column ``rank``, 1 = best). ``vs_best`` is the mean paired difference of the
    absolute error from the task's first-ranked entry over the cases both were evaluated on, with its
    bootstrap CI (``vs_best_low``, ``vs_best_high``): an interval that contains 0 means the ranking does not
    separate the entry from the best.
    """
    long = summarize(comparison, by=list(by), metrics=SUMMARY_METRICS, seed=seed)
    wide = long.pivot(index=list(by), columns="metric", values=["mean", "ci_low", "ci_high"])
    out = pd.DataFrame(index=wide.index)
    for metric in SUMMARY_METRICS:
        out[metric] = wide[("mean", metric)]
        out[f"{metric}_low"] = wide[("ci_low", metric)]
        out[f"{metric}_high"] = wide[("ci_high", metric)]
    out["n"] = comparison.groupby(list(by)).size()
    out = out.reset_index()
    out["rank"] = out.groupby("task")["abs_err"].rank(method="min").astype(int)
    out = out.sort_values(["task", "rank"]).reset_index(drop=True)
    errors = comparison.set_index([*by, *PAIR_ON])["abs_err"]
    contrasts = []
    for task, part in out.groupby("task", sort=False):
        best = errors.xs(tuple(part.iloc[0][list(by)]), level=list(by))
        for _, entry in part.iterrows():
            diff = (errors.xs(tuple(entry[list(by)]), level=list(by)) - best).dropna().to_numpy(float)
            low, high = bootstrap_ci(diff, seed=seed)
            contrasts.append((float(diff.mean()) if diff.size else float("nan"), low, high))
    out[["vs_best", "vs_best_low", "vs_best_high"]] = contrasts
    return out


def recalibration_fits(comparison: pd.DataFrame) -> pd.DataFrame:
    """One row per fitted re-calibration line: task, setting, loss, seed, fit group, n_fit, intercept, slope.

    A slope below 1 pulls every held-out volume towards the mean of the fitting cases: least squares
    estimates E[V_true | V_pred], which shrinks extreme volumes, so small and large objects are mis-sized in
    opposite directions even when the mean error is 0.
    """
    keys = [*EXPERIMENT_KEYS, "fit_group"]
    fits = comparison.drop_duplicates(keys)[[*keys, "n_fit", "recal_intercept", "recal_slope"]]
    return fits.rename(columns={"recal_intercept": "intercept", "recal_slope": "slope"}).reset_index(drop=True)


def display_table(summary: pd.DataFrame, task: str, digits: int = 2) -> pd.DataFrame:
    """The ranked rows of one task with ``mean [CI]`` strings, for the chapter's tables."""
    part = summary[summary["task"] == task]
    if part.empty:
        raise ValueError(f"task={task!r}: no rows in the summary")
    out = part[["rank", "loss", "estimator", "n"]].copy()
    names = {"err": "signed volume error", "abs_err": "absolute volume error",
             "vs_best": "absolute error minus the best's (paired)", "dice": "Dice", "ece": "ECE"}
    for metric, name in names.items():
        places = digits if metric in ("err", "abs_err", "vs_best") else 3
        out[name] = [
            "n/a" if np.isnan(row[metric]) else format_estimate(row[metric], row[f"{metric}_low"],
                                                               row[f"{metric}_high"], decimals=places)
            for _, row in part.iterrows()
        ]
    return out.set_index("rank")
