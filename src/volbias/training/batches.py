"""Training data held as stacked tensors (on the GPU when it fits) and the seeded batch plan of an epoch.

All training cases are padded (images with their background value, targets and masks with 0) to one common
shape (optionally a multiple of a given number) and stacked once. Each epoch draws, from one seeded CPU generator: the case order, one rater per
case (cases with several annotations: LIDC raters, synthetic label draws) and, when a patch size is set, one
random crop per sample. The plan is moved to the device once per epoch, so assembling a batch needs no host
synchronisation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from ..data.case import Case

#: Keep at most this fraction of the free GPU memory for cached training data.
DEVICE_CACHE_FRACTION = 0.4


@dataclass
class TrainingSet:
    """Stacked, padded training cases: images (N,C,*S), targets (N,R,*S), masks (N,1,*S), raters per case."""

    images: torch.Tensor
    targets: torch.Tensor
    masks: torch.Tensor
    n_targets: torch.Tensor  # (N,) number of valid target maps per case (CPU, int64)
    device: torch.device  # where batches are computed (data may stay on the host)
    patch: tuple[int, ...] | None = None  # random crop size per sample; None = whole (padded) images

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Common padded spatial shape."""
        return tuple(self.images.shape[2:])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """Spatial shape of one training sample (the patch, else the padded image)."""
        return self.patch if self.patch is not None else self.spatial_shape

    def foreground_fraction(self) -> float:
        """Mean target inside the masks, over all cases and their valid targets (the foreground prior)."""
        total = foreground = 0.0
        for i, n in enumerate(self.n_targets.tolist()):
            mask = self.masks[i].float()
            foreground += float((self.targets[i, :n].float() * mask).sum()) / n
            total += float(mask.sum())
        return foreground / total if total else 0.0

    def nbytes(self) -> int:
        """Memory held by the stacked tensors."""
        return sum(t.numel() * t.element_size() for t in (self.images, self.targets, self.masks))


@dataclass(frozen=True)
class EpochPlan:
    """The random choices of one epoch: case order, rater per case and crop offsets per sample."""

    order: torch.Tensor  # (N,) case indices
    raters: torch.Tensor  # (N,) chosen target index per case (indexed by case, not by position)
    offsets: list[tuple[int, ...]]  # per position in ``order``; empty tuples when not cropping


TARGET_MODES = ("rater", "soft")


def _targets_of(case: Case, mode: str = "rater") -> np.ndarray:
    """The targets to sample from, shaped (R, *spatial).

    ``"rater"``: the annotations (raters) when present, else the single label. ``"soft"``: the case's voxel
    marginals (mean rater for LIDC, exact p for phantoms) as one soft target, else the single label.
    """
    if mode == "soft":
        return (case.marginals if case.marginals is not None else case.label)[None]
    return case.raters if case.raters is not None else case.label[None]


def as_patch(patch_size: int | Sequence[int] | None, dims: int) -> tuple[int, ...] | None:
    """Normalise a patch size (one edge length or one per axis) to a tuple."""
    if patch_size is None:
        return None
    patch = (int(patch_size),) * dims if isinstance(patch_size, (int, np.integer)) else tuple(map(int, patch_size))
    if len(patch) != dims or min(patch) < 1:
        raise ValueError(f"patch_size={patch_size!r}: need one positive size or {dims} sizes")
    return patch


def _padded_shape(cases: Sequence[Case], multiple: int, patch: tuple[int, ...] | None) -> tuple[int, ...]:
    shape = np.max([c.label.shape for c in cases], axis=0)
    if patch is not None:
        return tuple(int(s) for s in np.maximum(shape, patch))
    return tuple(int(math.ceil(s / multiple) * multiple) for s in shape)


