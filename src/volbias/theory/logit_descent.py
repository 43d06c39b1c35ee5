"""Gradient-based optimisation of free per-voxel logits against hard labels sampled from ``p``.

Every step draws a batch of hard label maps ``Y ~ Bernoulli(p)`` (independent voxels) and takes
an Adam step on the training loss (:func:`volbias.losses.get_loss`).  Cross-entropy drives
``sigmoid(logits)`` to the calibrated map ``p``; soft Dice drives it to a binary map.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from volbias.losses import get_loss
from volbias.theory._checks import as_probabilities


@dataclass
class FreeLogitResult:
    """Outcome of :func:`optimise_free_logits`.

    ``history``: one row per recorded step with ``step``, ``soft_volume`` (``sum s``),
    ``hard_volume`` (``#{s > 0.5}``), ``binariness`` (mean ``min(s, 1 - s)``, 0 for a binary map)
    and ``distance_to_p`` (mean ``|s - p|``).  ``probabilities``: the final map ``s``.
    """

    history: pd.DataFrame
    probabilities: np.ndarray


def optimise_free_logits(
    p: np.ndarray,
    loss: str = "sd",
    steps: int = 800,
    batch_size: int = 32,
    lr: float = 0.2,
    record_every: int = 10,
    seed: int = 0,
    **loss_options: object,
) -> FreeLogitResult:
    """Minimise ``E[loss(sigmoid(logits), Y)]`` over free logits by Adam with sampled hard labels.

    ``p`` (any shape) holds the voxel marginals; the logits start at 0 (``s = 1/2``); the
    learning rate decays from ``lr`` to 0 on a cosine schedule so the noise of the sampled labels
    averages out at the end.  Runs on
    the CPU in float64 with a private random generator seeded by ``seed``.
    """
    p = as_probabilities(p)
    if steps < 1 or batch_size < 1 or record_every < 1:
        raise ValueError("steps, batch_size and record_every must be positive")
    generator = torch.Generator().manual_seed(seed)
    target_p = torch.as_tensor(p, dtype=torch.float64)[None, None].expand(batch_size, 1, *p.shape)
    logits = torch.zeros((1, 1, *p.shape), dtype=torch.float64, requires_grad=True)
    loss_fn = get_loss(loss, **loss_options)
    optimiser = torch.optim.Adam([logits], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps)
    rows = []
    for step in range(steps + 1):
        if step % record_every == 0 or step == steps:
            s = torch.sigmoid(logits.detach())[0, 0].numpy()
            rows.append(
                {
                    "step": step,
                    "soft_volume": float(s.sum()),
                    "hard_volume": float(np.count_nonzero(s > 0.5)),
                    "binariness": float(np.minimum(s, 1 - s).mean()),
                    "distance_to_p": float(np.abs(s - p).mean()),
                }
            )
        if step == steps:
            break
        labels = torch.bernoulli(target_p, generator=generator)
        optimiser.zero_grad()
        value = loss_fn(logits.expand(batch_size, 1, *p.shape), labels)
        value.backward()
        optimiser.step()
        schedule.step()
    return FreeLogitResult(pd.DataFrame(rows), torch.sigmoid(logits.detach())[0, 0].numpy())
