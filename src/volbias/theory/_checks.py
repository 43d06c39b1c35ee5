"""Input validation shared by the theory modules."""

from __future__ import annotations

import numpy as np


def as_probabilities(p: np.ndarray, name: str = "p") -> np.ndarray:
    """Return ``p`` as a float64 array, raising a one-line error unless all values lie in [0, 1]."""
    arr = np.asarray(p, dtype=np.float64)
    if arr.size and not (np.all(np.isfinite(arr)) and arr.min() >= 0.0 and arr.max() <= 1.0):
        raise ValueError(f"{name}: probabilities must be finite and lie in [0, 1]")
    return arr


def as_mask(mask: np.ndarray, shape: tuple[int, ...], name: str = "mask") -> np.ndarray:
    """Return ``mask`` as a boolean array of the given shape (values must be 0/1)."""
    arr = np.asarray(mask)
    if arr.shape != shape:
        raise ValueError(f"{name}: shape {arr.shape} differs from the probability map's {shape}")
    if arr.dtype != bool:
        if arr.size and not np.all((arr == 0) | (arr == 1)):
            raise ValueError(f"{name}: a hard mask must hold only 0 and 1")
        arr = arr.astype(bool)
    return arr


def descending_order(p: np.ndarray) -> np.ndarray:
    """Flat indices of ``p`` sorted by decreasing value; ties keep their raster order (stable)."""
    return np.argsort(-p.ravel(), kind="stable")
