"""Per-case results (``cases.csv`` files) to summary tables: volume errors, bootstrap CIs, paired tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats


VOLUMES: dict[str, str] = {"soft": "pred_volume_soft", "hard": "pred_volume_hard"}
"""Predicted-volume kinds: soft = sum of probabilities, hard = volume of ``prob > 0.5``."""


def add_volume_errors(cases: pd.DataFrame, reference: str = "expected_volume") -> pd.DataFrame:
    """Add signed, absolute and relative volume errors of the soft and hard predicted volumes.

    New columns per kind k in {soft, hard}: ``err_k`` = predicted - reference, ``abs_err_k``, and
    ``rel_err_k`` = err / reference (NaN where the reference volume is 0).
    """
    if reference not in cases.columns:
        raise ValueError(f"reference column {reference!r} not in the cases table")
    out = cases.copy()
    ref = out[reference].astype(float)
    for kind, column in VOLUMES.items():
        err = out[column].astype(float) - ref
        out[f"err_{kind}"] = err
        out[f"abs_err_{kind}"] = err.abs()
        out[f"rel_err_{kind}"] = err / ref.where(ref != 0)
    return out


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    statistic: Callable[..., float] = np.mean,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``statistic`` (scipy.stats.bootstrap); NaN if n < 2."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return (float("nan"), float("nan"))
    if np.all(x == x[0]):
        value = float(statistic(x))
        return (value, value)
    result = stats.bootstrap(
        (x,), statistic, confidence_level=confidence, n_resamples=n_resamples,
        method="percentile", rng=np.random.default_rng(seed),
    )
    return (float(result.confidence_interval.low), float(result.confidence_interval.high))


def paired_bootstrap_ci(
    samples: Sequence[Sequence[float] | np.ndarray],
    statistic: Callable[..., np.ndarray],
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic(*samples, axis=-1)``, resampling cases with all arrays together.

    ``samples`` are per-case arrays of equal length (e.g. SD's volume, CE's volume and the reference of the
    same cases); one bootstrap draw picks cases, and every array follows (scipy.stats.bootstrap with
    ``paired=True``). ``statistic`` must be vectorised along ``axis``. NaN if there are fewer than 2 cases.
    """
    arrays = [np.asarray(x, dtype=float) for x in samples]
    sizes = {a.size for a in arrays}
    if len(sizes) != 1:
        raise ValueError(f"paired samples must have equal lengths, got {sorted(sizes)}")
    if sizes.pop() < 2:
        return (float("nan"), float("nan"))
    result = stats.bootstrap(
        tuple(arrays), statistic, paired=True, vectorized=True, confidence_level=confidence,
        n_resamples=n_resamples, method="percentile", rng=np.random.default_rng(seed),
    )
    return (float(result.confidence_interval.low), float(result.confidence_interval.high))


def _relative_bias(pred: np.ndarray, ref: np.ndarray, axis: int = -1) -> np.ndarray:
    """Vectorised sum(pred - ref) / sum(ref) along ``axis`` (for the bootstrap)."""
    return np.sum(pred - ref, axis=axis) / np.sum(ref, axis=axis)


def relative_bias(pred: Sequence[float] | np.ndarray, ref: Sequence[float] | np.ndarray) -> float:
    """Relative volume bias of a group of cases: sum(pred - ref) / sum(ref)."""
    return float(_relative_bias(np.asarray(pred, dtype=float), np.asarray(ref, dtype=float)))


