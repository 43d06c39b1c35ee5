"""Later Dice-type and calibration-aware losses (published after the paper), for binary foreground.

All losses follow the :mod:`volbias.losses` contract: ``loss(logits, target, mask=None)`` with
pre-sigmoid ``logits`` and a ``target`` in [0, 1] (soft targets allowed), both shaped
``(B, 1, *spatial)``.  Voxels with ``mask == 0`` are excluded: Dice-type losses see
``s * mask`` and ``y * mask`` (``s = sigmoid(logits)``), voxel-wise losses are averaged over the
mask voxels only.  Where MONAI implements a loss it is used; what MONAI lacks is written here.

Registered names
----------------
``"dml"``
    Dice semimetric loss [wang2023dml], first variant,
    ``DML(s, y) = 1 - (|s|_1 + |y|_1 - |s - y|_1) / (|s|_1 + |y|_1)``.  It equals the soft Dice
    loss when ``y`` is binary and is zero only at ``s = y`` for soft ``y``.  Implemented by
    ``monai.losses.DiceLoss(soft_label=True)``, whose true positives ``(|s| + |y| - |s - y|) / 2``
    give exactly this form.
``"dsc++"``
    DSC++ loss [yeung2023dscpp]: the false-negative and false-positive sums of the soft
    Dice are taken over voxel terms raised to ``gamma``,
    ``1 - TP / (TP + 1/2 sum_i (y_i (1 - s_i))^gamma + 1/2 sum_i ((1 - y_i) s_i)^gamma)`` with
    ``TP = sum_i y_i s_i`` (definition as in the authors' reference implementation,
    ``github.com/mlyg/DicePlusPlus``, with ``delta = 1/2``; Yeung et al., J Digit Imaging 36:739-752,
    2023).  For ``gamma = 1`` it is the soft Dice loss.  Not in MONAI; written here.  The reference
    implementation clips ``s`` and ``y`` to ``[eps, 1 - eps]`` and averages over the classes of a
    softmax output; here ``eps`` only smooths the ratio and the loss is applied to the foreground
    channel, like ``"sd"``.
``"tversky"``
    Tversky loss [salehi2017tversky],
    ``1 - TP / (TP + alpha FP + beta FN)``; ``monai.losses.TverskyLoss`` (defaults
    ``alpha = 0.3``, ``beta = 0.7`` as recommended by Salehi et al.) with ``soft_label=True``:
    ``TP = (|s|_1 + |y|_1 - |s - y|_1) / 2``, which is ``sum_i s_i y_i`` for binary ``y``.
``"focal"``
    Sigmoid focal loss [lin2017focal], ``-(1 - p_t)^gamma log p_t`` averaged over the mask
    voxels (optional class weight ``alpha``); ``monai.losses.FocalLoss``.
``"ce+sd"``
    Compound loss ``lambda_ce * CE + lambda_sd * SD`` built from the registered ``"ce"`` and
    ``"sd"`` losses, so that masking and reductions match the paper's two losses exactly.

Options common to the Dice-type losses: ``reduction`` ``"image"`` (one score per image, averaged)
or ``"batch"`` (one score over the whole batch), and ``eps >= 0`` (added to numerator and denominator).
Edge cases (empty images, ``eps = 0``, empty masks) behave as described in :mod:`volbias.losses.standard`:
finite values, or a ValueError where a score with ``eps = 0`` would be 0/0.
"""

from __future__ import annotations

import torch
from monai.losses import DiceLoss, FocalLoss, TverskyLoss

from volbias.losses.registry import get_loss, register_loss
from volbias.losses.standard import REDUCTIONS, check_dice_defined, check_loss_inputs


