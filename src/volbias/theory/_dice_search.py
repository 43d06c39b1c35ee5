"""Bracketing the Dice-optimal mask size ``k`` with proven bounds, so that only a short window is scored exactly.

For a top-k mask (``k >= 1``) write ``T = X + Z`` for the label count, ``mu = E T``, ``sigma^2 = Var T``,
``mu_X(k) = sum_{top k} p``, ``sigma_X^2(k) = sum_{top k} p (1 - p)`` and ``d = k + mu``.  Expanding
``1/(k + T)`` around ``1/d``, ``2X/(k+T) = 2X/d - 2X(T - mu)/d^2 + 2X (T - mu)^2 / (d^2 (k + T))``;
``Cov(X, T) = sigma_X^2`` (independent voxels) and ``0 <= 2X/(k+T) <= 1`` give

    L(k) = 2 mu_X / d - 2 sigma_X^2 / d^2  <=  E[Dice(top k)]  <=  L(k) + sigma^2 / d^2,

and dropping ``Z`` and Jensen's inequality (``x -> 2x/(k+x)`` is concave) give
``E <= 2 mu_X / (k + mu_X)``.  Any ``k`` whose upper bound lies below the best lower bound (less
``WINDOW_MARGIN``, which exceeds the tie tolerance plus the error of the exact scores) cannot be
the tie rule's choice.

Without sorting, the voxels are grouped by the leading ``GROUP_BITS`` bits of their IEEE-754
patterns (which order non-negative floats), and per group only the count and ``sum p`` are taken
(two histogram passes).  Within a group of values in ``[low, high]``, ``mu_X(k)`` grows by steps
between ``low`` and ``high``, which bounds it from above by two lines; ``sum p (1 - p)`` over the
group is bounded from ``sum p^2 >= (sum p)^2 / count`` and ``sum p^2 <= (low + high) sum p -
count low high``.  The bounds above then hold for every ``k`` of the group (each is monotone on
the pieces of the two-line bound, so its extremes sit at their ends), and ``L`` holds at the group
ends.  Groups that cannot hold the optimum are dropped and the rest are regrouped by the next bits,
until at most ``CANDIDATES`` voxels (or a single value) remain; those are sorted and the bounds are
evaluated for each ``k``.  The cost is a few passes over the map, ``O(N)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from volbias.theory._arrays import NumpyOps
from volbias.theory._checks import TIE_TOLERANCE

WINDOW_MARGIN = 100 * TIE_TOLERANCE
CANDIDATES = 1 << 15
GROUP_BITS = 16


@dataclass(frozen=True)
class SearchResult:
    """The window ``k_lo .. k_hi`` (empty when ``k_hi < k_lo``) that may hold the optimal ``k >= 1``.

    The top-k mask for a window ``k`` is ``p > ceiling`` (the ``above`` largest voxels) plus
    ``candidates[: k - above]`` (flat indices on the map's device, by decreasing value, ties in
    raster order; ``candidate_values`` are their values).
    """

    total: float
    ones: int
    empty_score: float
    ceiling: float
    above: int
    above_mass: float
    candidates: Any
    candidate_values: Any
    candidate_mass: np.ndarray
    k_lo: int
    k_hi: int

    def top_mass(self, k: int) -> float:
        """``sum p`` over the top-k voxels, for ``above <= k <= above + len(candidates)``."""
        return self.above_mass + (float(self.candidate_mass[k - self.above - 1]) if k > self.above else 0.0)


def _bounds(
    k: np.ndarray, mass: np.ndarray, spread_low: np.ndarray, spread_high: np.ndarray, total: float, variance: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(L, U)`` at ``k`` with ``mu_X = mass`` and ``spread_low <= sigma_X^2 <= spread_high``."""
    d = k + total
    lower = 2.0 * mass / d - 2.0 * spread_high / d**2
    upper = 2.0 * mass / d - 2.0 * spread_low / d**2 + variance / d**2
    return lower, np.minimum(np.minimum(upper, 2.0 * mass / (k + mass)), 1.0)


