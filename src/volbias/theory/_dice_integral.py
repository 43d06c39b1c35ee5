"""Expected Dice of hard masks as a quadrature of the probability generating function, with error bounds.

For a hard mask of ``k >= 1`` voxels and independent labels ``Y_i ~ Bernoulli(p_i)``, write
``X`` (labels inside the mask) and ``Z`` (outside).  Since ``1/a = int_0^1 t^(a-1) dt``,

    E[2X / (k + X + Z)] = 2 int_0^1 t^k P(t) dt,   P(t) = G(t) S(t) = sum_{i in mask} p_i prod_{j != i} (1 - p_j y),

with ``y = 1 - t``, ``G(t) = prod_j (1 - p_j y)`` and ``S(t) = sum_{i in mask} p_i / (1 - p_i y)``.  ``P``
is a polynomial with non-negative coefficients and ``P(1) = S1 = sum_{i in mask} p_i <= k``.  With
``t = exp(-v)``, ``v = exp(u)`` the integral becomes ``int_R f(u) du``, ``f(u) = 2 v exp(-(k+1) v) P(exp(-v))``,
taken by the trapezoid rule with step ``h = STEP`` on ``u in [log v_lo, log v_hi]``.  Every error is bounded:

1. *Discretisation.*  For ``u = x + i w`` with ``|w| < a = pi/2 - delta``, ``Re v > 0`` so ``|P(exp(-v))| <= S1``
   and ``int |f(x + i w)| dx <= 2 S1 / ((k+1) cos a) <= 2 / sin(delta)``.  The trapezoid rule on the
   whole line then errs by at most ``2 M / (exp(2 pi a / h) - 1)`` with ``M = 2 / sin(delta)``
   (Trefethen & Weideman, SIAM Review 56, 2014, Thm 5.1): ``6e-17`` for ``h = 0.2``, ``delta = 0.3``.
2. *Lower cut.*  ``f(u) <= 2 S1 v``, so the nodes below ``v_lo`` add at most
   ``2 S1 v_lo h / (1 - exp(-h)) = LOWER_CUT`` for ``v_lo = LOWER_CUT (1 - exp(-h)) / (2 h S1)``.
3. *Upper cut.*  With ``n1`` voxels at ``p = 1`` (factor ``t``), ``mu' = sum_{0 < p < 1} p`` and
   ``1 - p y <= exp(-p y)``, every term of ``P`` is at most ``p_i e^y t^max(n1-1, 0) exp(-mu' y)``, so
   ``f(u) <= 2 e S1 v exp(-phi(v))`` with ``phi(v) = K' v + mu' y`` and ``K' = k + max(n1, 1)``.  Let
   ``phi(v_hi) = LAMBDA``.  For ``v >= v_hi``, ``v phi'(v) >= min(K', phi(v) / e) >= 1`` (using ``y <= v``),
   so the bound is non-increasing there, and the nodes above ``v_hi`` add at most
   ``2 e S1 exp(-LAMBDA) (h v_hi + 1 / K') <= 2 e (1 + h LAMBDA) exp(-LAMBDA) < 3e-16``.
4. *Compression of G and S* (:class:`VoxelSummary`): voxels with ``p > LARGE_RATIO / y_max`` (at most
   ``LAMBDA / LARGE_RATIO = 2560`` of them, because ``mu' y_max <= phi(v_hi) = LAMBDA``) enter exactly;
   the others, with ``p y <= LARGE_RATIO``, through the power sums ``sum p^m``, each voxel up to (at
   least) the first order ``M`` with ``(p y_max)^M <= ORDER_CUT``.  The dropped series tails change
   ``log G`` by at most ``sum (p y)^(M+1) / ((M+1)(1 - p y)) <= mu' y ORDER_CUT / (2 (1 - LARGE_RATIO))
   < 3e-15`` and ``S`` by at most ``S1 ORDER_CUT / (1 - LARGE_RATIO)``; as ``2 int t^k G dt <= 2 / (k+1)``,
   the integral moves by less than ``3e-15 + 3e-16``.
5. *Lower-tail expansion* (:func:`top_k_curve`): on the nodes with ``(k_max + 1) v <= c <= 1`` the factors
   ``exp(-(k+1) v)`` and ``p / (1 - p y)`` are replaced by Taylor polynomials (in ``k + 1`` of degree
   ``n`` with ``c^(n+1) / (n+1)! <= 1e-17``, and in ``y`` of degree 2), which errs by at most
   ``0.74 k v_a^4 + 3e-17`` with ``v_a = c / (k_max + 1)``; ``c`` is chosen to make this ``<= 1e-16``.

In all, the absolute error is below ``1e-14`` plus the floating-point rounding of the sums over
voxels (relative ``~ 2^-53 log2 N`` for each pairwise sum and ``2^-53 (B + N / B)`` for the blocked
running sums of :func:`top_k_curve`), about ``1e-13`` at ``N = 10^7``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from volbias.theory._arrays import NumpyOps

STEP = 0.2
LAMBDA = 40.0
LOWER_CUT = 1e-16
LARGE_RATIO = 1.0 / 64.0
ORDER_CUT = 1e-16
TAYLOR_CUT = 1e-17
BLOCK = 16_384


@dataclass(frozen=True)
class VoxelSummary:
    """``sum log(1 - p y)`` and ``sum p / (1 - p y)`` over a set of voxels, for every ``y <= y_max``.

    ``ones`` voxels have ``p = 1`` (exactly ``log t`` and ``1 / t``), ``large`` holds the values above
    ``LARGE_RATIO / y_max`` (exact), and ``power_sums[m - 1]`` is ``sum p^m`` over (at least) the
    remaining voxels with ``(p y_max)^(m-1) > ORDER_CUT``; voxels at ``p = 0`` add nothing.
    """

    ones: int
    large: np.ndarray
    power_sums: np.ndarray

    @property
    def mass(self) -> float:
        """``sum p`` over the voxels."""
        return self.ones + float(self.large.sum()) + (float(self.power_sums[0]) if self.power_sums.size else 0.0)

    def merged(self, other: VoxelSummary) -> VoxelSummary:
        """The summary of both voxel sets (built for the same ``y_max``)."""
        size = max(self.power_sums.size, other.power_sums.size)
        sums = np.zeros(size)
        sums[: self.power_sums.size] += self.power_sums
        sums[: other.power_sums.size] += other.power_sums
        return VoxelSummary(self.ones + other.ones, np.concatenate([self.large, other.large]), sums)

    def log_g(self, v: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``sum log(1 - p y)`` at the nodes (``y = 1 - exp(-v)``)."""
        out = -self.ones * v
        if self.large.size:
            out = out + np.log1p(-np.multiply.outer(y, self.large)).sum(axis=1)
        series = np.zeros_like(y)
        for m in range(self.power_sums.size, 0, -1):
            series = (series + self.power_sums[m - 1] / m) * y
        return out - series

    def s(self, v: np.ndarray, y: np.ndarray) -> np.ndarray:
        """``sum p / (1 - p y)`` at the nodes."""
        out = self.ones * np.exp(v)
        if self.large.size:
            t = np.exp(-v)
            out = out + (self.large / ((1.0 - self.large) + np.multiply.outer(t, self.large))).sum(axis=1)
        series = np.zeros_like(y)
        for m in range(self.power_sums.size, 0, -1):
            series = series * y + self.power_sums[m - 1]
        return out + series


