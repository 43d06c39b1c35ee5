"""Containers for loaded data: one Case per image, a TaskData per task with its 5 folds."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    from .registry import TaskSpec


@dataclass
class Case:
    """One preprocessed image with its reference segmentation.

    image: float32 (C, *spatial); label: float32 (*spatial) in {0, 1}; mask: bool (*spatial);
    spacing: voxel size in mm after preprocessing (1.0 per axis where unknown, see spacing_known);
    raters: float32 (R, *spatial) individual annotations or None; marginals: float32 (*spatial)
    known voxel probabilities p (exact for synthetic data, mean rater for LIDC) or None.
    """

    id: str
    image: np.ndarray
    label: np.ndarray
    mask: np.ndarray
    spacing: tuple[float, ...]
    spacing_known: bool = True
    raters: np.ndarray | None = None
    marginals: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in ml (1.0 when the spacing is unknown: volumes are then voxel counts)."""
        if not self.spacing_known:
            return 1.0
        return float(np.prod(self.spacing)) / 1000.0

    @property
    def volume_unit(self) -> str:
        """Unit of this case's volumes: ``"ml"`` where the spacing is known, else ``"pixels"`` (2D) or ``"voxels"``."""
        if self.spacing_known:
            return "ml"
        return "pixels" if self.label.ndim == 2 else "voxels"

    @property
    def expected_volume(self) -> float:
        """Expected foreground volume: sum of the marginals (else of the label) times the voxel volume."""
        source = self.marginals if self.marginals is not None else self.label
        return float(np.sum(source, dtype=np.float64)) * self.voxel_volume_ml


@dataclass
class TaskData:
    """A loaded task: its spec (with the grid actually used), its cases and 5 folds of case ids.

    ``test`` holds extra held-out cases that belong to no fold (fresh synthetic phantoms): every run
    predicts them besides its validation fold.
    """

    name: str
    spec: TaskSpec
    cases: list[Case]
    folds: list[list[str]]
    test: list[Case] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.cases)

    def __iter__(self) -> Iterator[Case]:
        return iter(self.cases)

    def __getitem__(self, case_id: str) -> Case:
        for case in self.cases:
            if case.id == case_id:
                return case
        raise KeyError(case_id)

    def split(self, fold: int) -> tuple[list[Case], list[Case]]:
        """Cases for training (the other folds) and validation (fold `fold`)."""
        if not 0 <= fold < len(self.folds):
            raise DataError(f"fold={fold}: must be in 0..{len(self.folds) - 1}")
        held_out = set(self.folds[fold])
        train = [c for c in self.cases if c.id not in held_out]
        val = [c for c in self.cases if c.id in held_out]
        return train, val
