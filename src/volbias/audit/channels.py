"""Which channels of a probability map make the audited foreground, and the checks on the channels.

:func:`choose_channels` decides, per map, from the number of channels, the model's ``dataset.json``
(:mod:`.nnunet`) and the options ``--channel`` / ``--sigmoid``:

- softmax maps (nnU-Net's label-based models; any multi-channel map by default): ``--channel`` names one
  channel or several whose probabilities are summed (a union of classes); without it a two-channel map
  audits channel 1 and larger maps are refused.  The channels must sum to 1 at every voxel (within
  :data:`SUM_TOLERANCE`).  With three or more channels the argmax mask (nnU-Net's segmentation: the voxels
  whose most probable class is one of the chosen) is measured beside ``p > threshold``;
- sigmoid maps (nnU-Net's region-based models, or ``--sigmoid``): one channel per region or class,
  overlapping, so exactly one must be named with ``--channel``.

:func:`foreground_map` applies the choice: it reads the chosen channels out of the map in slabs, so that
no temporary as large as the map is made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from volbias.audit.errors import AuditError
from volbias.audit.nnunet import ModelOutputs

SUM_TOLERANCE = 1e-3
"""Largest distance of a softmax map's channel sum from 1 still accepted (float16 storage rounds to 5e-4)."""
SLAB_VOXELS = 4_000_000
"""Voxels per slab when channels are combined."""


@dataclass(frozen=True)
class ChannelChoice:
    """The channels summed into the foreground map, whether they are softmax outputs, the label values they
    stand for (from ``dataset.json``; None when unknown) and a description for the report."""

    channels: tuple[int, ...]
    softmax: bool
    n_channels: int
    labels: tuple[int, ...] | None
    description: str

    @property
    def argmax(self) -> bool:
        """Whether the argmax segmentation differs from thresholding: a softmax over three or more classes."""
        return self.softmax and self.n_channels >= 3


def _named(requested: Sequence[int], n: int, path: Path) -> tuple[int, ...]:
    if len(set(requested)) != len(requested):
        raise AuditError(f"--channel {' '.join(map(str, requested))}: a channel is named twice")
    for c in requested:
        if not 0 <= c < n:
            raise AuditError(f"{path}: --channel {c} is not one of its {n} channels (0..{n - 1})")
    return tuple(requested)


def _with_outputs(outputs: ModelOutputs, requested: Sequence[int] | None, path: Path) -> ChannelChoice:
    n = outputs.n_channels
    if outputs.region_based:
        if requested is None:
            raise AuditError(f"{outputs.path}: a region-based model (sigmoid outputs, one channel per region: "
                             f"{outputs.listing()}); name the region to audit with --channel")
        if len(requested) > 1:
            raise AuditError(f"--channel {' '.join(map(str, requested))}: the regions of a region-based model "
                             f"overlap ({outputs.path}); audit one region at a time")
        chosen = _named(requested, n, path)
        return ChannelChoice(chosen, False, n, outputs.labels[chosen[0]],
                             f"channel {outputs.describe(chosen[0])} of a region-based (sigmoid) model")
    if requested is None:
        if n != 2:
            raise AuditError(f"{path}: {n} channels ({outputs.listing()}, from {outputs.path}); name the "
                             "foreground channel(s) with --channel")
        requested = (1,)
    chosen = _named(requested, n, path)
    if 0 in chosen:
        raise AuditError(f"--channel 0: channel 0 is the background ({outputs.path}); name foreground channels")
    labels = tuple(sorted(v for c in chosen for v in outputs.labels[c]))
    which = " + ".join(outputs.describe(c) for c in chosen)
    return ChannelChoice(chosen, True, n, labels, f"{'channels' if len(chosen) > 1 else 'channel'} {which} "
                                                  f"of a softmax over {n} classes")


def choose_channels(n: int, path: Path, outputs: ModelOutputs | None, requested: Sequence[int] | None,
                    sigmoid: bool) -> ChannelChoice:
    """The channels of a map with ``n`` channels to audit; AuditError when the choice is not clear."""
    if outputs is not None:
        if n != outputs.n_channels:
            raise AuditError(f"{path}: {n} channels, but {outputs.path} lists {outputs.n_channels} "
                             f"({outputs.listing()}); map and dataset.json come from different models")
        return _with_outputs(outputs, requested, path)
    if n == 1:
        chosen = _named(requested or (0,), 1, path)
        return ChannelChoice(chosen, False, 1, None, "the single channel of the map")
    if sigmoid:
        if requested is None or len(requested) != 1:
            raise AuditError(f"{path}: {n} independent (--sigmoid) channels; name exactly one with --channel")
        chosen = _named(requested, n, path)
        return ChannelChoice(chosen, False, n, None, f"channel {chosen[0]} of {n} independent (sigmoid) channels")
    if requested is None:
        if n != 2:
            raise AuditError(f"{path}: {n} channels; name the foreground channel(s) with --channel")
        requested = (1,)
    chosen = _named(requested, n, path)
    which = " + ".join(map(str, chosen))
    return ChannelChoice(chosen, True, n, None, f"{'channels' if len(chosen) > 1 else 'channel'} {which} of a "
                                                f"softmax over {n} channels")


def _slabs(n: int, voxels_per_index: int) -> list[slice]:
    step = max(1, SLAB_VOXELS // max(voxels_per_index, 1))
    return [slice(start, min(start + step, n)) for start in range(0, n, step)]


def foreground_map(channels: np.ndarray, choice: ChannelChoice, path: Path
                   ) -> tuple[np.ndarray, np.ndarray | None]:
    """The foreground map (float32, the chosen channels summed) and, for a softmax over three or more
    classes, the argmax mask; AuditError when a softmax map's channels do not sum to 1 or hold NaN."""
    n, spatial = channels.shape[0], channels.shape[1:]
    single = len(choice.channels) == 1
    if single:  # a copy (in the file's memory order) when other channels would otherwise stay in memory
        prob = np.array(channels[choice.channels[0]], dtype=np.float32, order="K", copy=n > 1 or None)
    else:
        prob = np.empty(spatial, dtype=np.float32)
    argmax = np.empty(spatial, dtype=bool) if choice.argmax else None
    low, high = np.inf, -np.inf
    for part in _slabs(spatial[-1], int(np.prod(spatial[:-1])) * n):
        slab = channels[..., part]
        if choice.softmax and n > 1:
            total = slab.sum(axis=0, dtype=np.float32)
            if not np.isfinite(total).all():
                raise AuditError(f"{path}: probability map contains NaN")
            low, high = min(low, float(total.min())), max(high, float(total.max()))
        if not single:
            prob[..., part] = slab[list(choice.channels)].sum(axis=0, dtype=np.float32)
        if argmax is not None:
            argmax[..., part] = np.isin(slab.argmax(axis=0), choice.channels)
    if choice.softmax and n > 1 and (low < 1 - SUM_TOLERANCE or high > 1 + SUM_TOLERANCE):
        raise AuditError(f"{path}: its {n} channels sum to {low:.4g}..{high:.4g} instead of 1 (softmax); the map "
                         "was rescaled or damaged: export the probabilities again (independent sigmoid channels: "
                         "--sigmoid, or the model's dataset.json next to the maps)")
    if not single:
        np.clip(prob, 0.0, 1.0, out=prob)  # a sum of softmax channels exceeds 1 by round-off
    return prob, argmax
