"""The theory's volumes for each loss: the soft sum and the 0.5-threshold volume of the loss's optimal map.

Given a case's voxel marginals ``p``, a network that reached the minimum of its loss's expected (or
plug-in) value would output the map of :data:`OPTIMA`: ``p`` itself for CE and for DML on soft targets
(both are minimised by the calibrated map), the top-k mask at ``tau* = SD*/2`` for soft Dice, and the later
losses' optima of :mod:`volbias.theory.later_optima` (focal: ``s*(p)`` voxel by voxel; Tversky: a top-k
mask with a lower cut; DSC++: ``p`` inflated by one factor).  For CE + SD no optimum is derived here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from volbias.data.case import Case
from volbias.theory import cross_entropy_optimum, soft_dice_optimum
from volbias.theory.later_optima import dsc_plus_plus_optimum, focal_optimum, tversky_optimal_mask

OPTIMA: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "ce": cross_entropy_optimum,
    "dml": cross_entropy_optimum,
    "sd": lambda p: soft_dice_optimum(p).astype(np.float64),
    "focal": focal_optimum,
    "tversky": lambda p: tversky_optimal_mask(p).astype(np.float64),
    "dsc++": dsc_plus_plus_optimum,
}
"""The optimal map of each loss (book defaults: focal and DSC++ with gamma 2, Tversky with alpha 0.3, beta 0.7)."""


def optimum_volumes(cases: Iterable[Case], losses: Sequence[str] = tuple(OPTIMA)) -> pd.DataFrame:
    """One row per case and loss: the expected volume and the soft and 0.5-threshold volumes of the loss's optimum.

    Volumes in each case's unit; the marginals are read inside the case's mask.
    """
    unknown = [loss for loss in losses if loss not in OPTIMA]
    if unknown:
        raise ValueError(f"no optimum known for {unknown}; known: {', '.join(OPTIMA)}")
    rows = []
    for case in cases:
        if case.marginals is None:
            raise ValueError(f"case {case.id}: no voxel marginals")
        p = case.marginals[case.mask].astype(np.float64)
        ml = case.voxel_volume_ml
        for loss in losses:
            s = OPTIMA[loss](p)
            rows.append({"case_id": case.id, "loss": loss, "volume_unit": case.volume_unit,
                         "expected_volume": float(p.sum()) * ml, "soft": float(s.sum()) * ml,
                         "threshold": float(np.count_nonzero(s > 0.5)) * ml})
    return pd.DataFrame(rows)


def optimum_bias(volumes: pd.DataFrame) -> pd.DataFrame:
    """Per loss: relative bias ``sum(V - V_expected) / sum(V_expected)`` of the optimum's soft and threshold volumes."""
    grouped = volumes.groupby("loss", sort=False)
    total = grouped["expected_volume"].sum()
    return pd.DataFrame({"soft": grouped["soft"].sum() / total - 1.0,
                         "threshold": grouped["threshold"].sum() / total - 1.0}).reset_index()
