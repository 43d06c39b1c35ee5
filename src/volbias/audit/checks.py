"""Checks of the audit's inputs: probability range, binary maps, reference label values.

Each check raises :class:`AuditError` with one line naming the file and the problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from volbias.audit.errors import AuditError
from volbias.audit.readers import Volume

RANGE_TOLERANCE = 1e-6
"""Probabilities within this distance outside [0, 1] (float round-off of a softmax) are clipped, not refused."""


def check_probabilities(prob: np.ndarray, path: Path) -> np.ndarray:
    """The map clipped to [0, 1]; AuditError when it holds NaN or values outside [0, 1]."""
    if np.isnan(prob).any():
        raise AuditError(f"{path}: probability map contains NaN")
    low, high = float(prob.min()), float(prob.max())
    if low < -RANGE_TOLERANCE or high > 1 + RANGE_TOLERANCE:
        raise AuditError(f"{path}: probabilities outside [0, 1] (min {low:g}, max {high:g}); "
                         "pass probabilities, not logits or labels")
    return np.clip(prob, 0.0, 1.0) if low < 0 or high > 1 else prob


def is_binary(prob: np.ndarray) -> bool:
    """Whether a map holds only 0 and 1, and at least one 1: a segmentation, not probabilities."""
    return bool(prob.max() == 1.0) and not np.count_nonzero((prob > 0) & (prob < 1))


def check_not_binary(prob: np.ndarray, path: Path, stored_as_integers: bool, allow_binary: bool) -> None:
    """AuditError for a map of integers or of only 0s and 1s, unless ``allow_binary``."""
    if allow_binary or not (stored_as_integers or is_binary(prob)):
        return
    what = "integers" if stored_as_integers else "only 0 and 1"
    raise AuditError(f"{path}: holds {what}, a segmentation rather than probabilities (its soft volume would be "
                     "its thresholded volume); give the model's probability maps (nnU-Net: nnUNetv2_predict "
                     "--save_probabilities), or pass --allow-binary to audit it as it is")


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
