"""Readers for BraTS 2018: the official training layout and the 10-case public sample.

Official layout (BraTS 2018 training release)::

    <root>/HGG/Brats18_<inst>_<pid>_1/Brats18_<inst>_<pid>_1_{flair,t1,t1ce,t2,seg}.nii.gz
    <root>/LGG/...
(case folders directly under <root> are accepted too). seg labels {0, 1, 2, 4}; whole tumour = seg > 0.

Public sample layout (JeroenBertels/deepvoxnet2 demos/brats_2018)::

    <root>/case_<k>/{FLAIR,T1,GT_W}.nii.gz and subject_id.txt (BraTS id, used as the case id)
"""

from __future__ import annotations

from pathlib import Path

from .errors import DataError
from .nifti import SourceCase

BRATS_MODALITIES = ("flair", "t1", "t1ce", "t2")
BRATS_LABELS = (0.0, 1.0, 2.0, 4.0)
SAMPLE_FILES = ("FLAIR.nii.gz", "T1.nii.gz")
SAMPLE_LABEL = "GT_W.nii.gz"


def _nifti(folder: Path, stem: str) -> Path:
    for ext in (".nii.gz", ".nii"):
        if (folder / f"{stem}{ext}").is_file():
            return folder / f"{stem}{ext}"
    raise DataError(f"{folder / (stem + '.nii.gz')}: missing file")


def find_brats18(root: Path) -> list[SourceCase]:
    """Cases of the official BraTS 2018 training layout under `root` (sorted by id)."""
    dirs = [d for pattern in ("Brats18_*", "*/Brats18_*") for d in root.glob(pattern) if d.is_dir()]
    if not dirs:
        raise DataError(f"{root}: no Brats18_* case folders found (expected <root>/HGG/Brats18_*/...)")
    cases = []
    for d in sorted(dirs, key=lambda p: p.name):
        images = [_nifti(d, f"{d.name}_{m}") for m in BRATS_MODALITIES]
        grade = d.parent.name if d.parent != root else ""
        cases.append(SourceCase(d.name, images, _nifti(d, f"{d.name}_seg"), BRATS_LABELS, {"grade": grade}))
    return cases


def subject_id(folder: Path) -> str:
    """BraTS id of a sample case from its subject_id.txt (`Subject_id: <id>`), else the folder name."""
    path = folder / "subject_id.txt"
    if not path.is_file():
        return folder.name
    for line in path.read_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == "subject_id" and value.strip():
            return value.strip()
    raise DataError(f"{path}: no 'Subject_id: <id>' line")


def find_brats18_sample(root: Path) -> list[SourceCase]:
    """Cases of the public BraTS 2018 sample layout under `root` (sorted by folder index)."""
    dirs = sorted((d for d in root.glob("case_*") if d.is_dir()), key=lambda p: (len(p.name), p.name))
    if not dirs:
        raise DataError(f"{root}: no case_<k> folders found (expected <root>/case_<k>/FLAIR.nii.gz ...)")
    cases = []
    for d in dirs:
        images = [d / f for f in SAMPLE_FILES]
        for path in [*images, d / SAMPLE_LABEL]:
            if not path.is_file():
                raise DataError(f"{path}: missing file")
        cases.append(SourceCase(subject_id(d), images, d / SAMPLE_LABEL, (0.0, 1.0), {"folder": d.name}))
    return cases