class _Accumulator:
    """Running counts, large values and power sums of the voxels seen so far (one :class:`VoxelSummary`)."""

    def __init__(self, y_max: float, top: float) -> None:
        self.cut = LARGE_RATIO / y_max
        self.thresholds = []  # voxel enters order m >= 2 when p > thresholds[m - 2]
        while len(self.thresholds) < 64:
            threshold = ORDER_CUT ** (1.0 / (len(self.thresholds) + 1)) / y_max
            if threshold >= min(top, self.cut):
                break
            self.thresholds.append(threshold)
        self.ones = 0
        self.large: list[np.ndarray] = []
        self.sums = np.zeros(len(self.thresholds) + 1)

    def add(self, ops: NumpyOps, values: Any, may_hold_ones: bool) -> None:
        """Take in a chunk of values (flat float64, any device)."""
        ones = ops.count(values == 1.0) if may_hold_ones else 0
        self.ones += ones
        if self.cut < 1.0:
            self.large.append(ops.host(values[(values > self.cut) & (values < 1.0)]))
            small = values[values <= self.cut]
        else:
            small = values[values < 1.0] if ones else values
        if small.shape[0] == 0:
            return
        self.sums[0] += float(small.sum())
        active, power = small, None  # power: p^(m-1) on the active voxels, from m = 3 on
        bottom = float(active.min())
        for m, threshold in enumerate(self.thresholds, start=2):
            if threshold >= bottom:
                needed = active > threshold
                remaining = ops.count(needed)
                if remaining == 0:
                    return
                if 2 * remaining < int(active.shape[0]):  # compact only when it halves the work
                    active = active[needed]
                    power = None if power is None else power[needed]
                    bottom = float(active.min())
            if m == 2:
                self.sums[1] += ops.dot(active, active)
                continue
            if power is None:
                power = active * active
            else:
                power *= active
            self.sums[m - 1] += ops.dot(power, active)

    def summary(self) -> VoxelSummary:
        large = np.concatenate(self.large) if self.large else np.zeros(0)
        return VoxelSummary(self.ones, np.asarray(large, dtype=np.float64), self.sums)


