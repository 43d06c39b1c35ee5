"""Reference implementation of the expected Dice under independent labels (the library's earlier version).

Kept for the tests and the benchmark as an independent computation of the same quantities by other
means: ``reference_expected_dice`` sums over the two Poisson-binomial pmf's (FFT products), and
``reference_expected_dice_topk`` integrates the generating function with every voxel at every one of
about 300 quadrature nodes.  Both are exact to about ``1e-12`` but cost ``O(N log^2 N)`` and
``O(300 N)``; they are not part of the library.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from volbias.theory.poisson_binomial import poisson_binomial_pmf

QUADRATURE_STEP = 0.15


def reference_expected_dice(mask: np.ndarray, p: np.ndarray) -> float:
    """E[2X / (k + X + Z)] from the pmf's of X (labels inside the mask) and Z (outside); prod(1 - p) if k = 0."""
    p = np.asarray(p, dtype=np.float64).ravel()
    mask = np.asarray(mask, dtype=bool).ravel()
    k = int(mask.sum())
    if k == 0:
        return float(np.prod(1.0 - p))
    offset_x, pmf_x = poisson_binomial_pmf(p[mask])
    offset_z, pmf_z = poisson_binomial_pmf(p[~mask])
    lowest = k + offset_x + offset_z
    h = 1.0 / (lowest + np.arange(pmf_x.size + pmf_z.size - 1))
    g = signal.convolve(h, pmf_z[::-1], mode="valid")
    x = offset_x + np.arange(pmf_x.size)
    return float(np.sum(pmf_x * 2.0 * x * g))


def reference_expected_dice_topk(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(order, E)``: stable decreasing order of ``p`` and the expected Dice of every top-k mask, k = 0..N."""
    p = np.asarray(p, dtype=np.float64).ravel()
    n = p.size
    order = np.argsort(-p, kind="stable")
    ps = p[order]
    values = np.zeros(n + 1)
    values[0] = np.prod(1.0 - p)
    if n == 0:
        return order, values
    k = np.arange(1, n + 1)
    u_min, u_max = np.log(1e-16 / (2.0 * n)), np.log(40.0)
    with np.errstate(divide="ignore"):
        for u in np.arange(u_min, u_max + QUADRATURE_STEP, QUADRATURE_STEP):
            v = np.exp(u)
            t = np.exp(-v)
            factors = (1.0 - ps) + ps * t
            log_g = np.sum(np.log(factors))
            log_s = np.log(np.cumsum(ps / factors))
            values[1:] += QUADRATURE_STEP * 2.0 * np.exp(u - (k + 1) * v + log_g + log_s)
    return order, values


def reference_dice_optimal_mask(p: np.ndarray) -> np.ndarray:
    """Top-k mask by ``p`` (ties in raster order) for the smallest k whose E[Dice] is within 1e-12 of the best."""
    p = np.asarray(p, dtype=np.float64)
    order, values = reference_expected_dice_topk(p)
    k = int(np.flatnonzero(values >= values.max() - 1e-12)[0])
    mask = np.zeros(p.size, dtype=bool)
    mask[order[:k]] = True
    return mask.reshape(p.shape)