def _check_reduction(reduction: str, name: str, eps: float = 0.0) -> bool:
    """Return True for a batch-wise reduction; raise for an unknown one or a negative ``eps``."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if eps < 0:
        raise ValueError(f"{name}: eps must be non-negative, got {eps}")
    return reduction == "batch"


def _spatial_dims(x: torch.Tensor, batch: bool) -> list[int]:
    dims = list(range(2, x.ndim))
    return [0, *dims] if batch else dims


@register_loss("dml")
class DiceSemimetricLoss(torch.nn.Module):
    """Dice semimetric loss DML_1 [wang2023dml] via ``monai.losses.DiceLoss(soft_label=True)``."""

    def __init__(self, reduction: str = "image", eps: float = 1e-5) -> None:
        super().__init__()
        self.batch = _check_reduction(reduction, "dml", eps)
        self.eps = float(eps)
        self.dice = DiceLoss(sigmoid=False, soft_label=True, batch=self.batch, smooth_nr=eps, smooth_dr=eps)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        m = check_loss_inputs(logits, target, mask, "dml")
        s, y = torch.sigmoid(logits) * m, target * m
        check_dice_defined(s, y, self.batch, self.eps, "dml")
        return self.dice(s, y)


@register_loss("dsc++")
class DSCPlusPlusLoss(torch.nn.Module):
    """DSC++ loss [yeung2023dscpp]: soft Dice with FP and FN voxel terms raised to ``gamma``."""

    def __init__(self, gamma: float = 2.0, reduction: str = "image", eps: float = 1e-5) -> None:
        super().__init__()
        if gamma <= 0:
            raise ValueError(f"dsc++: gamma must be positive, got {gamma}")
        self.gamma = float(gamma)
        self.batch = _check_reduction(reduction, "dsc++", eps)
        self.eps = float(eps)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        m = check_loss_inputs(logits, target, mask, "dsc++")
        s = torch.sigmoid(logits) * m
        y = target * m
        check_dice_defined(s, y, self.batch, self.eps, "dsc++")
        dims = _spatial_dims(s, self.batch)
        tp = (s * y).sum(dims)
        fn = ((y * (1 - s)) ** self.gamma).sum(dims)
        fp = (((1 - y) * s) ** self.gamma).sum(dims)
        score = (tp + self.eps) / (tp + 0.5 * fn + 0.5 * fp + self.eps)
        return (1 - score).mean()


@register_loss("tversky")
class TverskyIndexLoss(torch.nn.Module):
    """Tversky loss [salehi2017tversky] via ``monai.losses.TverskyLoss`` (soft-label form)."""

    def __init__(self, alpha: float = 0.3, beta: float = 0.7, reduction: str = "image", eps: float = 1e-5) -> None:
        super().__init__()
        if alpha < 0 or beta < 0 or alpha + beta == 0:
            raise ValueError(f"tversky: alpha and beta must be non-negative and not both 0, got {alpha}, {beta}")
        self.batch = _check_reduction(reduction, "tversky", eps)
        self.eps = float(eps)
        self.tversky = TverskyLoss(
            sigmoid=False, alpha=alpha, beta=beta, batch=self.batch, soft_label=True, smooth_nr=eps, smooth_dr=eps
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        m = check_loss_inputs(logits, target, mask, "tversky")
        s, y = torch.sigmoid(logits) * m, target * m
        check_dice_defined(s, y, self.batch, self.eps, "tversky")
        return self.tversky(s, y)


@register_loss("focal")
class SigmoidFocalLoss(torch.nn.Module):
    """Sigmoid focal loss [lin2017focal] via ``monai.losses.FocalLoss``, averaged over mask voxels."""

    def __init__(self, gamma: float = 2.0, alpha: float | None = None) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"focal: gamma must be non-negative, got {gamma}")
        if alpha is not None and not 0 <= alpha <= 1:
            raise ValueError(f"focal: alpha must lie in [0, 1], got {alpha}")
        self.focal = FocalLoss(gamma=gamma, alpha=alpha, use_softmax=False, reduction="none")

    def forward(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        m = check_loss_inputs(logits, target, mask, "focal")
        voxel_loss = self.focal(logits, target)
        return (voxel_loss * m).sum() / m.sum().clamp(min=1.0)


@register_loss("ce+sd")
class CESoftDiceLoss(torch.nn.Module):
    """Compound ``lambda_ce * CE + lambda_sd * SD`` of the registered ``"ce"`` and ``"sd"`` losses."""

    def __init__(
        self, lambda_ce: float = 1.0, lambda_sd: float = 1.0, reduction: str = "image", eps: float = 1e-5
    ) -> None:
        super().__init__()
        if lambda_ce < 0 or lambda_sd < 0:
            raise ValueError(f"ce+sd: weights must be non-negative, got {lambda_ce}, {lambda_sd}")
        self.batch = _check_reduction(reduction, "ce+sd", eps)
        self.eps = float(eps)
        self.lambda_ce = float(lambda_ce)
        self.lambda_sd = float(lambda_sd)
        self.ce = get_loss("ce")
        self.sd = get_loss("sd", reduction=reduction, eps=eps)

    def forward(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        m = check_loss_inputs(logits, target, mask, "ce+sd")
        check_dice_defined(torch.sigmoid(logits) * m, target * m, self.batch, self.eps, "ce+sd")
        return self.lambda_ce * self.ce(logits, target, mask) + self.lambda_sd * self.sd(logits, target, mask)
