"""Overall numbers of the audit: Dice, volume bias with bootstrap CIs, Bland-Altman, pooled calibration.

The relative volume bias of a volume kind is ``sum_c (V_c - R_c) / sum_c R_c`` over the cases (volume-weighted:
large cases weigh more), with a percentile bootstrap CI over cases resampled in pairs
(:func:`volbias.analysis.tables.relative_bias_ci`); beside it, the per-case relative errors
``(V_c - R_c) / R_c`` (cases with a non-empty reference) by their median and interquartile range.  Mean errors
and the mean Dice get percentile bootstrap CIs of the mean (:func:`volbias.analysis.tables.bootstrap_ci`).
Calibration pools the reliability tables of all cases' calibration regions (one ECE definition,
:data:`volbias.audit.measures.ECE_DEFINITION`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from volbias.analysis.plots import bland_altman_stats
from volbias.analysis.tables import bootstrap_ci, relative_bias, relative_bias_ci
from volbias.audit.calibration import pool_tables
from volbias.audit.measures import ECE_DEFINITION, CaseMeasures
from volbias.metrics import calibration_error_of_bins

VOLUME_KINDS: dict[str, str] = {
    "hard": "hard_volume_ml", "soft": "soft_volume_ml", "argmax": "argmax_volume_ml",
    "tau_star": "tau_star_volume_ml", "dice_optimal": "dice_optimal_volume_ml",
}
"""Volumes that every case gives on its own (the argmax volume only for a softmax over three or more classes)."""


def volume_kinds(cases: pd.DataFrame) -> dict[str, str]:
    """The kinds of :data:`VOLUME_KINDS` that ``cases`` holds."""
    return {kind: column for kind, column in VOLUME_KINDS.items() if column in cases.columns}


def _estimate(values: np.ndarray, seed: int) -> dict[str, float]:
    values = np.asarray(values, dtype=float)
    low, high = bootstrap_ci(values, seed=seed)
    return {"mean": float(np.mean(values)) if values.size else float("nan"), "ci_low": low, "ci_high": high}


def per_case_spread(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Median and quartiles of the per-case relative errors ``(V - R) / R`` (cases with ``R > 0``)."""
    keep = ref > 0
    if not keep.any():
        return {"median": float("nan"), "q25": float("nan"), "q75": float("nan"), "n": 0}
    errors = (pred[keep] - ref[keep]) / ref[keep]
    q25, median, q75 = np.percentile(errors, [25, 50, 75])
    return {"median": float(median), "q25": float(q25), "q75": float(q75), "n": int(keep.sum())}


def _bias(pred: np.ndarray, ref: np.ndarray, seed: int) -> dict[str, Any]:
    spread = per_case_spread(pred, ref)
    if ref.sum() <= 0:
        return {"value": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "per_case": spread}
    low, high = relative_bias_ci(pred, ref, seed=seed)
    return {"value": relative_bias(pred, ref), "ci_low": low, "ci_high": high, "per_case": spread}


def pooled_histogram(measures: Sequence[CaseMeasures]) -> np.ndarray:
    """The probability histogram counts of all cases together."""
    return np.sum([m.histogram for m in measures], axis=0)


def overall_numbers(cases: pd.DataFrame, measures: Sequence[CaseMeasures], seed: int = 0) -> dict[str, Any]:
    """The summary of ``cases`` (the rows of ``cases.csv``) and of the cases' calibration regions."""
    ref = cases["ref_volume_ml"].to_numpy(float)
    kinds = volume_kinds(cases)
    out: dict[str, Any] = {
        "n_cases": int(len(cases)),
        "dice": _estimate(cases["dice"].to_numpy(float), seed),
        "expected_dice_hard": _estimate(cases["expected_dice_hard"].to_numpy(float), seed),
        "mean_volume_ml": {"reference": float(ref.mean()), **{k: float(cases[c].mean()) for k, c in kinds.items()}},
        "relative_bias": {kind: _bias(cases[col].to_numpy(float), ref, seed) for kind, col in kinds.items()},
        "mean_error_ml": {kind: _estimate(cases[col].to_numpy(float) - ref, seed) for kind, col in kinds.items()},
        "mean_abs_error_ml": {kind: _estimate(np.abs(cases[col].to_numpy(float) - ref), seed)
                              for kind, col in kinds.items()},
    }
    abs_soft = np.abs(cases["soft_volume_ml"].to_numpy(float) - ref)
    abs_hard = np.abs(cases["hard_volume_ml"].to_numpy(float) - ref)
    out["abs_error_soft_minus_hard_ml"] = _estimate(abs_soft - abs_hard, seed)
    out["bland_altman"] = ({kind: bland_altman_stats(cases[VOLUME_KINDS[kind]], ref) for kind in ("soft", "hard")}
                           if len(cases) >= 2 else None)
    table = pool_tables([m.reliability for m in measures])
    between = sum(m.intermediate[0] for m in measures)
    above = sum(m.intermediate[1] for m in measures)
    out["calibration"] = {
        "ece": calibration_error_of_bins(table), "ece_definition": ECE_DEFINITION, "n_bins": int(len(table)),
        "voxels": int(table["count"].sum()),
        "cases_without_region": int(sum(1 for m in measures if m.region_prob.size == 0)),
        "intermediate_share": between / above if above else float("nan"),
    }
    out["tau_star"] = {"mean": float(cases["tau_star"].mean()), "min": float(cases["tau_star"].min()),
                       "max": float(cases["tau_star"].max())}
    return out


def headline_row(numbers: dict[str, Any]) -> dict[str, float]:
    """The main numbers of one audit as flat columns (estimate, ``<name>_ci_low``, ``<name>_ci_high``)."""
    row: dict[str, float] = {"n_cases": numbers["n_cases"], "dice": numbers["dice"]["mean"],
                             "dice_ci_low": numbers["dice"]["ci_low"], "dice_ci_high": numbers["dice"]["ci_high"]}
    for kind in ("hard", "soft", "tau_star"):
        bias = numbers["relative_bias"][kind]
        row.update({f"bias_{kind}": bias["value"], f"bias_{kind}_ci_low": bias["ci_low"],
                    f"bias_{kind}_ci_high": bias["ci_high"], f"bias_{kind}_median": bias["per_case"]["median"],
                    f"bias_{kind}_q25": bias["per_case"]["q25"], f"bias_{kind}_q75": bias["per_case"]["q75"]})
    row.update({"ece": numbers["calibration"]["ece"],
                "intermediate_share": numbers["calibration"]["intermediate_share"], "tau_star": numbers["tau_star"]["mean"]})
    return row