def _spread_bounds(counts: np.ndarray, sums: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple:
    """Bounds on ``sum p (1 - p)`` over groups of ``counts`` values in ``[low, high]`` summing to ``sums``.

    ``sum p^2 >= sums^2 / counts`` (Cauchy-Schwarz) and ``sum p^2 <= (low + high) sums - counts low high``
    (each ``(p - low)(high - p) >= 0``).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        squares_low = np.where(counts > 0, sums**2 / counts, 0.0)
    squares_high = (low + high) * sums - counts * low * high
    return np.maximum(sums - squares_high, 0.0), np.maximum(sums - squares_low, 0.0)


@dataclass(frozen=True)
class _Above:
    """Count, ``sum p`` and bounds on ``sum p (1 - p)`` of the voxels above the current candidates."""

    count: int = 0
    mass: float = 0.0
    spread_low: float = 0.0
    spread_high: float = 0.0


def _group_bounds(
    counts: np.ndarray,
    sums: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    above: _Above,
    total: float,
    variance: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Per group (by decreasing value): an upper bound of ``E`` over its sizes ``k``, and ``L`` at its end.

    A group of ``c`` voxels covers ``k_start < k <= k_start + c``; the voxels above the first group
    are not a candidate (they ended a group that an earlier grouping dropped, or they are none).
    """
    spread_low, spread_high = _spread_bounds(counts, sums, low, high)
    k_end = above.count + np.cumsum(counts)
    mass_end = above.mass + np.cumsum(sums)
    k_start, mass_start = k_end - counts, mass_end - sums
    spread_start = above.spread_low + np.cumsum(spread_low) - spread_low
    k_first = k_start + 1.0  # k = k_start belongs to the group before (or is the empty mask)
    gap = high - low
    with np.errstate(divide="ignore", invalid="ignore"):
        bend = np.where(gap > 0, k_start + (sums - counts * low) / gap, k_end)
    bend = np.clip(bend, k_first, k_end)
    plug_in = np.full(counts.size, -np.inf)
    jensen = np.full(counts.size, -np.inf)
    for k in (k_first, bend, k_end):
        mass = np.minimum(mass_start + (k - k_start) * high, mass_end - (k_end - k) * low)
        plug_in = np.maximum(plug_in, 2.0 * mass / (k + total))
        jensen = np.maximum(jensen, 2.0 * mass / (k + mass))
    second_order = plug_in - 2.0 * spread_start / (k_end + total) ** 2 + variance / (k_first + total) ** 2
    upper = np.minimum(np.minimum(second_order, jensen), 1.0)
    spread_end_high = above.spread_high + np.cumsum(spread_high)
    lower_end, _ = _bounds(np.maximum(k_end, 1.0), mass_end, spread_end_high, spread_end_high, total, variance)
    return upper, np.where((k_end >= 1) & (counts > 0), lower_end, -np.inf)


def _bits_to_values(bits: np.ndarray) -> np.ndarray:
    return np.asarray(bits, dtype=np.int64).view(np.float64)


def optimal_size_window(ops: NumpyOps, flat: Any) -> SearchResult:
    """Bracket the Dice-optimal ``k >= 1`` of the map ``flat`` (flat float64 on any device)."""
    total = float(flat.sum())
    ones = ops.count(flat == 1.0)
    variance = total - ops.dot(flat, flat)
    # prod(1 - p) <= exp(-sum p) underflows to exactly 0.0 beyond sum p = 746; skip the pass then
    empty_score = 0.0 if total > 746.0 else ops.prod(1.0 - flat)
    best_lower = empty_score
    above = _Above()
    ceiling = 1.0
    values, indices = flat, None
    while total > 0.0 and values.shape[0] > CANDIDATES:
        bits = ops.bits(values)
        bit_low, bit_high = int(bits.min()), int(bits.max())
        if bit_low < 0:  # -0.0: give it the bit pattern of 0.0
            values = values + 0.0
            bits = ops.bits(values)
            bit_low = int(bits.min())
        if bit_low == bit_high:
            break
        shift = max(0, (bit_high - bit_low).bit_length() - GROUP_BITS)
        keys = bits - bit_low
        keys >>= shift
        n_groups = ((bit_high - bit_low) >> shift) + 1
        counts = ops.bincount(keys, None, n_groups)[::-1]
        sums = ops.bincount(keys, values, n_groups)[::-1]
        group_keys = np.arange(n_groups, dtype=np.int64)[::-1]
        low = _bits_to_values(bit_low + (group_keys << shift))
        high = _bits_to_values(np.minimum(bit_low + ((group_keys + 1) << shift) - 1, bit_high))
        upper, lower_end = _group_bounds(counts, sums, low, high, above, total, variance)
        best_lower = max(best_lower, float(lower_end.max()))
        kept = np.flatnonzero((counts > 0) & (upper >= best_lower - WINDOW_MARGIN))
        if kept.size == 0:  # no k >= 1 can beat the empty mask
            nothing = ops.nonzero(flat[:0] > 0.0)
            return SearchResult(total, ones, empty_score, ceiling, 0, 0.0, nothing, flat[:0], np.zeros(0), 1, 0)
        first, last = int(kept[0]), int(kept[-1])
        if first > 0:
            spread_low, spread_high = _spread_bounds(counts[:first], sums[:first], low[:first], high[:first])
            above = _Above(
                above.count + int(counts[:first].sum()),
                above.mass + float(sums[:first].sum()),
                above.spread_low + float(spread_low.sum()),
                above.spread_high + float(spread_high.sum()),
            )
            ceiling = float(high[first])
        select = (keys >= int(group_keys[last])) & (keys <= int(group_keys[first]))
        indices = ops.nonzero(select) if indices is None else indices[select]
        shrunk = int(indices.shape[0]) < int(values.shape[0])
        values = values[select]
        if not shrunk:  # the same groups again: no finer grouping can help
            break
    if indices is None:
        indices = ops.nonzero(flat == flat)
    if values.shape[0] and float(values.min()) < float(values.max()):  # one value: already in raster order
        order = ops.descending(values)
        values, indices = values[order], indices[order]
    host_values = ops.host(values)
    ks = above.count + np.arange(1, host_values.size + 1, dtype=np.float64)
    candidate_mass = np.cumsum(host_values)
    spread = np.cumsum(host_values * (1.0 - host_values))
    k_lo, k_hi = 1, 0
    if total > 0.0 and host_values.size:
        lower, upper = _bounds(
            ks, above.mass + candidate_mass, above.spread_low + spread, above.spread_high + spread, total, variance
        )
        best_lower = max(best_lower, float(lower.max()))
        inside = np.flatnonzero(upper >= best_lower - WINDOW_MARGIN)
        if inside.size:
            k_lo, k_hi = int(ks[inside[0]]), int(ks[inside[-1]])
    return SearchResult(
        total, ones, empty_score, ceiling, above.count, above.mass, indices, values, candidate_mass, k_lo, k_hi
    )