def relative_bias_ci(
    pred: np.ndarray, ref: np.ndarray, confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Bootstrap CI (cases resampled in pairs) of :func:`relative_bias`; NaN if n < 2."""
    return paired_bootstrap_ci((pred, ref), _relative_bias, confidence, n_resamples, seed)


DEFAULT_METRICS: tuple[str, ...] = ("dice", "err_soft", "err_hard", "abs_err_soft", "abs_err_hard",
                                    "rel_err_soft", "rel_err_hard")


def summarize(
    cases: pd.DataFrame,
    by: Sequence[str] = ("task", "loss"),
    metrics: Sequence[str] = DEFAULT_METRICS,
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Long table, one row per group and metric: n, mean, sd, median and a bootstrap CI of the mean.

    Volume-error metrics are added with :func:`add_volume_errors` when missing.
    """
    if any(m not in cases.columns for m in metrics) and "err_soft" not in cases.columns:
        cases = add_volume_errors(cases)
    missing = [c for c in [*by, *metrics] if c not in cases.columns]
    if missing:
        raise ValueError(f"columns {missing} not in the cases table")
    rows = []
    for key, group in cases.groupby(list(by), sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        for metric in metrics:
            x = group[metric].astype(float).to_numpy()
            x = x[np.isfinite(x)]
            low, high = bootstrap_ci(x, confidence=confidence, n_resamples=n_resamples, seed=seed)
            rows.append({
                **dict(zip(by, key)), "metric": metric, "n": int(x.size),
                "mean": float(x.mean()) if x.size else float("nan"),
                "sd": float(x.std(ddof=1)) if x.size > 1 else float("nan"),
                "median": float(np.median(x)) if x.size else float("nan"),
                "ci_low": low, "ci_high": high,
            })
    return pd.DataFrame(rows)


def volume_bias_table(
    cases: pd.DataFrame,
    by: Sequence[str] = ("task", "loss"),
    reference: str = "expected_volume",
    confidence: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Relative volume bias sum(pred - ref)/sum(ref) of the soft and hard volumes per group, with CIs."""
    rows = []
    for key, group in cases.groupby(list(by), sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        ref = group[reference].to_numpy(float)
        row: dict[str, Any] = {**dict(zip(by, key)), "n": len(group), "mean_reference": float(ref.mean())}
        for kind, column in VOLUMES.items():
            pred = group[column].to_numpy(float)
            low, high = relative_bias_ci(pred, ref, confidence, n_resamples, seed)
            row.update({f"bias_{kind}": relative_bias(pred, ref), f"bias_{kind}_ci_low": low,
                        f"bias_{kind}_ci_high": high})
        rows.append(row)
    return pd.DataFrame(rows)


PAIR_KEYS: tuple[str, ...] = ("fold", "seed", "case_id")


def paired_test(
    cases: pd.DataFrame,
    metric: str,
    a: str = "ce",
    b: str = "sd",
    by: Sequence[str] = ("task",),
    pair_on: Sequence[str] = PAIR_KEYS,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Paired comparison of loss ``b`` against loss ``a`` on ``metric``, per group.

    Cases are paired on ``pair_on`` (plus the group keys); the Wilcoxon signed-rank test
    (scipy.stats.wilcoxon, two-sided) is applied to the differences b - a, whose mean gets a
    bootstrap CI. Groups with fewer than two pairs get NaN statistics.
    """
    if metric not in cases.columns and metric.startswith(("err_", "abs_err_", "rel_err_")):
        cases = add_volume_errors(cases)
    missing = [c for c in [*by, *pair_on, metric, "loss"] if c not in cases.columns]
    if missing:
        raise ValueError(f"columns {missing} not in the cases table")
    rows = []
    keys = [*by, *pair_on]
    for key, group in cases.groupby(list(by), sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        left = group[group["loss"] == a].set_index(keys)[metric]
        right = group[group["loss"] == b].set_index(keys)[metric]
        if left.index.has_duplicates or right.index.has_duplicates:
            raise ValueError(f"group {key}: cases are not unique on {keys}; add the distinguishing "
                             "columns to `by`")
        joined = pd.concat({a: left, b: right}, axis=1, join="inner").dropna()
        diff = (joined[b] - joined[a]).to_numpy(float)
        statistic = p_value = float("nan")
        if diff.size >= 2 and np.any(diff != 0):
            test = stats.wilcoxon(diff)
            statistic, p_value = float(test.statistic), float(test.pvalue)
        low, high = bootstrap_ci(diff, confidence=confidence, seed=seed)
        rows.append({
            **dict(zip(by, key)), "metric": metric, "a": a, "b": b, "n_pairs": int(diff.size),
            "mean_a": float(joined[a].mean()) if diff.size else float("nan"),
            "mean_b": float(joined[b].mean()) if diff.size else float("nan"),
            "mean_diff": float(diff.mean()) if diff.size else float("nan"),
            "diff_ci_low": low, "diff_ci_high": high, "wilcoxon_stat": statistic, "p_value": p_value,
        })
    return pd.DataFrame(rows)
