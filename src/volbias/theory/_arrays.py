"""Voxel-wise passes over a probability map held as a numpy array or as a torch tensor (CPU or CUDA).

The expected-Dice functions reduce a whole map to a few sums, a histogram and a short list of
voxels; those passes are the only work whose cost grows with the number of voxels, so they run
where the map lives (on the GPU for a CUDA tensor), in float64.  Everything after them works on
small host arrays.  Arithmetic, comparisons, boolean indexing and ``.sum()``/``.min()``/``.max()``
are written the same way for both kinds of array; the few calls that differ are collected here.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

SIGN_CLEARED = np.int64(0x7FFF_FFFF_FFFF_FFFF)
"""Mask that drops the sign bit, so that ``-0.0`` gets the bit pattern of ``0.0``."""


class NumpyOps:
    """The voxel-wise passes for a numpy array."""

    chunk = 1 << 16
    """Voxels per chunk of a pass that runs several operations: small enough to stay in the CPU cache."""

    def as_array(self, x: Any) -> np.ndarray:
        """``x`` (array, tensor or nested list) as this kind of array."""
        return np.asarray(x)

    def flat(self, p: Any) -> np.ndarray:
        """``p`` as a contiguous one-dimensional float64 array."""
        return np.ascontiguousarray(p, dtype=np.float64).ravel()

    def is_bool(self, a: Any) -> bool:
        return a.dtype == np.bool_

    def dot(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(np.einsum("i,i->", a, b))  # not np.dot: BLAS threads cost more than they save here

    def count(self, condition: np.ndarray) -> int:
        return int(np.count_nonzero(condition))

    def nonzero(self, condition: np.ndarray) -> np.ndarray:
        """Flat indices where ``condition`` holds, increasing."""
        return np.flatnonzero(condition)

    def prod(self, a: np.ndarray) -> float:
        return float(np.prod(a))

    def exp(self, a: np.ndarray) -> np.ndarray:
        return np.exp(a)

    def cumsum(self, a: np.ndarray) -> np.ndarray:
        return np.cumsum(a)

    def descending(self, values: np.ndarray) -> np.ndarray:
        """Stable order of decreasing value (``values >= 0``): equal values keep their order in ``values``."""
        keys = self.bits(values) & SIGN_CLEARED  # integer keys sort faster than floats
        np.negative(keys, out=keys)
        return np.argsort(keys, kind="stable")

    def bits(self, values: np.ndarray) -> np.ndarray:
        """IEEE-754 bit patterns as int64 (a view, not a copy); for values >= 0 they grow with the value.

        Only ``-0.0`` has the sign bit set among valid probabilities; callers clear it where it matters.
        """
        return values.view(np.int64)

    def bincount(self, keys: np.ndarray, weights: np.ndarray | None, length: int) -> np.ndarray:
        """Per-key counts (``weights=None``) or sums of ``weights``, as a host float64 array."""
        return np.bincount(keys, weights=weights, minlength=length).astype(np.float64)

    def host(self, a: np.ndarray) -> np.ndarray:
        return np.asarray(a)

    def zeros_bool(self, n: int, like: np.ndarray) -> np.ndarray:
        return np.zeros(n, dtype=bool)

    def to_device(self, a: np.ndarray, like: np.ndarray) -> np.ndarray:
        return np.asarray(a)

    def output(self, a: np.ndarray) -> np.ndarray:
        """A result in the caller's kind of array."""
        return a


class TorchOps(NumpyOps):
    """The voxel-wise passes for a torch tensor, on the tensor's device."""

    chunk = 1 << 62  # one chunk: a device runs each operation over the whole map at once

    def __init__(self, torch: Any, device: Any) -> None:
        self.torch = torch
        self.device = device

    def as_array(self, x: Any) -> Any:
        if isinstance(x, self.torch.Tensor):
            return x.detach().to(self.device)
        return self.torch.as_tensor(np.asarray(x), device=self.device)

    def flat(self, p: Any) -> Any:
        return p.detach().to(self.torch.float64).contiguous().reshape(-1)

    def is_bool(self, a: Any) -> bool:
        return a.dtype == self.torch.bool

    def dot(self, a: Any, b: Any) -> float:
        return float(self.torch.dot(a, b))

    def count(self, condition: Any) -> int:
        return int(self.torch.count_nonzero(condition))

    def nonzero(self, condition: Any) -> Any:
        return self.torch.nonzero(condition).reshape(-1)

    def prod(self, a: Any) -> float:
        return float(self.torch.prod(a))

    def exp(self, a: Any) -> Any:
        return self.torch.exp(a)

    def cumsum(self, a: Any) -> Any:
        return self.torch.cumsum(a, dim=0)

    def descending(self, values: Any) -> Any:
        return self.torch.sort(values, descending=True, stable=True).indices

    def bits(self, values: Any) -> Any:
        return values.view(self.torch.int64)

    def bincount(self, keys: Any, weights: Any | None, length: int) -> np.ndarray:
        counts = self.torch.bincount(keys, weights=weights, minlength=length)
        return counts.to(self.torch.float64).cpu().numpy()

    def host(self, a: Any) -> np.ndarray:
        return a.cpu().numpy()

    def zeros_bool(self, n: int, like: Any) -> Any:
        return self.torch.zeros(n, dtype=self.torch.bool, device=like.device)

    def to_device(self, a: np.ndarray, like: Any) -> Any:
        return self.torch.as_tensor(a, device=like.device)

    def output(self, a: Any) -> Any:
        return self.torch.as_tensor(a, device=self.device) if isinstance(a, np.ndarray) else a


def ops_for(p: Any) -> NumpyOps:
    """The passes for ``p``'s kind of array (torch is only imported when ``p`` is a tensor)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(p, torch.Tensor):
        return TorchOps(torch, p.device)
    return NumpyOps()


def checked_probabilities(ops: NumpyOps, p: Any, name: str = "p") -> Any:
    """``p`` flattened to float64 on its device; one-line error unless every value is finite and in [0, 1]."""
    flat = ops.flat(ops.as_array(p))
    if flat.shape[0] and not (float(flat.min()) >= 0.0 and float(flat.max()) <= 1.0):  # NaN fails both
        raise ValueError(f"{name}: probabilities must be finite and lie in [0, 1]")
    return flat


def checked_mask(ops: NumpyOps, mask: Any, shape: tuple[int, ...], name: str = "mask") -> Any:
    """``mask`` flattened to bool on the map's device; one-line error unless it has the map's shape and holds 0/1."""
    mask = ops.as_array(mask)
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name}: shape {tuple(mask.shape)} differs from the probability map's {tuple(shape)}")
    if ops.is_bool(mask):
        return mask.reshape(-1)
    flat = ops.flat(mask)
    if flat.shape[0] and not bool(((flat == 0.0) | (flat == 1.0)).all()):
        raise ValueError(f"{name}: a hard mask must hold only 0 and 1")
    return flat > 0.5
