"""Finding the audit's files and matching predictions to references by case name.

A case is named by its file name without the extension: ``<case>.nii.gz`` / ``<case>.nii`` for NIfTI
probability and label maps, ``<case>.npz`` (with ``<case>.pkl`` next to it) for nnU-Net's
``--save_probabilities`` output.  Hidden files are ignored; in an nnU-Net folder, the hard segmentations
``<case>.nii.gz`` nnU-Net writes next to the archives are not read, only used to name the cases whose
``<case>.npz`` is missing.  A folder with nnU-Net's marker files but no archive at all was predicted without
``--save_probabilities``: its segmentations are not probability maps, and it is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from volbias.audit.errors import AuditError
from volbias.audit.nnunet import markers

NIFTI_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii")
NNUNET_SUFFIX = ".npz"
FORMATS: tuple[str, ...] = ("auto", "nifti", "nnunet")


@dataclass(frozen=True)
class CaseFiles:
    """The files of one matched case: its probability map and one label map per reference rater."""

    case_id: str
    prediction: Path
    references: tuple[Path, ...]


@dataclass(frozen=True)
class Matching:
    """Matched cases (sorted by id), predictions without a complete reference, references without prediction,
    and (nnU-Net) cases with a segmentation but no probability archive."""

    cases: tuple[CaseFiles, ...]
    without_reference: tuple[str, ...]
    without_prediction: tuple[str, ...]
    without_probabilities: tuple[str, ...] = ()


def _case_name(path: Path, suffixes: Sequence[str]) -> str | None:
    for suffix in suffixes:
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            return path.name[: -len(suffix)]
    return None


def _files(folder: Path, suffixes: Sequence[str], role: str, what: str) -> dict[str, Path]:
    """Case name -> file for every file of ``folder`` ending in one of ``suffixes``."""
    if not folder.is_dir():
        raise AuditError(f"{folder}: no such folder ({role})")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        name = _case_name(path, suffixes)
        if name is None or path.name.startswith(".") or not path.is_file():
            continue
        if name in found:
            raise AuditError(f"{path}: a second file for case {name!r} ({found[name].name}); keep one")
        found[name] = path
    if not found:
        raise AuditError(f"{folder}: empty folder, no {what} ({', '.join('*' + s for s in suffixes)}) ({role})")
    return found


def detect_format(pred_dir: Path, input_format: str = "auto") -> str:
    """``"nnunet"`` when the prediction folder holds ``*.npz`` archives (``auto``), else ``"nifti"``; AuditError
    for an nnU-Net folder without archives (predicted without ``--save_probabilities``)."""
    if input_format not in FORMATS:
        raise AuditError(f"format={input_format!r}: expected one of {', '.join(FORMATS)}")
    if input_format != "auto":
        return input_format
    if not pred_dir.is_dir():
        raise AuditError(f"{pred_dir}: no such folder (--pred)")
    if any(p.suffix == NNUNET_SUFFIX and not p.name.startswith(".") for p in pred_dir.iterdir()):
        return "nnunet"
    found = markers(pred_dir)
    if found:
        raise AuditError(f"{pred_dir}: an nnU-Net prediction folder ({', '.join(found)}) without probability maps "
                         "(<case>.npz): its segmentations are not probabilities; run nnUNetv2_predict again with "
                         "--save_probabilities (or pass --format nifti --allow-binary to audit the segmentations)")
    return "nifti"


def prediction_files(pred_dir: Path, input_format: str) -> dict[str, Path]:
    """Case name -> probability map file of the prediction folder."""
    if input_format == "nnunet":
        return _files(pred_dir, (NNUNET_SUFFIX,), "--pred", "nnU-Net probability archives")
    return _files(pred_dir, NIFTI_SUFFIXES, "--pred", "NIfTI probability maps")


def segmentation_names(pred_dir: Path, file_ending: str) -> set[str]:
    """Case names of the segmentations ``<case><file_ending>`` nnU-Net wrote into ``pred_dir``."""
    return {path.name[: -len(file_ending)] for path in pred_dir.iterdir()
            if path.name.endswith(file_ending) and len(path.name) > len(file_ending) and not path.name.startswith(".")}


def match_cases(pred_dir: Path, ref_dirs: Sequence[Path], input_format: str, file_ending: str = ".nii.gz"
                ) -> Matching:
    """Match the predictions to the references of every rater folder by case name.

    A prediction is matched when every rater folder holds its case; the others are listed as
    without reference.  References without a prediction are listed too; in an nnU-Net folder those with a
    segmentation ``<case><file_ending>`` but no ``<case>.npz`` are listed apart, as without probabilities.
    """
    predictions = prediction_files(pred_dir, input_format)
    references = [_files(d, NIFTI_SUFFIXES, "--ref" if i == 0 else "--raters", "NIfTI label maps")
                  for i, d in enumerate(ref_dirs)]
    cases, missing = [], []
    for name in sorted(predictions):
        if all(name in rater for rater in references):
            cases.append(CaseFiles(name, predictions[name], tuple(rater[name] for rater in references)))
        else:
            missing.append(name)
    unused = sorted(set().union(*references) - set(predictions))
    segmentations = segmentation_names(pred_dir, file_ending) if input_format == "nnunet" else set()
    return Matching(tuple(cases), tuple(missing), tuple(n for n in unused if n not in segmentations),
                    tuple(n for n in unused if n in segmentations))


def name_list(names: Sequence[str], limit: int = 5) -> str:
    """``"a, b, c"`` or ``"a, b, c, d, e and 3 more"`` for one-line messages."""
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"
