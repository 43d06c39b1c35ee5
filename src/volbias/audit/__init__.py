"""``volbias audit``: can the volumes of an existing segmentation model be trusted?

Reads a model's probability maps (NIfTI, or nnU-Net's ``--save_probabilities`` output) and reference
label maps (one or several raters), checks them, puts each map on its reference's voxel grid, and writes a
report of Dice, thresholded and soft volumes against the reference, volume bias with bootstrap CIs and an
equivalence verdict, calibration, tau* and the Dice-optimal mask, the volume estimators of the chapter
"Which volume to trust" and a verdict in plain words.

Modules, from the bottom up: :mod:`.errors`; :mod:`.nnunet` (nnU-Net's marker files and ``dataset.json``),
:mod:`.geometry` (voxel grids and reorientation), :mod:`.discovery` (files and case matching),
:mod:`.readers` (NIfTI, nnU-Net), :mod:`.channels` (which channels, softmax sums, argmax), :mod:`.checks`
(input checks), :mod:`.calibration` (reliability tables), :mod:`.measures` (per-case numbers),
:mod:`.casework` (one case, read to measured), :mod:`.estimators` (the chapter's estimators, cross-fitted),
:mod:`.summary` (overall numbers), :mod:`.verdict`, :mod:`.result` (:class:`AuditResult`), :mod:`.plots`,
:mod:`.report` (atomic writing), :mod:`.run` (:func:`run_audit`), :mod:`.command` (the command line) and
:mod:`.export` (the book's runs as NIfTI files).  ``run_audit`` and ``AuditResult`` are imported on first
use, so that the command line starts without loading the numerical stack.
"""

from __future__ import annotations

from typing import Any

from volbias.audit.errors import AuditError

__all__ = ["AuditError", "AuditResult", "run_audit"]


def __getattr__(name: str) -> Any:
    if name == "AuditResult":
        from volbias.audit.result import AuditResult

        return AuditResult
    if name == "run_audit":
        from volbias.audit.run import run_audit

        return run_audit
    raise AttributeError(f"module 'volbias.audit' has no attribute {name!r}")
