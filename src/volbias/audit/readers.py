"""Reading probability maps and reference label maps into arrays on one voxel grid (nibabel, numpy).

Every reader returns a :class:`Volume`: the voxel data in nibabel's array order ``(x, y, z)`` and the
voxel size in mm along those axes.  Files that cannot be read raise :class:`AuditError` naming the file.

NIfTI probability maps hold one foreground channel ``(x, y, z)`` or a softmax ``(x, y, z, C)`` (also
``(x, y, z, 1, C)``, the NIfTI vector layout); ``channel`` picks one of the ``C`` channels.

nnU-Net v2's ``--save_probabilities`` writes ``<case>.npz`` with the array ``probabilities`` of shape
``(C, z, y, x)``: the channel axis first, then the axes of the image array its reader-writer produced,
which are the reverse of nibabel's ``(x, y, z)`` (SimpleITK arrays are ``z, y, x``; nnU-Net's nibabel
reader transposes to match).  The map is therefore transposed back to ``(x, y, z)``.  Its geometry is in
``<case>.pkl``, a pickled dict of which two keys are used:

- ``spacing``: the voxel size in nnU-Net's array order ``(z, y, x)`` (written by every reader-writer);
  reversed to ``(x, y, z)``;
- ``sitk_stuff["spacing"]``: the SimpleITK spacing ``(x, y, z)``, read where ``spacing`` is absent.

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

_SPATIAL_UNITS_MM = {"mm": 1.0, "unknown": 1.0, "meter": 1000.0, "micron": 0.001}


@dataclass
class Volume:
    """Voxel data in ``(x, y, z)`` order and the voxel size in mm per axis."""

    data: np.ndarray
    spacing: tuple[float, ...]
    path: Path


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


def _nifti_spacing(path: Path, img: nib.Nifti1Image) -> tuple[float, ...]:
    """The spatial voxel size in mm (NIfTI's spatial unit converted; an unknown unit is read as mm)."""
    unit = img.header.get_xyzt_units()[0]
    zooms = tuple(float(z) * _SPATIAL_UNITS_MM.get(unit, 1.0) for z in img.header.get_zooms()[:3])
    if len(zooms) != 3 or min(zooms) <= 0:
        raise AuditError(f"{path}: voxel spacing {zooms} is not three positive sizes")
    return zooms


def _nifti_data(path: Path, img: nib.Nifti1Image, index: tuple[Any, ...] = ()) -> np.ndarray:
    try:
        return np.asanyarray(img.dataobj[index] if index else img.dataobj)
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


def pick_channel(path: Path, n_channels: int, channel: int | None) -> int:
    """The foreground channel of a multi-channel map: ``channel``, else 1 of 2 (background, foreground)."""
    if channel is None:
        if n_channels == 1:
            return 0
        if n_channels == 2:
            return 1
        raise AuditError(f"{path}: {n_channels} channels; name the foreground channel with --channel")
    if not 0 <= channel < n_channels:
        raise AuditError(f"{path}: --channel {channel} is not one of its {n_channels} channels (0..{n_channels - 1})")
    return channel


def read_probability_nifti(path: Path, channel: int | None = None) -> Volume:
    """A NIfTI probability map, one channel of a 4D softmax when it has several (float32)."""
    img = _open_nifti(path)
    shape = tuple(int(s) for s in img.shape)
    if len(shape) == 5 and shape[3] == 1:  # NIfTI vector layout (x, y, z, 1, C)
        shape = (*shape[:3], shape[4])
    if len(shape) == 4 and shape[3] > 1:
        c = pick_channel(path, shape[3], channel)
        index = (slice(None),) * 3 + ((0, c) if len(img.shape) == 5 else (c,))
        data = _nifti_data(path, img, index)
    else:
        if channel not in (None, 0):
            raise AuditError(f"{path}: --channel {channel} given, but the map has a single channel")
        data = _spatial(path, _nifti_data(path, img), "probability map")
    return Volume(np.asarray(data, dtype=np.float32), _nifti_spacing(path, img), path)


def read_label_nifti(path: Path) -> Volume:
    """A NIfTI label map, values as stored (the dtype of the file, scaled if the header says so)."""
    img = _open_nifti(path)
    data = _spatial(path, _nifti_data(path, img), "label map")
    return Volume(data, _nifti_spacing(path, img), path)


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


def _read_properties(path: Path) -> dict[str, Any]:
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


def nnunet_spacing(path: Path) -> tuple[float, ...]:
    """Voxel size ``(x, y, z)`` in mm from nnU-Net's ``<case>.pkl`` (``spacing`` reversed, else ``sitk_stuff``)."""
    properties = _read_properties(path)
    sitk = properties.get("sitk_stuff")
    if "spacing" in properties:
        spacing = tuple(float(s) for s in np.ravel(properties["spacing"]))[::-1]
    elif isinstance(sitk, dict) and "spacing" in sitk:
        spacing = tuple(float(s) for s in np.ravel(sitk["spacing"]))
    else:
        raise AuditError(f"{path}: no voxel spacing (keys 'spacing' or 'sitk_stuff'/'spacing')")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise AuditError(f"{path}: voxel spacing {spacing} is not three positive sizes")
    return spacing


def read_probability_nnunet(path: Path, channel: int | None = None) -> Volume:
    """One channel of nnU-Net's ``probabilities`` ``(C, z, y, x)``, as ``(x, y, z)`` float32, with its spacing."""
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
    c = pick_channel(path, probabilities.shape[0], channel)
    data = np.asarray(probabilities[c], dtype=np.float32).transpose(2, 1, 0)
    return Volume(data, nnunet_spacing(path.with_suffix(".pkl")), path)
