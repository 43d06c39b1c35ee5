"""One training epoch, with optional automatic mixed precision and no host synchronisation inside."""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from monai.metrics import compute_dice

from ..models import masked_probabilities


def amp_dtype_for(device: torch.device, enabled: bool) -> torch.dtype | None:
    """Autocast dtype: bfloat16 on GPUs that support it, float16 on older GPUs, None (off) on CPU."""
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def make_scaler(device: torch.device, amp_dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """Gradient scaler, active only for float16 autocast (bfloat16 needs no loss scaling)."""
    return torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)


@dataclass
class EpochStats:
    """What one training epoch measured on its own batches (device tensors until read).

    ``dice`` is the mean per-sample Dice of ``sigmoid(logits) * mask > 0.5`` against the sample's target
    (> 0.5), and ``soft_volume_ratio`` the epoch's summed soft prediction over its summed target: both
    from the forward passes of the training steps themselves (before each update), so they cost nothing
    extra. A calibrated CE network has a ratio near 1. ``null_loss`` and ``null_dice`` are the same loss and
    Dice of the *null model* on the same batches: a constant map at the training foreground prior, what a
    network that learned nothing but the prior predicts (the convergence rule compares the two).
    """

    loss: torch.Tensor
    dice: torch.Tensor
    soft_volume_ratio: torch.Tensor
    null_loss: torch.Tensor
    null_dice: torch.Tensor
    steps: int


PRIOR_CLAMP = 1e-4
"""The foreground prior is kept inside [PRIOR_CLAMP, 1 - PRIOR_CLAMP] (output-bias initialisation, null model)."""


def clamp_prior(prior: float) -> float:
    """``prior`` kept inside [:data:`PRIOR_CLAMP`, 1 - :data:`PRIOR_CLAMP`]."""
    return min(max(float(prior), PRIOR_CLAMP), 1.0 - PRIOR_CLAMP)


def prior_logit(prior: float) -> float:
    """The logit of the (clamped) foreground prior: the null model's constant output."""
    clamped = clamp_prior(prior)
    return math.log(clamped / (1.0 - clamped))


def _per_sample_dice(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Dice of ``prob > 0.5`` against ``target > 0.5`` per sample, 1 where both are empty (MONAI)."""
    return compute_dice(prob > 0.5, target > 0.5, include_background=True, ignore_empty=False)


def train_epoch(
    model: torch.nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    prior: float = 0.5,
) -> EpochStats:
    """Train over ``batches``; return the epoch's sample-weighted mean loss, training Dice and soft-volume ratio,
    and the null model's loss and Dice on the same batches (``prior``: the training foreground fraction).

    Everything is accumulated on the device, so nothing in the loop waits for the GPU (with float16 autocast
    the gradient scaler checks for overflow, which does synchronise once per step).
    """
    null_logit = prior_logit(prior)
    model.train()
    total = torch.zeros((), device=device)
    dice_sum = torch.zeros((), device=device)
    null_total = torch.zeros((), device=device)
    null_dice_sum = torch.zeros((), device=device)
    soft_sum = torch.zeros((), device=device, dtype=torch.float64)
    target_sum = torch.zeros((), device=device, dtype=torch.float64)
    samples = 0
    steps = 0
    autocast = (torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext())
    for image, target, mask in batches:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            logits = model(image)
        loss = loss_fn(logits.float(), target, mask)
        if scaler.is_enabled():
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        scheduler.step()
        with torch.no_grad():
            prob = masked_probabilities(logits.detach().float(), mask)
            dice_sum += _per_sample_dice(prob, target).sum()
            soft_sum += prob.sum(dtype=torch.float64)
            target_sum += (target * mask).sum(dtype=torch.float64)
            null_logits = torch.full_like(logits, null_logit, dtype=torch.float32)
            null_total += loss_fn(null_logits, target, mask).detach() * image.shape[0]
            null_dice_sum += _per_sample_dice(masked_probabilities(null_logits, mask), target).sum()
        total += loss.detach() * image.shape[0]
        samples += image.shape[0]
        steps += 1
    n = max(samples, 1)
    ratio = torch.where(target_sum > 0, soft_sum / target_sum.clamp_min(1e-12),
                        torch.full_like(soft_sum, float("nan")))
    return EpochStats(total / n, dice_sum / n, ratio, null_total / n, null_dice_sum / n, steps)
