"""Rankings and summaries that resample networks first, then cases: how often is each entry the best?

The resampling is the book's two-level bootstrap (:class:`volbias.analysis.resampling.TwoLevelBootstrap`):
each draw picks *networks* (column ``replicate``: the runs of one seed and fold) with replacement, then,
inside every drawn network, its *clusters* (column ``cluster``: patients or single cases) with replacement; a
cluster brings all its cases.  Entries (e.g. a loss and an estimator) evaluated on the same networks' cases
get the same draws (paired), so the share of draws in which an entry has the smallest mean (``p_best``)
accounts for choosing the best on the same data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from volbias.analysis.plan import CONFIDENCE, N_RESAMPLES
from volbias.analysis.resampling import TwoLevelBootstrap

CASE_KEYS: tuple[str, ...] = ("replicate", "cluster", "case_id")
"""Columns that identify one held-out case (of one network)."""


def _best_shares(means: np.ndarray) -> np.ndarray:
    """Per column (entry): the share of rows (draws) in which it has the smallest value, ties split."""
    finite = np.where(np.isfinite(means), means, np.inf)
    best = finite == finite.min(axis=1, keepdims=True)
    return (best / best.sum(axis=1, keepdims=True)).mean(axis=0)


def resampled_means(frame: pd.DataFrame, value: str, entries: Sequence[str], n_boot: int = N_RESAMPLES,
                    seed: int = 0, confidence: float = CONFIDENCE, paired: bool = True) -> pd.DataFrame:
    """Per entry: the mean of ``value`` over its cases, its two-level bootstrap interval and ``p_best``.

    ``frame`` has one row per entry and case with the columns ``entries``, :data:`CASE_KEYS` and ``value``
    (non-finite values are left out of the means).  ``paired``: every entry must have been evaluated on the same
    cases (else ValueError) and one set of draws serves all of them; ``p_best`` is the share of draws in which
    the entry has the smallest mean.  Unpaired entries are resampled each on its own and get no ``p_best``.
    Columns: the entries, ``mean``, ``low``, ``high``, ``p_best``, ``n`` (cases with a finite value) and
    ``n_replicates``.
    """
    entries = list(entries)
    if not paired:
        parts = [resampled_means(group, value, entries, n_boot, seed, confidence)
                 for _, group in frame.groupby(entries, sort=False)]
        return pd.concat(parts, ignore_index=True).assign(p_best=np.nan)
    case_sets = frame.groupby(entries, sort=False)[list(CASE_KEYS)].apply(
        lambda g: frozenset(map(tuple, g.to_numpy())))
    if case_sets.nunique() != 1:
        raise ValueError("entries were not evaluated on the same networks and cases; rank them separately")
    table = frame.set_index([*entries, *CASE_KEYS])[value].astype(float).unstack(list(CASE_KEYS))
    cases = table.columns.to_frame(index=False)
    values = table.to_numpy(float)
    finite = np.isfinite(values)
    filled = np.where(finite, values, 0.0)
    bootstrap = TwoLevelBootstrap(cases["replicate"], cases["cluster"], n_resamples=n_boot, seed=seed)
    out = table.index.to_frame(index=False)
    rows = []
    for e in range(values.shape[0]):
        keep = finite[e]
        interval = bootstrap.interval(lambda w, v=values[e, keep], k=keep: (w[:, k] @ v) / w[:, k].sum(1),
                                      confidence)
        rows.append((interval.estimate, interval.low, interval.high))
    out[["mean", "low", "high"]] = rows
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (bootstrap.weights @ filled.T) / (bootstrap.weights @ finite.T)
    out["p_best"] = _best_shares(means)
    out["n"] = finite.sum(axis=1)
    out["n_replicates"] = cases["replicate"].nunique()
    return out