def summarise(ops: NumpyOps, values: Any, y_max: float, inside: Any | None = None) -> tuple[VoxelSummary, VoxelSummary]:
    """Summaries of all ``values`` and of those where the boolean ``inside`` holds, in one chunked pass.

    Each voxel stays in the power sums up to the first order ``m`` with ``(p y_max)^m <= ORDER_CUT``
    (or a little longer: compacting the active voxels only pays when it halves them).
    """
    n = int(values.shape[0])
    top = float(values.max()) if n else 0.0
    everything, selected = _Accumulator(y_max, top), _Accumulator(y_max, top)
    for start in range(0, n, ops.chunk):
        chunk = values[start : start + ops.chunk]
        everything.add(ops, chunk, top == 1.0)
        if inside is not None:
            selected.add(ops, chunk[inside[start : start + ops.chunk]], top == 1.0)
    return everything.summary(), selected.summary()


@dataclass(frozen=True)
class Nodes:
    """Trapezoid nodes ``v = exp(log v_lo + j h)`` up to ``v_hi``, with ``y = 1 - exp(-v)``."""

    v: np.ndarray
    y: np.ndarray
    y_max: float

    @classmethod
    def for_masks(cls, k_first: int, ones: int, fractional_mass: float, s1_max: float) -> Nodes:
        """Nodes that serve every mask of ``k >= k_first`` voxels with ``sum_{mask} p <= s1_max``.

        Their ``y_max`` is :func:`largest_y` of the same ``k_first``, ``ones`` and ``fractional_mass``.
        """
        v_hi = upper_node(k_first, ones, fractional_mass)
        v_lo = LOWER_CUT * (-math.expm1(-STEP)) / (2.0 * STEP * s1_max)
        count = int(math.floor((math.log(v_hi) - math.log(v_lo)) / STEP)) + 1
        v = np.exp(math.log(v_lo) + STEP * np.arange(count))
        return cls(v, -np.expm1(-v), -math.expm1(-v_hi))


def upper_node(k: int, ones: int, fractional_mass: float) -> float:
    """``v_hi >= `` the root of ``K' v + mu' (1 - exp(-v)) = LAMBDA``, ``K' = k + max(ones, 1)`` (bisection)."""
    k_prime = k + max(ones, 1)

    def phi(v: float) -> float:
        return k_prime * v - fractional_mass * math.expm1(-v)

    low, high = 0.0, LAMBDA / k_prime
    for _ in range(200):
        middle = 0.5 * (low + high)
        if middle <= low or middle >= high:
            break
        if phi(middle) >= LAMBDA:
            high = middle
        else:
            low = middle
    return high


def largest_y(k_first: int, ones: int, fractional_mass: float) -> float:
    """``y`` at the last node for masks of ``k >= k_first`` voxels: the ``y_max`` of the voxel summaries."""
    return -math.expm1(-upper_node(k_first, ones, fractional_mass))


def last_mask_size(v: np.ndarray, y: np.ndarray, ones: int, fractional_mass: float) -> np.ndarray:
    """For each node, the largest ``k`` whose upper cut ``v_hi(k)`` still lies at or above it."""
    reach = np.floor((LAMBDA - fractional_mass * y) / v - max(ones, 1))
    return np.clip(reach, -1.0, 2.0**62).astype(np.int64)


