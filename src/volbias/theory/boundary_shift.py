"""Correlated labels: a random boundary shift with the same marginals as independent voxels.

The reference object is ``{i : d_i < R + delta}``, ``delta ~ N(0, sigma^2)``, for voxel-centre
distances ``d_i`` (see :mod:`volbias.theory.phantoms`).  Its marginals ``Phi((R - d_i)/sigma)``
equal those of the independent model, but the voxels now co-vary.  Sorting voxels by ``d`` makes
every reference a prefix of the order, so a top-k mask and a reference of ``m`` voxels overlap in
``min(k, m)`` voxels and

    E[Dice(top-k)] = sum_j P(m = j) 2 min(k, j) / (k + j),   P(m >= j) = p_(j),

with the convention Dice = 1 when ``k = m = 0``.  This is exact (no sampling); the search for the
Dice-optimal mask is over this nested family of top-k masks (disks/spheres around the centre).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from volbias.theory.phantoms import centre_distances

_SUPPORT_TOL = 1e-16
_CHUNK = 2048


def shift_marginals(distances: np.ndarray, radius: float, sigma: float) -> np.ndarray:
    """Marginals ``P(d_i < R + delta) = Phi((R - d_i) / sigma)`` of the boundary-shift model."""
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    return stats.norm.cdf((radius - np.asarray(distances, float)) / sigma)


def sample_shift_labels(
    distances: np.ndarray, radius: float, sigma: float, n_samples: int, seed: int = 0
) -> np.ndarray:
    """Draw ``n_samples`` reference masks ``d < R + delta`` (boolean, shape ``(n_samples, *d.shape)``)."""
    delta = np.random.default_rng(seed).normal(0.0, sigma, size=n_samples)
    d = np.asarray(distances, float)
    return d[None, ...] < (radius + delta).reshape((-1,) + (1,) * d.ndim)


def shift_expected_dice_topk(distances: np.ndarray, radius: float, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact expected Dice of every top-k mask under the boundary shift: ``(order, E)``, ``E[k]`` for ``k = 0..N``.

    ``order`` lists flat voxel indices by increasing distance (stable); the top-k mask is ``order[:k]``.
    """
    d = np.asarray(distances, float).ravel()
    order = np.argsort(d, kind="stable")
    n = d.size
    survival = np.concatenate([[1.0], shift_marginals(d[order], radius, sigma), [0.0]])
    p_m = survival[:-1] - survival[1:]  # P(m = j), j = 0..n
    support = np.flatnonzero(p_m > _SUPPORT_TOL)
    j, weight = support.astype(float), p_m[support]
    values = np.empty(n + 1)
    for start in range(0, n + 1, _CHUNK):
        k = np.arange(start, min(start + _CHUNK, n + 1), dtype=float)[:, None]
        total = k + j[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            dice = np.where(total > 0, 2.0 * np.minimum(k, j[None, :]) / total, 1.0)
        values[start : start + k.shape[0]] = dice @ weight
    return order, values


def shift_dice_optimal_mask(distances: np.ndarray, radius: float, sigma: float) -> np.ndarray:
    """Top-k mask (by distance) maximising the exact expected Dice under the boundary shift."""
    d = np.asarray(distances, float)
    order, values = shift_expected_dice_topk(d, radius, sigma)
    k = int(np.flatnonzero(values >= values.max() - 1e-12)[0])
    mask = np.zeros(d.size, dtype=bool)
    mask[order[:k]] = True
    return mask.reshape(d.shape)


def shift_disk(radius: float, sigma: float, dims: int = 2, margin: float = 6.0) -> tuple[np.ndarray, np.ndarray]:
    """Distances and marginals of a disk/sphere with a shifted boundary: ``(distances, p)``."""
    d = centre_distances(radius, sigma, dims, margin)
    return d, shift_marginals(d, radius, sigma)
