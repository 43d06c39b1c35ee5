"""Synthetic phantoms: blobs whose labels are drawn from known voxel marginals (inherent uncertainty).

For a blob of radius R centred at c, a voxel at distance d = |x - c| is foreground with probability
p = Phi((R - d) / sigma). Two label models share these marginals:
- noise="independent": every voxel is an independent Bernoulli(p) draw;
- noise="shift": one random radius R + delta, delta ~ N(0, sigma^2), per blob and per draw, so that
  P(d < R + delta) = Phi((R - d) / sigma) while the voxels of a blob are perfectly correlated.
Blobs are drawn independently, so with several blobs p = 1 - prod_b (1 - p_b) exactly under both models.
The image is contrast * p plus Gaussian noise (standard deviation image_noise).
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from .case import Case
from .errors import DataError

NOISE_MODELS = ("independent", "shift")
_STREAM_KEYS = {"test": 1}  # random streams independent of a seed's default stream


def _blob_probability(dist: np.ndarray, radius: float, sigma: float) -> np.ndarray:
    if sigma == 0:
        return (dist < radius).astype(np.float64)
    return ndtr((radius - dist) / sigma)


def _check(dims: int, radius: float, sigma: float, noise: str, n_cases: int, size: int, n_raters: int,
           n_blobs: int) -> None:
    if dims not in (2, 3):
        raise DataError(f"option dims={dims!r}: must be 2 or 3")
    if noise not in NOISE_MODELS:
        raise DataError(f"option noise={noise!r}: must be one of {', '.join(NOISE_MODELS)}")
    if sigma < 0 or radius <= 0:
        raise DataError(f"option radius={radius!r}, sigma={sigma!r}: need radius > 0 and sigma >= 0")
    if min(n_cases, n_raters, n_blobs) < 1:
        raise DataError("options n_cases, n_raters, n_blobs: must be at least 1")
    if 2 * (1.5 * radius + 2 * sigma) >= size:
        raise DataError(f"option size={size}: too small for radius {radius} and sigma {sigma}")


def make_phantoms(dims: int = 2, radius: float | None = None, sigma: float = 1.5, noise: str = "independent",
                  n_cases: int = 40, size: int | None = None, contrast: float = 1.0, image_noise: float = 0.1,
                  n_raters: int = 4, n_blobs: int = 3, seed: int = 0, stream: str = "") -> list[Case]:
    """`n_cases` phantoms with exact marginals and `n_raters` label draws each (label = first draw).

    Defaults: 2D 64 x 64 images (3D: 32^3) with 3 blobs of radius uniform in [0.5, 1.5] x radius
    (radius: 6 voxels in 2D, 4 in 3D). Deterministic given `seed`. A non-empty `stream` (e.g. "test")
    draws from a random stream independent of the default one and prefixes the case ids with it.
    """
    size = int(size if size is not None else (64 if dims == 2 else 32))
    radius = float(radius if radius is not None else (6.0 if dims == 2 else 4.0))
    _check(dims, radius, float(sigma), noise, n_cases, size, n_raters, n_blobs)
    rng = np.random.default_rng([seed, _STREAM_KEYS[stream]]) if stream else np.random.default_rng(seed)
    prefix = f"synthetic_{stream}_" if stream else "synthetic_"
    grid = np.stack(np.meshgrid(*[np.arange(size, dtype=np.float64)] * dims, indexing="ij"))
    cases = []
    for k in range(n_cases):
        radii = rng.uniform(0.5 * radius, 1.5 * radius, size=n_blobs)
        centres = [rng.uniform(r + 2 * sigma, size - 1 - r - 2 * sigma, size=dims) for r in radii]
        dists = [np.sqrt(((grid - c.reshape((dims,) + (1,) * dims)) ** 2).sum(0)) for c in centres]
        outside = np.ones((size,) * dims)
        for d, r in zip(dists, radii):
            outside *= 1.0 - _blob_probability(d, r, sigma)
        p = 1.0 - outside
        if noise == "independent":
            raters = rng.random((n_raters, *p.shape)) < p
        else:
            raters = np.zeros((n_raters, *p.shape), dtype=bool)
            for j in range(n_raters):
                for d, r in zip(dists, radii):
                    raters[j] |= d < r + sigma * rng.standard_normal()
        image = contrast * p + image_noise * rng.standard_normal(p.shape)
        raters_f = raters.astype(np.float32)
        cases.append(Case(
            id=f"{prefix}{k:03d}", image=image[None].astype(np.float32), label=raters_f[0].copy(),
            mask=np.ones(p.shape, dtype=bool), spacing=(1.0,) * dims, spacing_known=False, raters=raters_f,
            marginals=p.astype(np.float32),
            meta={"radii": radii.tolist(), "centres": [c.tolist() for c in centres], "sigma": float(sigma),
                  "noise": noise, "grid": "voxels"},
        ))
    return cases


def draw_labels(case: Case, n_draws: int, rng: np.random.Generator) -> np.ndarray:
    """``n_draws`` fresh label draws (bool, shape (n_draws, *spatial)) of a phantom, from its own label model.

    Independent noise draws every voxel from Bernoulli(p); shift noise draws one radius per blob and draw,
    from the blob geometry stored in ``case.meta``.
    """
    if case.marginals is None or case.meta.get("noise") not in NOISE_MODELS:
        raise DataError(f"case {case.id}: not a synthetic phantom (no label model)")
    p = case.marginals.astype(np.float64)
    if case.meta["noise"] == "independent":
        return rng.random((n_draws, *p.shape)) < p
    dims = p.ndim
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in p.shape], indexing="ij"))
    sigma = float(case.meta["sigma"])
    labels = np.zeros((n_draws, *p.shape), dtype=bool)
    for centre, radius in zip(case.meta["centres"], case.meta["radii"]):
        dist = np.sqrt(((grid - np.reshape(centre, (dims,) + (1,) * dims)) ** 2).sum(0))
        shifts = radius + sigma * rng.standard_normal(n_draws)
        labels |= dist[None] < shifts.reshape((n_draws,) + (1,) * dims)
    return labels
