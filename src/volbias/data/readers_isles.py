"""Readers for the ISLES 2017 and ISLES 2018 training layouts (one .nii per modality, one folder each).

ISLES 2017 (SMIR/VSD export)::

    <root>/training_<n>/VSD.Brain.XX.O.MR_ADC.<id>/VSD.Brain.XX.O.MR_ADC.<id>.nii
        ... MR_MTT, MR_rCBF, MR_rCBV, MR_Tmax, MR_TTP (MR_4DPWI is not used),
        and VSD.Brain.XX.O.OT.<id>/... (final infarct)
ISLES 2018::

    <root>/case_<n>/SMIR.Brain.XX.O.CT.<id>/SMIR.Brain.XX.O.CT.<id>.nii
        ... CT_CBF, CT_CBV, CT_MTT, CT_Tmax (CT_4DPWI is not used), and SMIR.Brain.XX.O.OT.<id>/... (core)
The modality is the fifth dot-separated field of the folder name; case folders may sit directly under
<root> or one level deeper (e.g. <root>/TRAINING/case_<n>). Case ids are the case folder names
(training_<n>, case_<n>), as in the paper's folds. Both layouts are those of the challenge releases
(SMIR export, re-hosted on Zenodo record 17736412), e.g. ``ISLES2018_Training/TRAINING/case_1/
SMIR.Brain.XX.O.CT_CBF.345563/SMIR.Brain.XX.O.CT_CBF.345563.nii``. The file names inside the Zenodo
archives are not listed here, so these sets are read from a local extraction given by ``root=`` (or
``$VOLBIAS_DATA_MIRROR/ISLES2017_Training`` / ``ISLES2018_Training``). All modalities of a case must share
one grid (shape and affine), else DataError names the file that differs.
"""

from __future__ import annotations

from pathlib import Path

from .errors import DataError
from .nifti import SourceCase

IS17_MODALITIES = ("MR_ADC", "MR_Tmax", "MR_MTT", "MR_TTP", "MR_rCBF", "MR_rCBV")  # paper's channel order
IS18_MODALITIES = ("CT", "CT_Tmax", "CT_MTT", "CT_CBF", "CT_CBV")
LABEL_TOKEN = "OT"


def _case_dirs(root: Path, prefix: str) -> list[Path]:
    dirs = {d for pattern in (f"{prefix}*", f"*/{prefix}*") for d in root.glob(pattern) if d.is_dir()}
    dirs = {d for d in dirs if d.name[len(prefix):].isdigit()}
    return sorted(dirs, key=lambda d: int(d.name[len(prefix):]))


def _modality_files(case_dir: Path) -> dict[str, Path]:
    """Modality token -> .nii file inside its <...>.<token>.<id>/ folder."""
    found: dict[str, Path] = {}
    for sub in case_dir.iterdir():
        parts = sub.name.split(".")
        if not sub.is_dir() or len(parts) < 6:
            continue
        files = sorted(p for p in sub.iterdir() if p.name.endswith((".nii", ".nii.gz")))
        if files:
            found[parts[4]] = files[0]
    return found


def _find(root: Path, prefix: str, modalities: tuple[str, ...], example: str) -> list[SourceCase]:
    dirs = _case_dirs(root, prefix)
    if not dirs:
        raise DataError(f"{root}: no {prefix}<n> case folders found (expected {example})")
    cases = []
    for d in dirs:
        files = _modality_files(d)
        for token in (*modalities, LABEL_TOKEN):
            if token not in files:
                raise DataError(f"{d}: missing modality {token} (no *.{token}.<id>/*.nii)")
        cases.append(SourceCase(d.name, [files[m] for m in modalities], files[LABEL_TOKEN], (0.0, 1.0)))
    return cases


def find_isles17(root: Path) -> list[SourceCase]:
    """Cases of the ISLES 2017 training layout under `root` (sorted by case number)."""
    return _find(root, "training_", IS17_MODALITIES, "<root>/training_<n>/VSD.Brain.XX.O.MR_ADC.<id>/...nii")


def find_isles18(root: Path) -> list[SourceCase]:
    """Cases of the ISLES 2018 training layout under `root` (sorted by case number)."""
    return _find(root, "case_", IS18_MODALITIES, "<root>/case_<n>/SMIR.Brain.XX.O.CT.<id>/...nii")
