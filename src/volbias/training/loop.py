"""One training epoch, with optional automatic mixed precision and no host synchronisation inside."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, Iterable

import torch


def amp_dtype_for(device: torch.device, enabled: bool) -> torch.dtype | None:
    """Autocast dtype: bfloat16 on GPUs that support it, float16 on older GPUs, None (off) on CPU."""
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def make_scaler(device: torch.device, amp_dtype: torch.dtype | None) -> torch.amp.GradScaler:
    """Gradient scaler, active only for float16 autocast (bfloat16 needs no loss scaling)."""
    return torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)


def train_epoch(
    model: torch.nn.Module,
    loss_fn: Callable[..., torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, int]:
    """Train over ``batches``; return the sample-weighted mean loss (a device tensor) and the step count.

    The loss is accumulated on the device, so nothing in the loop waits for the GPU (with float16 autocast
    the gradient scaler checks for overflow, which does synchronise once per step).
    """
    model.train()
    total = torch.zeros((), device=device)
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
        total += loss.detach() * image.shape[0]
        samples += image.shape[0]
        steps += 1
    return total / max(samples, 1), steps
