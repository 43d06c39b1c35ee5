"""Reading probability maps and reference label maps with their voxel grids (nibabel, numpy).

Label maps are read as a :class:`Volume`, probability maps as a :class:`ProbabilityMap` (every channel);
both hold the voxel data in nibabel's array order ``(x, y, z)``, the voxel size in mm along those axes and
the grid's RAS+ affine in mm (:mod:`.geometry`).  Files that cannot be read raise :class:`AuditError`
naming the file.

NIfTI probability maps hold one channel ``(x, y, z)`` or several, channels last ``(x, y, z, C)`` (also
``(x, y, z, 1, C)``, the NIfTI vector layout).

nnU-Net v2's ``--save_probabilities`` writes ``<case>.npz`` with the array ``probabilities`` of shape
``(C, z, y, x)``: the channel axis first, then the axes of the image array its reader-writer produced,
which are the reverse of the file's index order (SimpleITK arrays are ``z, y, x``; nnU-Net's nibabel
readers transpose to match).  The map is therefore transposed back to ``(x, y, z)``.  Its geometry is in
``<case>.pkl``, nnU-Net's pickled properties: ``spacing`` (``z, y, x``, written by every reader-writer, else
``sitk_stuff['spacing']`` ``x, y, z``) and the orientation keys read by :func:`volbias.audit.geometry`.

The pickle is read by a restricted unpickler that rebuilds only builtins and numpy values (the rest
of the dict is not needed), so a crafted ``.pkl`` cannot run code; the standard library offers no such
reader, hence the small class below.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from volbias.audit.errors import AuditError
from volbias.audit.geometry import Grid, sitk_affine

_SPATIAL_UNITS_MM = {"mm": 1.0, "unknown": 1.0, "meter": 1000.0, "micron": 0.001}


@dataclass
class Volume:
    """A label map: voxel data in ``(x, y, z)`` order, the voxel size in mm per axis, and its RAS+ affine (mm)."""

    data: np.ndarray
    spacing: tuple[float, ...]
    path: Path
    affine: np.ndarray | None = None

    @property
    def grid(self) -> Grid:
        """The voxel grid of the map."""
        return Grid(self.path, tuple(self.data.shape), self.spacing, self.affine)


@dataclass
class ProbabilityMap:
    """Every channel of a probability map, ``(C, x, y, z)`` (a view of the file's array), with its grid."""

    channels: np.ndarray
    spacing: tuple[float, ...]
    path: Path
    affine: np.ndarray | None = None

    @property
    def grid(self) -> Grid:
        """The voxel grid of the map."""
        return Grid(self.path, tuple(self.channels.shape[1:]), self.spacing, self.affine)


def _open_nifti(path: Path) -> nib.Nifti1Image:
    try:
        img = nib.load(path)
    except FileNotFoundError:
        raise AuditError(f"{path}: file not found") from None
    except Exception as exc:  # nibabel raises several types for damaged or non-NIfTI headers
        raise AuditError(f"{path}: not a readable NIfTI file ({type(exc).__name__})") from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise AuditError(f"{path}: not a NIfTI file ({type(img).__name__})")
    return img


def _nifti_geometry(path: Path, img: nib.Nifti1Image) -> tuple[tuple[float, ...], np.ndarray]:
    """The spatial voxel size and the RAS+ affine in mm (NIfTI's spatial unit converted; unknown read as mm)."""
    unit = _SPATIAL_UNITS_MM.get(img.header.get_xyzt_units()[0], 1.0)
    zooms = tuple(float(z) * unit for z in img.header.get_zooms()[:3])
    if len(zooms) != 3 or min(zooms) <= 0:
        raise AuditError(f"{path}: voxel spacing {zooms} is not three positive sizes")
    affine = np.array(img.affine, dtype=float)
    affine[:3] *= unit
    return zooms, affine


def _nifti_data(path: Path, img: nib.Nifti1Image) -> np.ndarray:
    try:
        return np.asanyarray(img.dataobj)
    except Exception as exc:  # truncated gzip streams and short files
        raise AuditError(f"{path}: truncated or damaged NIfTI data ({type(exc).__name__})") from None


def _spatial(path: Path, data: np.ndarray, what: str) -> np.ndarray:
    """``data`` with trailing singleton axes beyond the third removed; AuditError unless it is 3D."""
    shape = data.shape
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise AuditError(f"{path}: expected a 3D {what}, found shape {data.shape}")
    return data.reshape(shape)


def read_probability_nifti(path: Path) -> ProbabilityMap:
    """A NIfTI probability map, every channel: ``(x, y, z)``, ``(x, y, z, C)`` or ``(x, y, z, 1, C)``."""
    img = _open_nifti(path)
    spacing, affine = _nifti_geometry(path, img)
    data = _nifti_data(path, img)
    if data.ndim == 5 and data.shape[3] == 1:  # NIfTI vector layout (x, y, z, 1, C)
        data = data[:, :, :, 0, :]
    if data.ndim == 4 and data.shape[3] > 1:
        channels = np.moveaxis(data, 3, 0)
    else:
        channels = _spatial(path, data, "probability map")[None]
    return ProbabilityMap(channels, spacing, path, affine)


def read_label_nifti(path: Path) -> Volume:
    """A NIfTI label map, values as stored (the dtype of the file, scaled if the header says so)."""
    img = _open_nifti(path)
    spacing, affine = _nifti_geometry(path, img)
    return Volume(_spatial(path, _nifti_data(path, img), "label map"), spacing, path, affine)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that rebuilds builtins and numpy arrays/scalars only (nnU-Net's property dicts)."""

    _ALLOWED = {
        ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "slice"), ("builtins", "complex"),
        ("collections", "OrderedDict"), ("numpy", "dtype"), ("numpy", "ndarray"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to rebuild {module}.{name}")
        return super().find_class(module, name)


def read_properties(path: Path) -> dict[str, Any]:
    """nnU-Net's pickled properties of one case (restricted unpickler)."""
    if not path.is_file():
        raise AuditError(f"{path}: missing; nnU-Net writes <case>.pkl (the geometry) next to <case>.npz")
    try:
        with path.open("rb") as handle:
            properties = _RestrictedUnpickler(handle).load()
    except Exception as exc:  # damaged, truncated or foreign pickles
        raise AuditError(f"{path}: not a readable nnU-Net properties pickle ({type(exc).__name__})") from None
    if not isinstance(properties, dict):
        raise AuditError(f"{path}: expected a dict of nnU-Net properties, found {type(properties).__name__}")
    return properties


def _three(path: Path, what: str, values: Any) -> tuple[float, ...]:
    out = tuple(float(v) for v in np.ravel(values))
    if len(out) != 3 or min(out) <= 0:
        raise AuditError(f"{path}: {what} {out} is not three positive sizes (the audit reads 3D images)")
    return out


def nnunet_spacing(path: Path, properties: dict[str, Any] | None = None) -> tuple[float, ...]:
    """Voxel size ``(x, y, z)`` in mm from nnU-Net's ``<case>.pkl`` (``spacing`` reversed, else ``sitk_stuff``)."""
    properties = read_properties(path) if properties is None else properties
    sitk = properties.get("sitk_stuff")
    if "spacing" in properties:
        return _three(path, "voxel spacing", properties["spacing"])[::-1]
    if isinstance(sitk, dict) and "spacing" in sitk:
        return _three(path, "voxel spacing", sitk["spacing"])
    raise AuditError(f"{path}: no voxel spacing (keys 'spacing' or 'sitk_stuff'/'spacing')")


def nnunet_affine(path: Path, properties: dict[str, Any]) -> np.ndarray | None:
    """RAS+ affine (mm) of the map's ``(x, y, z)`` array from nnU-Net's properties; None when they hold none."""
    nib_stuff, sitk = properties.get("nibabel_stuff"), properties.get("sitk_stuff")
    if isinstance(nib_stuff, dict) and ("reoriented_affine" in nib_stuff or "original_affine" in nib_stuff):
        affine = np.asarray(nib_stuff.get("reoriented_affine", nib_stuff.get("original_affine")), dtype=float)
        if affine.shape != (4, 4) or not np.isfinite(affine).all():
            raise AuditError(f"{path}: 'nibabel_stuff' holds no 4 x 4 affine")
        return affine
    if isinstance(sitk, dict) and {"spacing", "origin", "direction"} <= set(sitk):
        spacing = _three(path, "sitk_stuff spacing", sitk["spacing"])
        origin, direction = np.ravel(sitk["origin"]), np.ravel(sitk["direction"])
        if origin.size != 3 or direction.size != 9:
            raise AuditError(f"{path}: 'sitk_stuff' origin or direction is not 3D")
        return sitk_affine(spacing, origin, direction)
    return None


def read_probability_nnunet(path: Path) -> ProbabilityMap:
    """nnU-Net's ``probabilities`` ``(C, z, y, x)`` as a ``(C, x, y, z)`` view, with the grid of ``<case>.pkl``."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.files)
            if "probabilities" not in keys:
                hint = "; a nnU-Net v1 'softmax' archive? only v2's 'probabilities' is read" if "softmax" in keys else ""
                raise AuditError(f"{path}: no 'probabilities' array (found {keys}){hint}")
            probabilities = archive["probabilities"]
    except AuditError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise AuditError(f"{path}: not a readable npz archive ({type(exc).__name__})") from None
    if probabilities.ndim != 4:
        raise AuditError(f"{path}: 'probabilities' has shape {probabilities.shape}, expected (channels, z, y, x)")
    pkl = path.with_suffix(".pkl")
    properties = read_properties(pkl)
    return ProbabilityMap(probabilities.transpose(0, 3, 2, 1), nnunet_spacing(pkl, properties), path,
                          nnunet_affine(pkl, properties))
