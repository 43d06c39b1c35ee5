"""The paper's two training losses for binary foreground: cross-entropy and soft Dice.

``"ce"``
    Binary cross-entropy with logits, ``-(y log s + (1 - y) log(1 - s))`` with ``s = sigmoid(logits)``,
    averaged over the voxels where ``mask`` is non-zero (all voxels when ``mask`` is None).  Soft
    targets ``y`` in [0, 1] are allowed; the loss is then minimised at ``s = y``.
    ``torch.nn.functional.binary_cross_entropy_with_logits`` does the voxel terms.
``"sd"``
    Soft Dice loss ``1 - (2 sum s y + eps) / (sum s + sum y + eps)`` on ``s = sigmoid(logits) * mask``
    and ``y = target * mask``.  ``reduction="image"`` computes one Dice per image and averages
    them; ``reduction="batch"`` computes a single Dice over all voxels of the batch.  ``eps`` is
    added to numerator and denominator.  Implemented by ``monai.losses.MaskedDiceLoss`` with
    ``soft_label=False``: that is MONAI's product form ``sum s y``, which is the paper's soft Dice
    also for soft targets.  (``soft_label=True`` would switch MONAI to the Dice semimetric
    ``(|s| + |y| - |s - y|) / 2`` of Wang et al., registered separately as ``"dml"``.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import MaskedDiceLoss

from volbias.losses import register_loss

REDUCTIONS = ("image", "batch")


def check_loss_inputs(
    logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, name: str
) -> torch.Tensor:
    """Validate the shapes of a loss call and return the mask as floats (ones when ``mask`` is None)."""
    if logits.ndim < 3 or logits.shape[1] != 1:
        raise ValueError(f"{name}: logits must be shaped (B, 1, *spatial), got {tuple(logits.shape)}")
    if target.shape != logits.shape:
        raise ValueError(f"{name}: target shape {tuple(target.shape)} differs from logits {tuple(logits.shape)}")
    if mask is None:
        return torch.ones_like(logits)
    if mask.shape != logits.shape:
        raise ValueError(f"{name}: mask shape {tuple(mask.shape)} differs from logits {tuple(logits.shape)}")
    return mask.to(logits.dtype)


@register_loss("ce")
class CrossEntropyLoss(torch.nn.Module):
    """Binary cross-entropy with logits, averaged over the mask voxels (soft targets allowed)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        m = check_loss_inputs(logits, target, mask, "ce")
        voxel_loss = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")
        return (voxel_loss * m).sum() / m.sum().clamp(min=1.0)


@register_loss("sd")
class SoftDiceLoss(torch.nn.Module):
    """Soft Dice loss ``1 - (2<s,y> + eps) / (sum s + sum y + eps)`` per image or over the batch."""

    def __init__(self, reduction: str = "image", eps: float = 1e-5) -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"sd: reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if eps < 0:
            raise ValueError(f"sd: eps must be non-negative, got {eps}")
        self.reduction = reduction
        self.eps = float(eps)
        self.dice = MaskedDiceLoss(
            sigmoid=True, batch=reduction == "batch", soft_label=False, smooth_nr=self.eps, smooth_dr=self.eps
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        m = check_loss_inputs(logits, target, mask, "sd")
        return self.dice(logits, target.to(logits.dtype), mask=m)
