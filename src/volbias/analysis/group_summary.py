"""Per group and loss: Dice and the relative volume bias of both volumes, with networks as the unit.

The descriptive companion of the verdict table (:mod:`volbias.analysis.claims`): the same Dice column
(:func:`volbias.analysis.plan.dice_column`), the same two-level intervals (networks, then cases or LIDC
patients within networks), for every loss a group has; and, per network, the volume bias that the
figures draw as one point each.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from volbias.analysis import plan
from volbias.analysis.resampling import TwoLevelBootstrap, relative_bias, weighted_mean

SUMMARY_COLUMNS: tuple[str, ...] = (
    "group", "loss", "networks", "cases", "dice", "dice_mean", "dice_low", "dice_high", "bias_soft",
    "bias_soft_low", "bias_soft_high", "bias_hard", "bias_hard_low", "bias_hard_high", "interval",
)


def _units(cases: pd.DataFrame) -> pd.Series:
    return "fold" + cases["fold"].astype(str) + "-seed" + cases["seed"].astype(str)


def loss_summary(cases: pd.DataFrame, group: str = "group", n_resamples: int = plan.N_RESAMPLES,
                 seed: int = 0) -> pd.DataFrame:
    """One row per group and loss: networks, cases, mean Dice and the soft and thresholded volumes' relative
    bias against the expected volume, each with its two-level 95 % interval (columns :data:`SUMMARY_COLUMNS`)."""
    rows = []
    for (name, loss), sub in cases.groupby([group, "loss"], sort=True):
        dice = plan.dice_column(sub)
        boot = TwoLevelBootstrap(_units(sub), plan.case_cluster(sub), n_resamples, seed)
        ref = sub["expected_volume"].to_numpy(float)
        mean = boot.interval(weighted_mean(sub[dice].to_numpy(float)))
        soft = boot.interval(relative_bias(sub["pred_volume_soft"].to_numpy(float), ref))
        hard = boot.interval(relative_bias(sub["pred_volume_hard"].to_numpy(float), ref))
        rows.append({"group": name, "loss": loss, "networks": int(_units(sub).nunique()), "cases": len(sub),
                     "dice": dice, "dice_mean": mean.estimate, "dice_low": mean.low, "dice_high": mean.high,
                     "bias_soft": soft.estimate, "bias_soft_low": soft.low, "bias_soft_high": soft.high,
                     "bias_hard": hard.estimate, "bias_hard_low": hard.low, "bias_hard_high": hard.high,
                     "interval": hard.method})
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def squared_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """R^2 of the least-squares line of ``y`` on ``x`` (the squared Pearson correlation); NaN without spread."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1] ** 2)


def network_bias(cases: pd.DataFrame, by: tuple[str, ...] = ("group", "loss")) -> pd.DataFrame:
    """One row per network (fold x seed) of each group and loss, over its own held-out cases: the relative bias
    of the soft and the thresholded volume, the mean Dice (the column :func:`plan.dice_column` picks), and how
    well each volume follows the cases: ``r2_soft``, ``r2_hard``, the R^2 of the expected volume on it (does
    the network resolve per-case volume, or only the average?)."""
    rows = []
    for key, sub in cases.assign(network=_units(cases)).groupby([*by, "network"], sort=True):
        expected = sub["expected_volume"].to_numpy(float)
        rows.append({**dict(zip([*by, "network"], key)), "cases": len(sub),
                     "dice": float(np.mean(sub[plan.dice_column(sub)])),
                     "bias_soft": float(sub["pred_volume_soft"].sum() / expected.sum() - 1.0),
                     "bias_hard": float(sub["pred_volume_hard"].sum() / expected.sum() - 1.0),
                     "r2_soft": squared_correlation(sub["pred_volume_soft"], expected),
                     "r2_hard": squared_correlation(sub["pred_volume_hard"], expected)})
    return pd.DataFrame(rows)
