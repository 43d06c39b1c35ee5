"""One case of an audit: read its map and reference label maps, check them, put them on one grid, measure.

:func:`audit_case` is what each worker of ``--workers`` runs; it holds one case's arrays at a time and
returns only the case's :class:`~volbias.audit.measures.CaseMeasures`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from volbias.audit.channels import choose_channels, foreground_map
from volbias.audit.checks import check_not_binary, check_probabilities, foreground
from volbias.audit.discovery import CaseFiles
from volbias.audit.geometry import align
from volbias.audit.measures import CaseMeasures, measure_case
from volbias.audit.nnunet import ModelOutputs
from volbias.audit.readers import read_label_nifti, read_probability_nifti, read_probability_nnunet


@dataclass(frozen=True)
class CaseJob:
    """Everything one case's audit needs (picklable, for worker processes)."""

    files: CaseFiles
    input_format: str
    outputs: ModelOutputs | None
    channels: tuple[int, ...] | None
    labels: tuple[int, ...] | None
    sigmoid: bool
    allow_binary: bool
    threshold: float
    n_bins: int


def audit_case(job: CaseJob) -> CaseMeasures:
    """Read, check, align and measure one case (AuditError naming the file for bad input)."""
    files = job.files
    reader = read_probability_nnunet if job.input_format == "nnunet" else read_probability_nifti
    prediction = reader(files.prediction)
    choice = choose_channels(prediction.channels.shape[0], files.prediction, job.outputs, job.channels, job.sigmoid)
    prob, argmax = foreground_map(prediction.channels, choice, files.prediction)
    integers, grid = prediction.channels.dtype.kind in "iub", prediction.grid
    del prediction
    check_not_binary(prob, files.prediction, integers, job.allow_binary)
    prob = check_probabilities(prob, files.prediction)
    labels = job.labels if job.labels is not None else choice.labels
    first = read_label_nifti(files.references[0])
    alignment = align(grid, first.grid)
    prob = alignment.apply(prob)
    argmax = None if argmax is None else alignment.apply(argmax)
    votes = foreground(first, labels).astype(np.uint8)
    for path in files.references[1:]:
        rater = read_label_nifti(path)
        votes += align(rater.grid, first.grid).apply(foreground(rater, labels))
    measures = measure_case(files.case_id, prob, votes, len(files.references), first.spacing, job.threshold,
                            job.n_bins, argmax)
    measures.channels = choice.description
    if alignment.reoriented:
        measures.notes.append(f"map stored in {alignment.source} axis order, reference in {alignment.target}: map "
                              "reoriented onto the reference grid")
    elif not alignment.checked:
        measures.notes.append("orientation and origin not checked (the prediction file holds no orientation): only "
                              "shape and voxel size were compared")
    return measures

