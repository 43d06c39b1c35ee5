"""``volbias audit``: can the volumes of an existing segmentation model be trusted?

Reads a model's probability maps (NIfTI, or nnU-Net's ``--save_probabilities`` output) and reference
label maps (one or several raters), checks them, and writes a report of Dice, thresholded and soft
volumes against the reference, volume bias with bootstrap CIs, calibration, tau* and the Dice-optimal
mask, the volume estimators of the chapter "Which volume to trust" and a verdict in plain words.

Modules: :mod:`.discovery` (files and case matching), :mod:`.readers` (NIfTI, nnU-Net), :mod:`.checks`
(input checks), :mod:`.measures` (per-case numbers), :mod:`.calibration` (reliability tables),
:mod:`.estimators` (the chapter's estimators, cross-fitted), :mod:`.summary` (overall numbers),
:mod:`.verdict`, :mod:`.plots`, :mod:`.report` (atomic writing), :mod:`.run` (:func:`run_audit`) and
:mod:`.command` (the command line).  ``run_audit`` and ``AuditResult`` are imported on first use, so that
the command line starts without loading the numerical stack.
"""

from __future__ import annotations

from typing import Any

from volbias.audit.errors import AuditError

__all__ = ["AuditError", "AuditResult", "run_audit"]


def __getattr__(name: str) -> Any:
    if name in ("AuditResult", "run_audit"):
        from volbias.audit import run

        return getattr(run, name)
    raise AttributeError(f"module 'volbias.audit' has no attribute {name!r}")
