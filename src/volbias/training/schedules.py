"""Loss schedules: one loss for the whole run, or CE pre-training followed by a second loss (CE-X).

``"ce-ce"`` and ``"ce-sd"`` (and ``"ce-<name>"`` for any registered loss) train with CE for the first
``pretrain_fraction`` of the epochs, then restart the optimiser and learning-rate schedule and continue with
the second loss. CE-CE therefore differs from CE only by that restart, which makes it the control for CE-SD.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch

PRETRAIN_LOSS = "ce"
LR_SCHEDULES = ("step", "cosine", "constant")
#: The authors' step decay: the fraction of a stage after which the learning rate drops by 10 (300 and 450 of 525).
STEP_DECAY_AT = (300 / 525, 450 / 525)


def step_decay_factor(step: int, total: int) -> float:
    """Learning-rate factor of the step decay at ``step`` of ``total`` steps: 1, 0.1, then 0.01."""
    return 0.1 ** sum(step >= fraction * total for fraction in STEP_DECAY_AT)


@dataclass(frozen=True)
class Stage:
    """A contiguous block of epochs trained with one loss."""

    loss: str
    options: Mapping[str, Any] = field(default_factory=dict)
    first_epoch: int = 0
    epochs: int = 0

    @property
    def last_epoch(self) -> int:
        """Index one past the last epoch of this stage."""
        return self.first_epoch + self.epochs


def _registered() -> dict[str, Any]:
    from ..losses import LOSSES

    return LOSSES


def split_schedule(name: str) -> tuple[str, ...]:
    """The stage losses of a run's loss name: ("ce",), ("sd",), ("ce", "sd"), ..."""
    registered = _registered()
    if name in registered:
        return (name,)
    head, sep, tail = name.partition("-")
    if sep and head == PRETRAIN_LOSS and tail in registered:
        return (PRETRAIN_LOSS, tail)
    known = sorted(registered) + [f"{PRETRAIN_LOSS}-{n}" for n in ("ce", "sd")]
    raise ValueError(f"loss={name!r} unknown; expected one of {', '.join(known)} or ce-<loss>")


def validate_loss_name(name: str) -> None:
    """Raise ValueError (one line) when ``name`` is neither a registered loss nor a CE-X schedule."""
    split_schedule(name)


def plan_stages(name: str, options: Mapping[str, Any], epochs: int, pretrain_fraction: float) -> list[Stage]:
    """Stages of a run; ``options`` go to the final loss (the CE pre-training uses CE's defaults)."""
    losses = split_schedule(name)
    if len(losses) == 1:
        return [Stage(losses[0], dict(options), 0, epochs)]
    if not 0.0 < pretrain_fraction < 1.0:
        raise ValueError(f"pretrain_fraction must be in (0, 1), got {pretrain_fraction}")
    if epochs < 2:
        raise ValueError(f"loss={name!r} needs at least 2 epochs, got {epochs}")
    first = min(max(1, round(epochs * pretrain_fraction)), epochs - 1)
    return [Stage(losses[0], {}, 0, first), Stage(losses[1], dict(options), first, epochs - first)]


def stage_index(stages: list[Stage], epoch: int) -> int:
    """Index of the stage that trains ``epoch``."""
    for i, stage in enumerate(stages):
        if stage.first_epoch <= epoch < stage.last_epoch:
            return i
    raise ValueError(f"epoch {epoch} is outside the schedule")


def build_loss(stage: Stage) -> Callable[..., torch.Tensor]:
    """The loss function of a stage, from :func:`volbias.losses.get_loss`."""
    from ..losses import get_loss

    return get_loss(stage.loss, **dict(stage.options))


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float, schedule: str,
                    epochs: int, steps_per_epoch: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Adam with an L2 penalty on the convolution kernels and a per-step learning-rate schedule over one stage.

    ``weight_decay`` is the factor ``lambda`` of the authors' Keras regulariser ``l2(lambda)``, which adds
    ``lambda * sum(w^2)`` of every kernel (not of the biases) to the loss; its gradient ``2 lambda w`` is
    what Adam's coupled ``weight_decay`` adds, so the kernels get ``2 * weight_decay`` and the biases none.
    ``"step"`` is the authors' step decay (inferred from their later code: 1e-3, 1e-4, 1e-5 over 300, 150
    and 75 of 525 epochs): ``lr`` for the first 4/7 of the stage, ``lr / 10`` for the next 2/7 and
    ``lr / 100`` for the last 1/7. ``"cosine"`` decays from ``lr`` to ``lr / 100`` over the stage;
    ``"constant"`` keeps ``lr``.
    """
    kernels = [p for p in model.parameters() if p.ndim > 1]
    others = [p for p in model.parameters() if p.ndim <= 1]
    optimizer = torch.optim.Adam([{"params": kernels, "weight_decay": 2.0 * weight_decay},
                                  {"params": others, "weight_decay": 0.0}], lr=lr)
    total = max(1, epochs * steps_per_epoch)
    if schedule == "cosine":
        scheduler: torch.optim.lr_scheduler.LRScheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=total, eta_min=lr / 100)
    elif schedule == "step":
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: step_decay_factor(step, total))
    elif schedule == "constant":
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    else:
        raise ValueError(f"lr_schedule={schedule!r} unknown; expected one of {', '.join(LR_SCHEDULES)}")
    return optimizer, scheduler
