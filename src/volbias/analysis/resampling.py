"""Two-level bootstrap: trained networks first, then held-out cases (or clusters of cases) within networks.

A claim about a loss is a claim about many trained networks, so the outer level resamples *units* (the
networks of one fold and seed, both losses together: a pair shares its held-out cases), the inner level
resamples the clusters of cases each drawn unit holds (a case, or every nodule of one LIDC patient) — the
cases of a unit drawn twice are resampled twice, independently. A resample is a weight per case (how often it
was drawn); every statistic here is a ratio of weighted sums, so one matrix product evaluates it on all
resamples. Intervals are BCa (acceleration from the jackknife over units) with at least
:data:`volbias.analysis.plan.MIN_BCA_UNITS` units, percentile otherwise.

Written by hand: ``scipy.stats.bootstrap`` resamples one level only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from volbias.analysis.plan import CONFIDENCE, MIN_BCA_UNITS, N_RESAMPLES

Statistic = Callable[[np.ndarray], np.ndarray]
"""Maps case weights, shape (resamples, cases), to one value per resample."""


@dataclass(frozen=True)
class Interval:
    """A point estimate with its interval and how the interval was made."""

    estimate: float
    low: float
    high: float
    method: str  # "BCa", "percentile" or "none"

    @property
    def half_width(self) -> float:
        """Half the interval's width (what the group could resolve)."""
        return (self.high - self.low) / 2


class TwoLevelBootstrap:
    """Resampling weights for cases nested in clusters nested in units (see the module docstring)."""

    def __init__(self, units: np.ndarray | pd.Series, clusters: np.ndarray | pd.Series,
                 n_resamples: int = N_RESAMPLES, seed: int = 0) -> None:
        units = np.asarray(units)
        clusters = np.asarray(clusters)
        if units.shape != clusters.shape or units.ndim != 1:
            raise ValueError("units and clusters need one entry per case")
        self.n_cases = units.size
        self.unit_codes, self.unit_names = _codes(units)
        self.n_units = len(self.unit_names)
        rng = np.random.default_rng(seed)
        self.weights = self._draw(clusters, n_resamples, rng)

    def _draw(self, clusters: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
        weights = np.zeros((n_resamples, self.n_cases))
        if self.n_cases == 0:
            return weights
        unit_draws = rng.multinomial(self.n_units, np.full(self.n_units, 1.0 / self.n_units), size=n_resamples)
        for u in range(self.n_units):
            rows = np.flatnonzero(self.unit_codes == u)
            codes, names = _codes(clusters[rows])
            k = len(names)
            # c copies of a unit resample its k clusters c times: c * k draws over the clusters
            cluster_draws = rng.multinomial(unit_draws[:, u] * k, np.full(k, 1.0 / k))
            weights[:, rows] = cluster_draws[:, codes]
        return weights

    def interval(self, statistic: Statistic, confidence: float = CONFIDENCE) -> Interval:
        """``statistic`` on all cases, with its bootstrap interval (NaN without cases)."""
        if self.n_cases == 0:
            return Interval(np.nan, np.nan, np.nan, "none")
        estimate = float(statistic(np.ones((1, self.n_cases)))[0])
        with np.errstate(invalid="ignore", divide="ignore"):
            values = statistic(self.weights)
        values = values[np.isfinite(values)]
        if values.size < 2 or np.ptp(values) == 0:
            return Interval(estimate, estimate, estimate, "none")
        alpha = 1.0 - confidence
        if self.n_units >= MIN_BCA_UNITS:
            levels = self._bca_levels(statistic, values, estimate, alpha)
            if levels is not None:
                low, high = np.quantile(values, levels)
                return Interval(estimate, float(low), float(high), "BCa")
        low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
        return Interval(estimate, float(low), float(high), "percentile")

    def _bca_levels(self, statistic: Statistic, values: np.ndarray, estimate: float,
                    alpha: float) -> tuple[float, float] | None:
        """BCa quantile levels (Efron 1987): bias from the resamples, acceleration from leaving out one unit."""
        below = np.mean(values < estimate) + 0.5 * np.mean(values == estimate)
        if not 0 < below < 1:
            return None
        z0 = stats.norm.ppf(below)
        leave_one_out = np.ones((self.n_units, self.n_cases))
        leave_one_out[self.unit_codes, np.arange(self.n_cases)] = 0.0
        with np.errstate(invalid="ignore", divide="ignore"):
            jack = statistic(leave_one_out)
        if not np.all(np.isfinite(jack)):
            return None
        spread = jack.mean() - jack
        denominator = 6.0 * np.sum(spread ** 2) ** 1.5
        acceleration = float(np.sum(spread ** 3) / denominator) if denominator > 0 else 0.0
        z = stats.norm.ppf([alpha / 2, 1 - alpha / 2])
        levels = stats.norm.cdf(z0 + (z0 + z) / (1 - acceleration * (z0 + z)))
        return float(levels[0]), float(levels[1])


def _codes(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    names, codes = np.unique(values.astype(str), return_inverse=True)
    return codes, names


def weighted_mean(values: np.ndarray) -> Statistic:
    """The weighted mean of a per-case value (e.g. a paired Dice difference)."""
    values = np.asarray(values, dtype=np.float64)
    return lambda w: (w @ values) / w.sum(1)


def relative_bias(predicted: np.ndarray, expected: np.ndarray) -> Statistic:
    """``sum w (V - E) / sum w E``: the relative volume bias of the weighted cases."""
    difference = np.asarray(predicted, np.float64) - np.asarray(expected, np.float64)
    expected = np.asarray(expected, np.float64)
    return lambda w: (w @ difference) / (w @ expected)


def bias_difference(first: np.ndarray, second: np.ndarray, expected: np.ndarray) -> Statistic:
    """``bias(first) - bias(second)`` on the same weighted cases: ``sum w (V1 - V2) / sum w E``."""
    return relative_bias(np.asarray(first, np.float64) - np.asarray(second, np.float64) + np.asarray(expected),
                         expected)


def abs_bias_difference(first: np.ndarray, second: np.ndarray, expected: np.ndarray) -> Statistic:
    """``|bias(first)| - |bias(second)|`` on the same weighted cases."""
    a, b = relative_bias(first, expected), relative_bias(second, expected)
    return lambda w: np.abs(a(w)) - np.abs(b(w))
