"""Temperature scaling [guo2017calibration] of a binary probability map: ``s_T = sigmoid(logit(p) / T)``.

``T`` is the single parameter; it is fitted on training-fold voxels by minimising the mean negative
log-likelihood (binary cross-entropy) with :func:`scipy.optimize.minimize_scalar` over ``log T``.
Probability maps are stored as float16, which resolves values near 1 only to about 5e-4, so
probabilities are clipped to ``[clip, 1 - clip]`` before taking logits.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_expit

DEFAULT_CLIP = 1e-4
_LOG_T_BOUNDS = (np.log(0.02), np.log(50.0))


def prob_to_logit(prob: np.ndarray, clip: float = DEFAULT_CLIP) -> np.ndarray:
    """Logits of probabilities clipped to ``[clip, 1 - clip]`` (float64)."""
    if not 0 < clip < 0.5:
        raise ValueError(f"clip must lie in (0, 0.5), got {clip}")
    p = np.clip(np.asarray(prob, dtype=np.float64), clip, 1 - clip)
    return np.log(p) - np.log1p(-p)


def apply_temperature(
    prob: np.ndarray, temperature: float, mask: np.ndarray | None = None, clip: float = DEFAULT_CLIP
) -> np.ndarray:
    """Temperature-scaled probabilities ``sigmoid(logit(prob) / T)``; zero outside ``mask`` when given."""
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature must be a positive number, got {temperature}")
    scaled = expit(prob_to_logit(prob, clip) / temperature)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != scaled.shape:
            raise ValueError(f"mask shape {mask.shape} differs from probability map {scaled.shape}")
        scaled = np.where(mask, scaled, 0.0)
    return scaled


def _pooled_logits(
    probs: Sequence[np.ndarray], labels: Sequence[np.ndarray], masks: Sequence[np.ndarray] | None, clip: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique logits with their voxel counts and summed labels over all masked voxels."""
    if len(probs) == 0 or len(probs) != len(labels) or (masks is not None and len(masks) != len(probs)):
        raise ValueError("probs, labels (and masks) must be non-empty sequences of equal length")
    values, targets = [], []
    for k, (p, y) in enumerate(zip(probs, labels)):
        p, y = np.asarray(p), np.asarray(y, dtype=np.float64)
        if p.shape != y.shape:
            raise ValueError(f"case {k}: probability map {p.shape} and label {y.shape} differ in shape")
        keep = np.ones(p.shape, bool) if masks is None else np.asarray(masks[k], dtype=bool)
        values.append(p[keep].astype(np.float64))
        targets.append(y[keep])
    logits = prob_to_logit(np.concatenate(values), clip)
    target = np.concatenate(targets)
    if np.any((target < 0) | (target > 1)):
        raise ValueError("labels must lie in [0, 1]")
    unique, inverse = np.unique(logits, return_inverse=True)
    return unique, np.bincount(inverse).astype(np.float64), np.bincount(inverse, weights=target)


def fit_temperature(
    probs: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    masks: Sequence[np.ndarray] | None = None,
    clip: float = DEFAULT_CLIP,
) -> float:
    """Temperature ``T`` minimising the mean NLL of ``sigmoid(logit(p) / T)`` against ``labels``.

    ``probs``, ``labels`` and ``masks`` are per-case arrays of the training folds; labels may be soft.
    Voxels are pooled (weighted equally); duplicated logits, frequent in float16 maps, are grouped so
    the fit costs one pass over the unique values per step.
    """
    logits, counts, positives = _pooled_logits(probs, labels, masks, clip)
    total = counts.sum()
    if total == 0:
        raise ValueError("no voxels inside the masks to fit a temperature")

    def nll(log_t: float) -> float:
        z = logits / np.exp(log_t)
        return float(-(positives * log_expit(z) + (counts - positives) * log_expit(-z)).sum() / total)

    result = minimize_scalar(nll, bounds=_LOG_T_BOUNDS, method="bounded", options={"xatol": 1e-4})
    return float(np.exp(result.x))
