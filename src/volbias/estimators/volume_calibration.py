"""Volume-level calibration of an estimator: does it resolve per-case volume, and how would a line correct it?

Voxel calibration (ECE) pools voxels and cannot see whether the volumes follow the cases.  Here, per
experiment (task, setting, loss, seed) and estimator, over its held-out cases:

- ``slope`` and ``intercept`` of the least-squares line ``V_ref ~ a + b V_est`` (the calibration line of
  the volumes; a calibrated estimator has ``a = 0`` and ``b = 1``);
- ``r2``: ``1 - sum (V_ref - V_est)^2 / sum (V_ref - mean V_ref)^2``, the estimator as it stands; negative
  when it is worse than giving every case the mean reference volume;
- ``r2_heldout``: the same with ``V_est`` replaced by the cross-fitted line ``max(0, a_g + b_g V_est)``
  fitted on the other held-out groups (``fit_group`` of the comparison table), i.e. the share of the
  variance of the reference volumes that a linear re-calibration of this estimator explains on new cases;
- ``spread``: the standard deviation of the estimates over that of the reference volumes;
- ``corr``: their Pearson correlation.

Least squares cannot widen what the estimator does not resolve: the fitted values of a line have spread
``|corr|`` times that of the reference, so a re-calibrated volume is pulled towards the mean by the factor
``sqrt(R^2)`` whatever the slope, and its errors correlate with the reference volume at ``-sqrt(1 - R^2)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import linregress

from volbias.estimators.maps import EXPERIMENT_KEYS


def _line(estimate: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Least-squares ``(intercept, slope)`` of reference on estimate; a constant estimate gets slope 0."""
    if np.ptp(estimate) == 0:
        return float(reference.mean()), 0.0
    fit = linregress(estimate, reference)
    return float(fit.intercept), float(fit.slope)


def _r2(prediction: np.ndarray, reference: np.ndarray) -> float:
    total = float(((reference - reference.mean()) ** 2).sum())
    return 1.0 - float(((reference - prediction) ** 2).sum()) / total if total > 0 else float("nan")


def crossfit_r2(estimate: np.ndarray, reference: np.ndarray, groups: np.ndarray) -> float:
    """R^2 of the reference on the cross-fitted line ``max(0, a_g + b_g estimate)`` (groups fitted on the others)."""
    estimate, reference, groups = (np.asarray(x) for x in (estimate, reference, groups))
    prediction = np.empty(reference.shape, dtype=float)
    for g in np.unique(groups):
        held = groups == g
        if held.all():
            raise ValueError("crossfit_r2 needs at least two held-out groups")
        intercept, slope = _line(estimate[~held].astype(float), reference[~held].astype(float))
        prediction[held] = np.maximum(0.0, intercept + slope * estimate[held])
    return _r2(prediction, reference.astype(float))


def calibration_row(estimate: np.ndarray, reference: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """The calibration statistics of one estimator over one experiment's held-out cases (see the module)."""
    estimate, reference = np.asarray(estimate, dtype=float), np.asarray(reference, dtype=float)
    intercept, slope = _line(estimate, reference)
    sd_ref = reference.std(ddof=1) if reference.size > 1 else float("nan")
    sd_est = estimate.std(ddof=1) if estimate.size > 1 else float("nan")
    corr = float(np.corrcoef(estimate, reference)[0, 1]) if sd_est > 0 and sd_ref > 0 else float("nan")
    return {"n": int(reference.size), "slope": slope, "intercept": intercept, "r2": _r2(estimate, reference),
            "r2_heldout": crossfit_r2(estimate, reference, groups), "spread": sd_est / sd_ref, "corr": corr}


def volume_calibration(comparison: pd.DataFrame, estimators: Sequence[str] | None = None,
                       by: Sequence[str] = (*EXPERIMENT_KEYS, "estimator")) -> pd.DataFrame:
    """One row per experiment (task, setting, loss, seed) and estimator: the statistics of :func:`calibration_row`.

    ``by`` may add columns that are constant within an experiment (e.g. a data-set name) to the keys.
    """
    part = comparison if estimators is None else comparison[comparison["estimator"].isin(list(estimators))]
    missing = [key for key in (*EXPERIMENT_KEYS, "estimator") if key not in by]
    if missing:
        raise ValueError(f"by must hold the experiment keys and the estimator; missing {missing}")
    rows = []
    for key, group in part.groupby(list(by), sort=False):
        rows.append({**dict(zip(by, key)),
                     **calibration_row(group["volume"].to_numpy(float), group["reference_volume"].to_numpy(float),
                                       group["fit_group"].to_numpy())})
    return pd.DataFrame(rows)


CALIBRATION_STATISTICS: tuple[str, ...] = ("slope", "intercept", "r2", "r2_heldout", "spread", "corr")


def calibration_over_seeds(per_seed: pd.DataFrame, by: Sequence[str] = ("task", "setting", "loss", "estimator")
                           ) -> pd.DataFrame:
    """Per group ``by`` (default: task, setting, loss and estimator; pass a data-set column where the setting names
    the seed): the mean, smallest and largest value of each statistic over the seeds (columns ``<statistic>``,
    ``<statistic>_min``, ``<statistic>_max``), the number of seeds and of cases."""
    grouped = per_seed.groupby(list(by), sort=False)
    out = grouped[list(CALIBRATION_STATISTICS)].mean()
    for stat in CALIBRATION_STATISTICS:
        out[f"{stat}_min"] = grouped[stat].min()
        out[f"{stat}_max"] = grouped[stat].max()
    out["n_seeds"] = grouped.size()
    out["n"] = grouped["n"].sum()
    return out.reset_index()
