"""Classic illustrations: a disk (2D) or sphere (3D) of radius R whose boundary is uncertain.

The marginals are ``p_i = Phi((R - d_i) / sigma)`` with ``d_i`` the distance of voxel centre ``i``
to the object's centre: the probability that a boundary at radius ``R + delta``,
``delta ~ N(0, sigma^2)``, encloses the voxel.  The same marginals describe two label models:
independent voxels (``Y_i ~ Bernoulli(p_i)``) and the correlated random boundary shift
(:mod:`volbias.theory.boundary_shift`).
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def centre_distances(radius: float, sigma: float, dims: int = 2, margin: float = 6.0) -> np.ndarray:
    """Distances of the voxel centres of a cubic grid to its centre (unit voxels).

    The grid has side ``2 ceil(radius + margin sigma) + 1`` so that it holds the object and
    ``margin`` standard deviations of its boundary.
    """
    if dims not in (1, 2, 3):
        raise ValueError(f"dims: expected 1, 2 or 3, got {dims}")
    if radius <= 0 or sigma < 0:
        raise ValueError(f"radius must be positive and sigma non-negative, got {radius}, {sigma}")
    half = int(np.ceil(radius + margin * sigma)) + 1
    axis = np.arange(-half, half + 1, dtype=np.float64)
    grids = np.meshgrid(*([axis] * dims), indexing="ij")
    return np.sqrt(sum(g**2 for g in grids))


def blurred_ball(radius: float, sigma: float, dims: int = 2, margin: float = 6.0) -> np.ndarray:
    """Marginals ``Phi((R - d) / sigma)`` of a disk (``dims=2``) or sphere (``dims=3``) of radius ``R``.

    ``sigma = 0`` gives the hard ball ``d < R``.  Distances and radius are in voxels.
    """
    d = centre_distances(radius, sigma, dims, margin)
    if sigma == 0:
        return (d < radius).astype(np.float64)
    return stats.norm.cdf((radius - d) / sigma)


def blurred_disk(radius: float, sigma: float, margin: float = 6.0) -> np.ndarray:
    """2D blurred disk, see :func:`blurred_ball`."""
    return blurred_ball(radius, sigma, 2, margin)


def blurred_sphere(radius: float, sigma: float, margin: float = 6.0) -> np.ndarray:
    """3D blurred sphere, see :func:`blurred_ball`."""
    return blurred_ball(radius, sigma, 3, margin)
