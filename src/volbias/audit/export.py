"""Writing the book's own held-out predictions as NIfTI files, the input of ``volbias audit`` (nibabel).

A finished run holds its held-out maps in ``probabilities.npz``; :func:`export_held_out` writes each map of
the run's validation fold (clipped to [0, 1], zero outside the case's mask, as
:func:`volbias.estimators.compare.load_held_out_maps` reads it) as ``<case>.nii.gz`` float32 and the case's
reference as a 0/1 label map, both with the case's voxel size on a diagonal affine.  Maps of a task's test
cases (``split`` "test" in ``cases.csv``: fresh phantoms that every fold predicts) are not written: they are
not held out by one run of the cross-validation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import nibabel as nib
import numpy as np

from volbias.training.run_files import read_cases
from volbias.data.case import Case
from volbias.estimators.compare import load_held_out_maps

VALIDATION_SPLIT = "validation"
"""The ``split`` of a run's validation-fold cases in ``cases.csv`` (tables without the column hold only these)."""


def _save(path: Path, data: np.ndarray, spacing: Iterable[float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data, np.diag([*spacing, 1.0]))
    img.header.set_xyzt_units(xyz="mm")
    nib.save(img, path)


def write_probability_nifti(path: str | Path, prob: np.ndarray, spacing: Iterable[float]) -> Path:
    """A probability map as a float32 NIfTI file with voxel size ``spacing`` (mm)."""
    path = Path(path)
    _save(path, np.asarray(prob, dtype=np.float32), spacing)
    return path


def write_label_nifti(path: str | Path, mask: np.ndarray, spacing: Iterable[float]) -> Path:
    """A binary mask as a uint8 NIfTI label map (0 background, 1 foreground) with voxel size ``spacing`` (mm)."""
    path = Path(path)
    _save(path, np.asarray(mask, dtype=bool).astype(np.uint8), spacing)
    return path


def export_held_out(run_dirs: Iterable[str | Path], cases: Mapping[str, Case], pred_dir: str | Path,
                    ref_dir: str | Path) -> list[str]:
    """Write the validation-fold map of every run to ``pred_dir`` and its reference label to ``ref_dir``.

    ``cases`` maps case ids to every case the runs predicted (their validation cases and the task's test
    cases, if it has any); a case held out by two runs is refused (the runs of one model, one per fold,
    hold out each case once).  Returns the case ids written.
    """
    written: list[str] = []
    for run_dir in run_dirs:
        table = read_cases(Path(run_dir) / "cases.csv")
        validation = set(table["case_id"] if "split" not in table.columns
                         else table.loc[table["split"] == VALIDATION_SPLIT, "case_id"])
        for held_out in load_held_out_maps(run_dir, cases):
            case = held_out.case
            if case.id not in validation:
                continue
            if case.id in written:
                raise ValueError(f"{run_dir}: case {case.id!r} is held out by an earlier run too")
            spacing = case.spacing if case.spacing_known else (1.0,) * case.label.ndim
            write_probability_nifti(Path(pred_dir) / f"{case.id}.nii.gz", held_out.prob, spacing)
            write_label_nifti(Path(ref_dir) / f"{case.id}.nii.gz", case.label > 0.5, spacing)
            written.append(case.id)
    return written
