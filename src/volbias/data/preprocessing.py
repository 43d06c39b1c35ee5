"""The authors' preprocessing with MONAI transforms (from the public code of their MICCAI 2019 Dice/Jaccard
paper, JeroenBertels/optimizingdice; inferred to be that of the volume-bias paper, which does not state it).

1. resample to an isotropic grid (2 mm in that code; a CPU profile may pass 4 mm) with
   ``monai.transforms.Spacing`` (bilinear); the label is resampled with the images, then binarised (> 0.5);
2. mask from the task's rule on the resampled raw intensities (e.g. FLAIR > 0);
3. crop/pad, padding with the raw background value 0: "paper" centres the arrays in the paper's output
   patch 136 x 136 x 82 (scaled to the grid: 68 x 68 x 41 at 4 mm), "foreground" crops to the mask's
   bounding box, "none" keeps the whole grid;
4. fixed per-channel shift/scale, ``NormalizeIntensity(subtrahend=shifts, divisor=scales)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import CenterSpatialCrop, NormalizeIntensity, Spacing, SpatialPad
from monai.transforms.utils import generate_spatial_bounding_box

from .errors import DataError
from .registry import PAPER_PATCH, TaskSpec

CROPS = ("paper", "foreground", "none")


def resample(volumes: np.ndarray, affine: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Resample channels (C, X, Y, Z) given their affine to `spacing` mm isotropic (bilinear, zero padding)."""
    tensor = MetaTensor(torch.from_numpy(np.ascontiguousarray(volumes)), affine=torch.as_tensor(affine))
    out = Spacing(pixdim=(spacing,) * 3, mode="bilinear", padding_mode="zeros", dtype=torch.float32)(tensor)
    return out.numpy().astype(np.float32, copy=False), np.asarray(out.affine, dtype=np.float64)


def patch_size(spacing: float) -> tuple[int, ...]:
    """The paper's output patch (136, 136, 82 at 2 mm) expressed on a `spacing` mm grid."""
    return tuple(max(1, int(round(n * 2.0 / spacing))) for n in PAPER_PATCH)


def crop_arrays(arrays: list[np.ndarray], mask: np.ndarray, crop: str, spacing: float) -> list[np.ndarray]:
    """Apply one crop rule to channel-first arrays sharing a grid (the mask decides the bounding box)."""
    if crop == "none":
        return arrays
    if crop == "foreground":
        if not mask.any():
            return arrays
        start, end = generate_spatial_bounding_box(mask[None])
        sl = (slice(None), *(slice(s, e) for s, e in zip(start, end)))
        return [a[sl] for a in arrays]
    size = patch_size(spacing)
    pad, center = SpatialPad(size), CenterSpatialCrop(size)
    return [np.asarray(center(pad(a))) for a in arrays]


def preprocess(image: np.ndarray, label: np.ndarray, affine: np.ndarray, spec: TaskSpec, spacing: float,
               crop: str = "paper") -> dict[str, Any]:
    """Resample, mask, normalise and crop one case; returns image, label, mask and the grid's spacing."""
    if crop not in CROPS:
        raise DataError(f"option crop={crop!r}: must be one of {', '.join(CROPS)}")
    volumes, _ = resample(np.concatenate([image, label[None]]), affine, spacing)
    image_r, label_r = volumes[:-1], (volumes[-1] > 0.5).astype(np.float32)
    assert spec.mask_channel is not None
    mask = image_r[spec.mask_channel] > spec.mask_threshold
    # crop/pad before normalising, so that padding carries the raw background value 0
    image_c, label_c, mask_c = crop_arrays(
        [image_r, label_r[None], mask[None].astype(np.float32)], mask, crop, spacing)
    normalise = NormalizeIntensity(subtrahend=spec.shifts, divisor=spec.scales, channel_wise=True)
    image_n = np.asarray(normalise(image_c), dtype=np.float32)
    return {
        "image": image_n,
        "label": label_c[0].astype(np.float32),
        "mask": mask_c[0] > 0.5,
        "spacing": np.full(3, spacing, dtype=np.float64),
        "resampled_shape": np.asarray(image_r.shape[1:]),
    }