def _pad_to(array: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    lead = array.ndim - len(shape)
    pad = [(0, 0)] * lead + [(0, int(t) - s) for s, t in zip(array.shape[lead:], shape)]
    return np.pad(array, pad)


def _pad_image(image: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Pad a (C, *spatial) image at the end of each axis with each channel's background value (its minimum).

    After the fixed shift/scale normalisation the raw background 0 is no longer 0, so zero padding would add
    slabs of tissue-like intensity that the network never sees at inference.
    """
    background = image.reshape(image.shape[0], -1).min(axis=1) if image.size else np.zeros(image.shape[0])
    return np.stack([np.pad(channel, [(0, int(t) - s) for s, t in zip(channel.shape, shape)],
                            constant_values=float(value)) for channel, value in zip(image, background)])


def build_training_set(cases: Sequence[Case], device: torch.device, multiple: int = 1,
                       patch_size: int | Sequence[int] | None = None, half: bool = False,
                       target_mode: str = "rater") -> TrainingSet:
    """Stack ``cases`` into tensors; keep them on ``device`` when it is a GPU with room, else on the host.

    ``half`` stores images and targets in float16 (exact for {0,1} targets; used with mixed precision).
    ``target_mode`` chooses the targets (see ``TARGET_MODES``): sampled annotations or the soft marginals.
    """
    if not cases:
        raise ValueError("training needs at least one case; the fold's training split is empty")
    patch = as_patch(patch_size, cases[0].label.ndim)
    shape = _padded_shape(cases, multiple, patch)
    if target_mode not in TARGET_MODES:
        raise ValueError(f"targets={target_mode!r}: expected one of {', '.join(TARGET_MODES)}")
    n_targets = [_targets_of(c, target_mode).shape[0] for c in cases]
    r_max = max(n_targets)
    images = np.stack([_pad_image(c.image.astype(np.float32), shape) for c in cases])
    targets = np.zeros((len(cases), r_max, *shape), dtype=np.float32)
    for i, case in enumerate(cases):
        targets[i, : n_targets[i]] = _pad_to(_targets_of(case, target_mode).astype(np.float32), shape)
    masks = np.stack([_pad_to(c.mask.astype(bool), shape)[None] for c in cases])
    data = [torch.from_numpy(images), torch.from_numpy(targets), torch.from_numpy(masks)]
    if half:
        data[0], data[1] = data[0].half(), data[1].half()
    if device.type == "cuda":
        total = sum(t.numel() * t.element_size() for t in data)
        free, _ = torch.cuda.mem_get_info(device)
        if total <= DEVICE_CACHE_FRACTION * free:
            data = [t.to(device) for t in data]
        else:
            data = [t.pin_memory() for t in data]
    return TrainingSet(data[0], data[1], data[2], torch.tensor(n_targets, dtype=torch.int64), device, patch)


def plan_epoch(train: TrainingSet, generator: torch.Generator) -> EpochPlan:
    """Draw the case order, the rater per case and the crop offsets of one epoch from ``generator``."""
    n = len(train)
    order = torch.randperm(n, generator=generator)
    raters = (torch.rand(n, generator=generator, dtype=torch.float64) * train.n_targets).long()
    offsets: list[tuple[int, ...]] = []
    if train.patch is not None:
        highs = [s - p + 1 for s, p in zip(train.spatial_shape, train.patch)]
        draws = torch.rand(n, len(highs), generator=generator, dtype=torch.float64)
        offsets = [tuple(int(d * h) for d, h in zip(row, highs)) for row in draws.tolist()]
    return EpochPlan(order, raters, offsets)


def iterate_batches(train: TrainingSet, plan: EpochPlan, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield (image, target, mask) batches on the compute device, following ``plan``."""
    device = train.device
    on_device = train.images.device == device
    order = plan.order.to(train.images.device)
    raters = plan.raters.to(train.images.device)
    for start in range(0, len(train), batch_size):
        idx = order[start:start + batch_size]
        image = train.images.index_select(0, idx)
        target = train.targets[idx, raters[idx]].unsqueeze(1)
        mask = train.masks.index_select(0, idx)
        if train.patch is not None:
            crops = [tuple(slice(o, o + p) for o, p in zip(off, train.patch))
                     for off in plan.offsets[start:start + batch_size]]
            image = torch.stack([image[i][(slice(None),) + c] for i, c in enumerate(crops)])
            target = torch.stack([target[i][(slice(None),) + c] for i, c in enumerate(crops)])
            mask = torch.stack([mask[i][(slice(None),) + c] for i, c in enumerate(crops)])
        if not on_device:
            image, target, mask = (t.to(device, non_blocking=True) for t in (image, target, mask))
        yield image, target.float(), mask
