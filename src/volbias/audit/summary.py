"""Overall numbers of the audit: Dice, volume bias with bootstrap CIs, Bland-Altman, pooled calibration.

The relative volume bias of a volume kind is ``sum_c (V_c - R_c) / sum_c R_c`` over the cases, with a
percentile bootstrap CI over cases resampled in pairs (:func:`volbias.analysis.tables.relative_bias_ci`);
mean errors and the mean Dice get percentile bootstrap CIs of the mean
(:func:`volbias.analysis.tables.bootstrap_ci`).  Calibration pools the calibration regions of all cases.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from volbias.analysis.plots import bland_altman_stats
from volbias.analysis.tables import bootstrap_ci, relative_bias, relative_bias_ci
from volbias.audit.calibration import pool_tables
from volbias.audit.measures import INTERMEDIATE, CaseMeasures
from volbias.metrics import calibration_error_of_bins

VOLUME_KINDS: dict[str, str] = {
    "hard": "hard_volume_ml", "soft": "soft_volume_ml", "tau_star": "tau_star_volume_ml",
    "dice_optimal": "dice_optimal_volume_ml",
}
"""Volumes that every case gives on its own: thresholded, soft, tau* threshold, Dice-optimal mask."""


def _estimate(values: np.ndarray, seed: int) -> dict[str, float]:
    values = np.asarray(values, dtype=float)
    low, high = bootstrap_ci(values, seed=seed)
    return {"mean": float(np.mean(values)) if values.size else float("nan"), "ci_low": low, "ci_high": high}


def _bias(pred: np.ndarray, ref: np.ndarray, seed: int) -> dict[str, float]:
    if ref.sum() <= 0:
        return {"value": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")}
    low, high = relative_bias_ci(pred, ref, seed=seed)
    return {"value": relative_bias(pred, ref), "ci_low": low, "ci_high": high}


def overall_numbers(cases: pd.DataFrame, measures: Sequence[CaseMeasures], seed: int = 0) -> dict[str, Any]:
    """The summary of ``cases`` (the rows of ``cases.csv``) and of the cases' cropped maps."""
    ref = cases["ref_volume_ml"].to_numpy(float)
    out: dict[str, Any] = {
        "n_cases": int(len(cases)),
        "dice": _estimate(cases["dice"].to_numpy(float), seed),
        "expected_dice_hard": _estimate(cases["expected_dice_hard"].to_numpy(float), seed),
        "mean_volume_ml": {"reference": float(ref.mean()),
                           **{kind: float(cases[col].mean()) for kind, col in VOLUME_KINDS.items()}},
        "relative_bias": {kind: _bias(cases[col].to_numpy(float), ref, seed) for kind, col in VOLUME_KINDS.items()},
        "mean_error_ml": {kind: _estimate(cases[col].to_numpy(float) - ref, seed) for kind, col in VOLUME_KINDS.items()},
        "mean_abs_error_ml": {kind: _estimate(np.abs(cases[col].to_numpy(float) - ref), seed)
                              for kind, col in VOLUME_KINDS.items()},
    }
    abs_soft = np.abs(cases["soft_volume_ml"].to_numpy(float) - ref)
    abs_hard = np.abs(cases["hard_volume_ml"].to_numpy(float) - ref)
    out["abs_error_soft_minus_hard_ml"] = _estimate(abs_soft - abs_hard, seed)
    out["bland_altman"] = ({kind: bland_altman_stats(cases[VOLUME_KINDS[kind]], ref) for kind in ("soft", "hard")}
                           if len(cases) >= 2 else None)
    table = pool_tables([m.reliability for m in measures])
    above = sum(int(np.count_nonzero(m.prob > INTERMEDIATE[0])) for m in measures)
    between = sum(int(np.count_nonzero((m.prob > INTERMEDIATE[0]) & (m.prob < INTERMEDIATE[1]))) for m in measures)
    out["calibration"] = {
        "ece": calibration_error_of_bins(table), "n_bins": int(len(table)), "voxels": int(table["count"].sum()),
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
                    f"bias_{kind}_ci_high": bias["ci_high"]})
    row.update({"ece": numbers["calibration"]["ece"], "intermediate_share": numbers["calibration"]["intermediate_share"],
                "tau_star": numbers["tau_star"]["mean"]})
    return row