def top_k_curve(
    ops: NumpyOps,
    g: VoxelSummary,
    base: VoxelSummary,
    window: Any,
    k0: int,
    nodes: Nodes,
    ones: int,
    fractional_mass: float,
) -> np.ndarray:
    """``E[Dice]`` of the masks ``base + window[:i]`` (``k = k0 + i`` voxels) for ``i = 1 .. len(window)``.

    ``g`` summarises all voxels, ``base`` the ``k0`` voxels every mask holds; ``window`` (flat float64,
    on the map's device) lists the voxels added one by one.  ``nodes`` must serve ``k >= k0 + 1`` and
    the largest ``S1``.  Cost: ``O(len(window))`` per node that matters for some ``k`` of the window,
    plus the lower-tail expansion (module docstring, item 5).
    """
    width = int(window.shape[0])
    k_max = k0 + width
    v, y = nodes.v, nodes.y
    log_weight = np.log(2.0 * STEP * v) + g.log_g(v, y)
    s_base = base.s(v, y)
    reach = last_mask_size(v, y, ones, fractional_mass)
    scale = min(1.0, (1e-16 * (k_max + 1.0) ** 3 / 0.74) ** 0.25)
    low = v <= scale / (k_max + 1.0)
    degree = next(n for n in range(1, 60) if scale ** (n + 1) / math.factorial(n + 1) <= TAYLOR_CUT)
    tail = _tail_polynomials(v[low], y[low], np.exp(log_weight[low]), s_base[low], degree)
    middle = np.flatnonzero(~low & (reach >= k0 + 1))
    carries = {int(j): float(s_base[j]) for j in middle}
    values = np.zeros(width)
    power_carries = [0.0, 0.0, 0.0]
    for start in range(0, width, BLOCK):
        stop = min(width, start + BLOCK)
        block = window[start:stop]
        complement = 1.0 - block
        next_k = ops.to_device(np.arange(k0 + start + 2, k0 + stop + 2, dtype=np.float64), block)
        out = ops.to_device(np.zeros(stop - start), block)
        for j in middle:
            count = min(stop, int(reach[j]) - k0) - start
            if count <= 0:
                continue
            q = block[:count] / (complement[:count] + block[:count] * math.exp(-float(v[j])))
            running = ops.cumsum(q) + carries[j]
            carries[j] = float(running[-1])
            out[:count] += ops.exp(next_k[:count] * -float(v[j]) + float(log_weight[j])) * running
        x = -next_k
        out += _horner(tail[0], x)
        powers = block
        for m in range(1, 4):
            running = ops.cumsum(powers) + power_carries[m - 1]
            power_carries[m - 1] = float(running[-1])
            out += running * _horner(tail[m], x)
            powers = powers * block
        values[start:stop] = ops.host(out)
    return values


def _tail_polynomials(
    v: np.ndarray, y: np.ndarray, weight: np.ndarray, s_base: np.ndarray, degree: int
) -> np.ndarray:
    """Coefficients ``a[m, n] = sum_j weight_j w_m(j) v_j^n / n!`` with ``w = (s_base, 1, y, y^2)``."""
    factors = np.stack([s_base, np.ones_like(y), y, y * y])
    powers = np.power.outer(v, np.arange(degree + 1)) / np.array([math.factorial(n) for n in range(degree + 1)])
    return (factors * weight) @ powers


def _horner(coefficients: np.ndarray, x: Any) -> Any:
    """``sum_n coefficients[n] x^n`` for an array ``x`` of any kind."""
    out = x * 0.0 + float(coefficients[-1])
    for c in coefficients[-2::-1]:
        out = out * x + float(c)
    return out


def expected_dice_of_mask(ops: NumpyOps, flat: Any, inside: Any, k: int, ones: int, total: float) -> float:
    """``E[Dice]`` of the mask ``inside`` (boolean, ``k >= 1`` voxels) on the map ``flat``."""
    fractional_mass = total - ones
    g, summary_in = summarise(ops, flat, largest_y(k, ones, fractional_mass), inside)
    s1 = summary_in.mass
    if s1 == 0.0:
        return 0.0
    nodes = Nodes.for_masks(k, ones, fractional_mass, s1)
    integrand = np.exp(np.log(2.0 * STEP * nodes.v) - (k + 1) * nodes.v + g.log_g(nodes.v, nodes.y))
    return float(np.sum(integrand * summary_in.s(nodes.v, nodes.y)))
