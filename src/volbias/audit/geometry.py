"""Voxel-to-world geometry of a prediction and its reference, and putting the map onto the reference's grid.

A grid is the array's shape in ``(x, y, z)`` order (nibabel's order, the audit's arrays) with its RAS+
affine in mm, built from

- a NIfTI header: nibabel's affine (sform, else qform), scaled to mm by the file's spatial unit;
- nnU-Net's ``<case>.pkl``: ``nibabel_stuff['reoriented_affine']`` (``NibabelIOWithReorient``: the map
  is stored in the reoriented frame), else ``nibabel_stuff['original_affine']`` (``NibabelIO``), else
  ``sitk_stuff`` origin, direction and spacing (``SimpleITKIO``, and ``SimpleITKIOWithReorient`` whose
  ``sitk_stuff`` describes the reoriented frame the map is stored in), turned from ITK's LPS+ to RAS+.

:func:`align` compares the two grids.  nibabel's :func:`~nibabel.orientations.io_orientation` and
:func:`~nibabel.orientations.ornt_transform` give the axis permutation and flips that take the map's
axes to the reference's; after them both grids must put every corner voxel at the same world position
(within :data:`GRID_TOLERANCE` of the smallest voxel size).  A grid that differs otherwise (another
origin, a rotation that is not a permutation, other voxel sizes) is refused with both orientations and
origins: the map would have to be resampled, which the audit does not do.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nibabel.orientations import aff2axcodes, apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

from volbias.audit.errors import AuditError

SPACING_TOLERANCE_MM = 1e-3
"""Largest difference of a voxel size (mm) between a prediction and its reference still read as equal."""
GRID_TOLERANCE = 0.01
"""Largest distance between the corner voxels of two grids read as equal, as a share of the smallest voxel size
(float32 headers and ITK's quaternions move corners by about 1e-4 mm)."""
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class Grid:
    """A voxel grid: the file it came from, its shape and voxel size (mm) in ``(x, y, z)`` order, and its RAS+
    affine in mm (None when the file holds no orientation, e.g. a pickle with only a spacing)."""

    path: Path
    shape: tuple[int, ...]
    spacing: tuple[float, ...]
    affine: np.ndarray | None


def sitk_affine(spacing: Sequence[float], origin: Sequence[float], direction: Sequence[float]) -> np.ndarray:
    """RAS+ affine of an ITK image's index order from its spacing, LPS+ origin and row-major direction."""
    spacing = np.asarray(spacing, dtype=float)
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(direction, dtype=float).reshape(3, 3) * spacing[None, :]
    lps[:3, 3] = np.asarray(origin, dtype=float)
    return LPS_TO_RAS @ lps


def orientation(affine: np.ndarray | None) -> str:
    """The three-letter axis code of an affine (``"RAS"``, ``"LPS"``, ``"SAR"`` ...), ``"unknown"`` without one."""
    return "unknown" if affine is None else "".join(aff2axcodes(affine))


def _origin(affine: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.2f}" for v in affine[:3, 3]) + ") mm"


@dataclass(frozen=True)
class Alignment:
    """How a map is put onto its reference's grid: a nibabel orientation transform (None: already there)."""

    ornt: np.ndarray | None
    source: str
    target: str
    checked: bool

    def apply(self, data: np.ndarray) -> np.ndarray:
        """``data`` (spatial axes first) on the reference's grid: a view with permuted and flipped axes."""
        return data if self.ornt is None else apply_orientation(data, self.ornt)

    @property
    def reoriented(self) -> bool:
        """Whether the map's axes were permuted or flipped."""
        return self.ornt is not None


def _check_shape(pred: Grid, ref: Grid, shape: tuple[int, ...], how: str) -> None:
    if shape != ref.shape:
        raise AuditError(f"{pred.path}: shape {shape}{how} differs from its reference {ref.path} {ref.shape}")


def _check_spacing(pred: Grid, ref: Grid, spacing: Sequence[float], how: str) -> None:
    if not np.allclose(spacing, ref.spacing, rtol=0, atol=SPACING_TOLERANCE_MM):
        mine = ", ".join(f"{s:g}" for s in spacing)
        theirs = ", ".join(f"{s:g}" for s in ref.spacing)
        raise AuditError(f"{pred.path}: voxel spacing ({mine}) mm{how} differs from its reference {ref.path} "
                         f"({theirs}) mm")


def _corner_distance(a: np.ndarray, b: np.ndarray, shape: Sequence[int]) -> float:
    """Largest distance (mm) between the world positions the two affines give the grid's corner voxels."""
    corners = np.array([[*c, 1.0] for c in itertools.product(*[(0, n - 1) for n in shape])]).T
    return float(np.max(np.linalg.norm((a @ corners - b @ corners)[:3], axis=0)))


def align(pred: Grid, ref: Grid) -> Alignment:
    """The transform that puts ``pred`` onto ``ref``'s grid; AuditError (naming both files) when no axis
    permutation and flips do.  Without an affine on either side only shape and voxel size are compared."""
    if pred.affine is None or ref.affine is None:
        _check_shape(pred, ref, pred.shape, "")
        _check_spacing(pred, ref, pred.spacing, "")
        return Alignment(None, orientation(pred.affine), orientation(ref.affine), checked=False)
    source, target = orientation(pred.affine), orientation(ref.affine)
    ornt = ornt_transform(io_orientation(pred.affine), io_orientation(ref.affine))
    identity = np.array_equal(ornt, [[0, 1], [1, 1], [2, 1]])
    shape, spacing = list(pred.shape), list(pred.spacing)
    for axis, (to, _) in enumerate(ornt.astype(int)):
        shape[to], spacing[to] = pred.shape[axis], pred.spacing[axis]
    how = "" if identity else f" (after reorienting its {source} axes to the reference's {target})"
    _check_shape(pred, ref, tuple(shape), how)
    _check_spacing(pred, ref, spacing, how)
    affine = pred.affine if identity else pred.affine @ inv_ornt_aff(ornt, pred.shape)
    distance = _corner_distance(affine, ref.affine, ref.shape)
    if distance > GRID_TOLERANCE * min(ref.spacing):
        raise AuditError(f"{pred.path}: voxel grid ({source}, origin {_origin(pred.affine)}) does not lie on its "
                         f"reference {ref.path} ({target}, origin {_origin(ref.affine)}): corners up to "
                         f"{distance:.3g} mm apart{how}; only axis flips and permutations are undone: resample the "
                         "prediction onto the reference grid")
    return Alignment(None if identity else ornt, source, target, checked=True)
