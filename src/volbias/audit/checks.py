"""Checks of the audit's inputs: probability range, matching grids, reference label values.

Each check raises :class:`AuditError` with one line naming the file and the problem.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from volbias.audit.errors import AuditError
from volbias.audit.readers import Volume

SPACING_TOLERANCE_MM = 1e-3
"""Largest difference of a voxel size (mm) between a prediction and its reference still read as equal."""
RANGE_TOLERANCE = 1e-6
"""Probabilities within this distance outside [0, 1] (float round-off of a softmax) are clipped, not refused."""


def check_probabilities(volume: Volume) -> np.ndarray:
    """The map clipped to [0, 1]; AuditError when it holds NaN or values outside [0, 1]."""
    data = volume.data
    if np.isnan(data).any():
        raise AuditError(f"{volume.path}: probability map contains NaN")
    low, high = float(data.min()), float(data.max())
    if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        raise AuditError(f"{volume.path}: probabilities outside [0, 1] (min {low:g}, max {high:g}); "
                         "pass probabilities, not logits or labels")
    return np.clip(data, 0.0, 1.0) if low < 0 or high > 1 else data


def check_same_grid(volume: Volume, reference: Volume) -> None:
    """AuditError when ``volume``'s shape or voxel spacing differs from its reference's."""
    if volume.data.shape != reference.data.shape:
        raise AuditError(f"{volume.path}: shape {volume.data.shape} differs from its reference "
                         f"{reference.path} {reference.data.shape}")
    if not np.allclose(volume.spacing, reference.spacing, rtol=0, atol=SPACING_TOLERANCE_MM):
        mine = ", ".join(f"{s:g}" for s in volume.spacing)
        theirs = ", ".join(f"{s:g}" for s in reference.spacing)
        raise AuditError(f"{volume.path}: voxel spacing ({mine}) mm differs from its reference "
                         f"{reference.path} ({theirs}) mm")


def foreground(volume: Volume, labels: Sequence[int] | None = None) -> np.ndarray:
    """The reference's foreground mask: voxels equal to one of ``labels``, or the 1s of a binary map.

    AuditError for NaN or non-integer values (a probability map given as reference) and, without
    ``labels``, for values other than 0 and 1 (a multi-class map needs ``--label``).
    """
    data = volume.data
    if data.dtype.kind == "f":
        if not np.isfinite(data).all():
            raise AuditError(f"{volume.path}: reference contains NaN or infinite values")
        if not np.array_equal(data, np.round(data)):
            raise AuditError(f"{volume.path}: reference holds non-integer values; expected a label map")
    elif data.dtype.kind not in "iub":
        raise AuditError(f"{volume.path}: reference of data type {data.dtype}; expected integer labels")
    if labels is not None:
        return np.isin(data, np.asarray(labels))
    binary = (data == 0) | (data == 1)
    if not binary.all():
        values = ", ".join(f"{v:g}" for v in np.unique(data)[:8].tolist())
        raise AuditError(f"{volume.path}: reference holds the labels {{{values}}}; name the foreground "
                         "label(s) with --label")
    return data == 1
