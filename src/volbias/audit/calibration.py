"""Reliability tables per case, pooled over cases, and the expected calibration error of a table.

Per case, :func:`volbias.metrics.reliability_bins` bins the voxels of the calibration region; pooling
adds the cases' bins (counts, and means weighted by counts), so the pooled table equals the table of
all voxels together without binning them twice; :func:`volbias.metrics.calibration_error_of_bins` gives
the calibration error of such a table.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from volbias.metrics import reliability_bins


def case_reliability(prob: np.ndarray, reference: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Reliability table of one case's voxels (all bins empty when there are none)."""
    if prob.size == 0:
        edges = np.linspace(0.0, 1.0, n_bins + 1)
        return pd.DataFrame({"bin_lower": edges[:-1], "bin_upper": edges[1:], "mean_probability": np.nan,
                             "observed_frequency": np.nan, "count": np.zeros(n_bins, dtype=np.int64)})
    return reliability_bins(prob, reference, n_bins)


def pool_tables(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The reliability table of all the tables' voxels together."""
    counts = np.sum([t["count"].to_numpy() for t in tables], axis=0)
    out = tables[0][["bin_lower", "bin_upper"]].copy()
    for column in ("mean_probability", "observed_frequency"):
        sums = np.sum([np.nan_to_num(t[column].to_numpy(float)) * t["count"].to_numpy() for t in tables], axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[column] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    out["count"] = counts.astype(np.int64)
    return out
