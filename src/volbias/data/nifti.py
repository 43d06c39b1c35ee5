"""Reading NIfTI volumes of one case with the checks every reader needs (nibabel)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from .errors import DataError

AFFINE_TOLERANCE_MM = 1e-3


@dataclass
class SourceCase:
    """Files of one case in an official layout: one image per input channel (in the task's order) and a label."""

    id: str
    images: list[Path]
    label: Path
    label_values: tuple[float, ...] = (0.0, 1.0)  # allowed label values; foreground = value > 0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def files(self) -> list[Path]:
        """All files the case is read from."""
        return [*self.images, self.label]


def _open(path: Path) -> nib.Nifti1Image:
    try:
        img = nib.load(path)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Exception as exc:  # nibabel raises several types for non-NIfTI or damaged headers
        raise DataError(f"{path}: not a readable NIfTI file ({type(exc).__name__})") from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise DataError(f"{path}: not a NIfTI file ({type(img).__name__})")
    return img


def _spatial_shape(path: Path, img: nib.Nifti1Image) -> tuple[int, ...]:
    shape = tuple(int(s) for s in img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise DataError(f"{path}: expected a 3D volume, found shape {shape}")
    return shape


def check_headers(case: SourceCase) -> tuple[tuple[int, ...], np.ndarray]:
    """Open every file's header; DataError unless all are NIfTI volumes of one shape and affine."""
    ref_shape: tuple[int, ...] | None = None
    ref_affine: np.ndarray | None = None
    for path in case.files:
        img = _open(path)
        shape = _spatial_shape(path, img)
        affine = np.asarray(img.affine, dtype=np.float64)
        if ref_shape is None:
            ref_shape, ref_affine = shape, affine
            continue
        if shape != ref_shape:
            raise DataError(f"{path}: shape {shape} differs from {case.images[0].name} {ref_shape}")
        if not np.allclose(affine, ref_affine, rtol=0, atol=AFFINE_TOLERANCE_MM):
            raise DataError(f"{path}: affine differs from that of {case.images[0].name}")
    assert ref_shape is not None and ref_affine is not None
    return ref_shape, ref_affine


def read_volume(path: Path) -> np.ndarray:
    """The voxel data as float32 (X, Y, Z); DataError for truncated files and NaN/inf values."""
    img = _open(path)
    shape = _spatial_shape(path, img)
    try:
        data = np.asarray(img.dataobj, dtype=np.float32).reshape(shape)
    except Exception as exc:  # truncated gzip streams and short files
        raise DataError(f"{path}: truncated or damaged NIfTI data ({type(exc).__name__})") from None
    if not np.isfinite(data).all():
        raise DataError(f"{path}: contains NaN or infinite intensities")
    return data


def read_case(case: SourceCase) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image (C, X, Y, Z) float32, binary label (X, Y, Z) float32 and the affine of one case."""
    _, affine = check_headers(case)
    image = np.stack([read_volume(p) for p in case.images])
    raw = read_volume(case.label)
    values = np.unique(raw)
    bad = [v for v in values.tolist() if v not in case.label_values]
    if bad:
        allowed = ", ".join(f"{v:g}" for v in case.label_values)
        raise DataError(f"{case.label}: label values {bad[:5]} outside the label set {{{allowed}}}")
    return image, (raw > 0).astype(np.float32), affine
