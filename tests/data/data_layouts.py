"""Helpers for the data-layer tests: writers of tiny files in the official layouts, and their constants."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

SHAPE = (12, 10, 8)  # tiny volumes, 1 mm voxels


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Write `data` as a NIfTI file (``.nii`` or ``.nii.gz`` from the name), creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), str(path))
    return path


def blob_label(shape=SHAPE, centre=(6, 5, 4), radius=3.0) -> np.ndarray:
    """A binary ball, as float32."""
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"))
    d = np.sqrt(((grid - np.reshape(centre, (3, 1, 1, 1))) ** 2).sum(0))
    return (d <= radius).astype(np.float32)


def channel_values(k: int, shape=SHAPE) -> np.ndarray:
    """Intensities of input channel k: a constant 100 (k + 1) inside the volume (positive, so masks are full)."""
    return np.full(shape, 100.0 * (k + 1), dtype=np.float32)


BRATS_CASES = {"HGG": "Brats18_CBICA_AAB_1", "LGG": "Brats18_CBICA_ASA_1"}  # both in the paper's fold 0
IS17_CASES = {"training_13": "128001", "training_2": "128002"}
IS17_TOKENS = ("MR_ADC", "MR_Tmax", "MR_MTT", "MR_TTP", "MR_rCBF", "MR_rCBV")
IS17_AFFINE = np.diag([1.5, 1.5, 5.0, 1.0])  # anisotropic, as in the challenge data
IS18_CASES = {"case_11": "345001", "case_16": "345002"}
IS18_TOKENS = ("CT", "CT_Tmax", "CT_MTT", "CT_CBF", "CT_CBV")
SAMPLE_IDS = ("Brats18_CBICA_AOO_1", "Brats18_TCIA02_471_1", "Brats18_CBICA_ARW_1")


def write_png(path: Path, data: np.ndarray) -> Path:
    """Write an 8-bit grey PNG, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(data, dtype=np.uint8), mode="L").save(path)
    return path


def disk(radius: float, side: int = 128) -> np.ndarray:
    """A 0/255 disk mask centred in a side x side image."""
    yy, xx = np.mgrid[:side, :side]
    return np.where((yy - side / 2) ** 2 + (xx - side / 2) ** 2 <= radius**2, 255, 0).astype(np.uint8)
