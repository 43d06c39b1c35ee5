"""``run_audit``: read, check and measure every case, summarise, and write the report atomically."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from volbias.audit.checks import check_probabilities, check_same_grid, foreground
from volbias.audit.discovery import CaseFiles, detect_format, match_cases, name_list
from volbias.audit.errors import AuditError
from volbias.audit.estimators import estimator_summary, estimator_table
from volbias.audit.measures import CaseMeasures, measure_case
from volbias.audit.readers import read_label_nifti, read_probability_nifti, read_probability_nnunet
from volbias.audit.report import check_out_dir, publish
from volbias.audit.summary import overall_numbers
from volbias.audit.verdict import verdict


@dataclass
class AuditSettings:
    """What was audited and how (recorded in ``summary.json``)."""

    pred: Path
    references: tuple[Path, ...]
    input_format: str
    channel: int | None
    labels: tuple[int, ...] | None
    threshold: float
    seed: int
    n_bins: int


@dataclass
class AuditResult:
    """Everything the report shows; written to ``out`` by :func:`run_audit`."""

    out: Path
    settings: AuditSettings
    cases: pd.DataFrame
    estimators: pd.DataFrame
    estimator_summary: pd.DataFrame
    numbers: dict[str, Any]
    verdict: list[str]
    without_reference: tuple[str, ...]
    without_prediction: tuple[str, ...]
    measures: list[CaseMeasures] = field(repr=False, default_factory=list)

    @property
    def model(self) -> str:
        """A short name of the audited model: its prediction folder's name."""
        return self.settings.pred.name or str(self.settings.pred)


def _read_case(files: CaseFiles, settings: AuditSettings) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Checked probability map, the raters' votes per voxel (uint8) and the spacing of one case."""
    reader = read_probability_nnunet if settings.input_format == "nnunet" else read_probability_nifti
    prediction = reader(files.prediction, settings.channel)
    prob = check_probabilities(prediction)
    first = read_label_nifti(files.references[0])
    check_same_grid(prediction, first)
    votes = foreground(first, settings.labels).astype(np.uint8)
    for path in files.references[1:]:
        rater = read_label_nifti(path)
        check_same_grid(rater, first)
        votes += foreground(rater, settings.labels)
    return prob, votes, first.spacing


MAX_RATERS = 255
"""Raters per case (their votes are counted in one byte per voxel)."""


def _check_options(threshold: float, n_bins: int, channel: int | None, n_raters: int) -> None:
    if n_raters > MAX_RATERS:
        raise AuditError(f"--raters: {n_raters} reference folders; at most {MAX_RATERS} are supported")
    if not 0 < threshold < 1:
        raise AuditError(f"--threshold {threshold:g}: must lie strictly between 0 and 1")
    if n_bins < 1:
        raise AuditError(f"--n-bins {n_bins}: must be at least 1")
    if channel is not None and channel < 0:
        raise AuditError(f"--channel {channel}: must be 0 or more")


def run_audit(pred: str | Path, ref: str | Path, out: str | Path, *, raters: Sequence[str | Path] = (),
              input_format: str = "auto", channel: int | None = None, labels: Sequence[int] | None = None,
              threshold: float = 0.5, strict: bool = False, overwrite: bool = False, seed: int = 0,
              n_bins: int = 10, progress: bool = True) -> AuditResult:
    """Audit the volumes of the probability maps in ``pred`` against the label maps in ``ref`` (and ``raters``).

    ``ref`` and every folder of ``raters`` hold one label map per case; the reference is their mean.
    Predictions without a reference are skipped (listed in the result and the report), or refused when
    ``strict``.  Nothing is written unless every case passes its checks; the report replaces ``out``
    in one step (an existing non-empty ``out`` only with ``overwrite``).  Raises :class:`AuditError`.
    """
    _check_options(threshold, n_bins, channel, 1 + len(raters))
    out = Path(out)
    check_out_dir(out, overwrite)
    pred = Path(pred)
    settings = AuditSettings(pred, (Path(ref), *map(Path, raters)), detect_format(pred, input_format), channel,
                             tuple(int(v) for v in labels) if labels is not None else None, float(threshold),
                             int(seed), int(n_bins))
    matching = match_cases(pred, settings.references, settings.input_format)
    if strict and (matching.without_reference or matching.without_prediction):
        problems = []
        if matching.without_reference:
            problems.append(f"predictions without a reference: {name_list(matching.without_reference)}")
        if matching.without_prediction:
            problems.append(f"references without a prediction: {name_list(matching.without_prediction)}")
        raise AuditError(f"{pred}: {'; '.join(problems)} (--strict)")
    if not matching.cases:
        raise AuditError(f"{pred}: no prediction has a reference in {settings.references[0]} (case names differ?)")

    measures = []
    for files in tqdm(matching.cases, desc="audit", unit="case", disable=not progress):
        prob, votes, spacing = _read_case(files, settings)
        measures.append(measure_case(files.case_id, prob, votes, len(files.references), spacing, settings.threshold,
                                     settings.n_bins))
    cases = pd.DataFrame([m.row for m in measures])
    estimators = estimator_table(measures, settings.threshold, n_bins=settings.n_bins, seed=settings.seed)
    ranked = estimator_summary(estimators, seed=settings.seed)
    numbers = overall_numbers(cases, measures, seed=settings.seed)
    result = AuditResult(out, settings, cases, estimators, ranked, numbers,
                         verdict(numbers, settings.threshold, ranked), matching.without_reference,
                         matching.without_prediction, measures)
    publish(result, out, overwrite)
    return result
