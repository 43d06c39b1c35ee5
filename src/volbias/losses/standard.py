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
    also for soft targets.  The denominator is linear (``sum s + sum y``), the form the paper analyses
    and the one-class case of Sudre et al.'s generalised Dice loss [sudre2017]; V-Net's soft Dice
    [milletari2016] squares the terms of the denominator instead.  (``soft_label=True`` would switch MONAI to the Dice semimetric
    ``(|s| + |y| - |s - y|) / 2`` of Wang et al., registered separately as ``"dml"``.)

Edge cases (the same for every registered loss; tested for all of them):

- every voxel masked out: the loss is 0 with a zero gradient (nothing to learn from), except that a Dice-type
  loss with ``eps = 0`` refuses it as below;
- an image with no foreground in the prediction and none in the target (after masking; e.g. an empty
  label and logits so negative that the sigmoid underflows to 0): with ``eps > 0`` a Dice-type loss
  scores it 1, i.e. loss 0; with ``eps = 0`` its Dice is 0/0, which has no value, so a Dice-type loss
  raises ValueError (see :func:`check_dice_defined`) rather than returning NaN; with
  ``reduction="batch"`` only a batch that is empty as a whole is refused;
- a target that fills the image is an ordinary input (finite loss, finite gradient).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import MaskedDiceLoss

from volbias.losses.registry import register_loss

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


def check_dice_defined(probs: torch.Tensor, target: torch.Tensor, batch: bool, eps: float, name: str) -> None:
    """Refuse a Dice-type score that is 0/0: ``eps = 0`` and an image (or, ``batch``, the whole batch)
    without foreground in the masked prediction ``probs`` and the masked ``target``.

    Only checked when ``eps == 0`` (one reduction and one synchronisation per call); with ``eps > 0`` the
    smoothed score of such an image is 1.
    """
    if eps > 0:
        return
    dims = list(range(0 if batch else 1, probs.ndim))
    if bool((probs.sum(dims) + target.sum(dims) == 0).any()):
        where = "the batch" if batch else "an image"
        raise ValueError(f"{name}: eps=0 and {where} without foreground in prediction and target (inside the mask): "
                         "its Dice score is 0/0; use eps > 0")


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
        if self.eps == 0:
            check_dice_defined(torch.sigmoid(logits) * m, target * m, self.reduction == "batch", 0.0, "sd")
        return self.dice(logits, target.to(logits.dtype), mask=m)
