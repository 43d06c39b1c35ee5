"""``run_audit``: read, check and measure every case (``workers`` at a time), summarise, write the report atomically."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from volbias.audit.casework import CaseJob, audit_case
from volbias.audit.discovery import detect_format, match_cases, name_list
from volbias.audit.errors import AuditError
from volbias.audit.estimators import estimator_summary, estimator_table
from volbias.audit.measures import CaseMeasures
from volbias.audit.nnunet import ModelOutputs, read_dataset_json
from volbias.audit.report import check_out_dir, publish
from volbias.audit.result import AuditResult, AuditSettings
from volbias.audit.summary import overall_numbers
from volbias.audit.verdict import verdict

MAX_RATERS = 255
"""Raters per case (their votes are counted in one byte per voxel)."""


def _check_options(threshold: float, n_bins: int, channels: Sequence[int] | None, n_raters: int, tolerance: float,
                   workers: int) -> None:
    if n_raters > MAX_RATERS:
        raise AuditError(f"--raters: {n_raters} reference folders; at most {MAX_RATERS} are supported")
    if not 0 < threshold < 1:
        raise AuditError(f"--threshold {threshold:g}: must lie strictly between 0 and 1")
    if n_bins < 1:
        raise AuditError(f"--n-bins {n_bins}: must be at least 1")
    if channels is not None and (not channels or min(channels) < 0):
        raise AuditError(f"--channel {' '.join(map(str, channels))}: channels are numbered from 0")
    if not 0 < tolerance < 1:
        raise AuditError(f"--tolerance {tolerance:g}: a relative bias, between 0 and 1 (0.05 is ±5%)")
    if workers < 1:
        raise AuditError(f"--workers {workers}: must be at least 1")


def _worker_setup() -> None:
    """One torch thread per worker process (the workers are the parallelism)."""
    import torch

    torch.set_num_threads(1)


def _measured(jobs: Sequence[CaseJob], workers: int, progress: bool) -> Iterator[CaseMeasures]:
    """The measures of every job, in order: in this process, or in ``workers`` processes (one case each)."""
    bar = tqdm(total=len(jobs), desc="audit", unit="case", disable=not progress)
    try:
        if workers == 1 or len(jobs) == 1:
            for job in jobs:
                yield audit_case(job)
                bar.update()
            return
        context = multiprocessing.get_context("spawn")  # no fork of a process that runs torch threads
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context, initializer=_worker_setup) as pool:
            futures = [pool.submit(audit_case, job) for job in jobs]
            try:
                for future in futures:
                    yield future.result()
                    bar.update()
            finally:
                for future in futures:
                    future.cancel()
    finally:
        bar.close()


def _label_notes(outputs: ModelOutputs | None, channels: Sequence[int] | None, labels: Sequence[int] | None
                 ) -> list[str]:
    """A warning when ``--label`` differs from the label values that dataset.json gives the chosen channels."""
    if channels is None and outputs is not None and outputs.n_channels == 2 and not outputs.region_based:
        channels = (1,)  # the default channel of a two-class model
    if outputs is None or labels is None or channels is None or max(channels) >= outputs.n_channels:
        return []
    expected = sorted({v for c in channels for v in outputs.labels[c]})
    if sorted(set(labels)) == expected:
        return []
    which = " + ".join(outputs.describe(c) for c in channels)
    return [f"warning: --label {' '.join(map(str, labels))} does not match channel {which} in {outputs.path}; the "
            f"reference's labels {{{', '.join(map(str, sorted(set(labels))))}}} are compared with the map of labels "
            f"{{{', '.join(map(str, expected))}}}"]


def case_notes(measures: Sequence[CaseMeasures]) -> list[str]:
    """The cases' notes, one line per note with the cases it concerns: ``"2 cases (a, b): ..."``."""
    cases: dict[str, list[str]] = {}
    for m in measures:
        for note in m.notes:
            cases.setdefault(note, []).append(m.row["case_id"])
    return [f"{len(ids)} case{'s' if len(ids) > 1 else ''} ({name_list(ids)}): {note}" for note, ids in cases.items()]


def run_audit(pred: str | Path, ref: str | Path, out: str | Path, *, raters: Sequence[str | Path] = (),
              input_format: str = "auto", channel: int | Sequence[int] | None = None,
              labels: Sequence[int] | None = None, threshold: float = 0.5, strict: bool = False,
              overwrite: bool = False, seed: int = 0, n_bins: int = 10, tolerance: float = 0.05,
              allow_binary: bool = False, sigmoid: bool = False, workers: int = 1,
              progress: bool = True) -> AuditResult:
    """Audit the volumes of the probability maps in ``pred`` against the label maps in ``ref`` (and ``raters``).

    ``ref`` and every folder of ``raters`` hold one label map per case; the reference is their mean.
    ``channel`` names the channel(s) of multi-channel maps (several: their probabilities are summed); an
    nnU-Net folder's ``dataset.json`` says which channel is which label or region.  Predictions without a
    reference are skipped (listed in the result and the report), or refused when ``strict``.  Nothing is
    written unless every case passes its checks; the report replaces ``out`` in one step (an existing
    non-empty ``out`` only with ``overwrite``).  ``workers`` cases are read and measured at a time, each in
    a process of its own.  Raises :class:`AuditError`.
    """
    channels = (channel,) if isinstance(channel, int) else (tuple(int(c) for c in channel) if channel else None)
    _check_options(threshold, n_bins, channels, 1 + len(raters), tolerance, workers)
    out = Path(out)
    check_out_dir(out, overwrite)
    pred = Path(pred)
    settings = AuditSettings(pred, (Path(ref), *map(Path, raters)), detect_format(pred, input_format), channels,
                             tuple(int(v) for v in labels) if labels is not None else None, float(threshold),
                             int(seed), int(n_bins), float(tolerance), bool(allow_binary), bool(sigmoid), int(workers))
    outputs = read_dataset_json(pred) if settings.input_format == "nnunet" else None
    matching = match_cases(pred, settings.references, settings.input_format,
                           outputs.file_ending if outputs else ".nii.gz")
    if strict and (matching.without_reference or matching.without_prediction or matching.without_probabilities):
        problems = []
        if matching.without_reference:
            problems.append(f"predictions without a reference: {name_list(matching.without_reference)}")
        if matching.without_prediction:
            problems.append(f"references without a prediction: {name_list(matching.without_prediction)}")
        if matching.without_probabilities:
            problems.append(f"segmentations without <case>.npz: {name_list(matching.without_probabilities)}")
        raise AuditError(f"{pred}: {'; '.join(problems)} (--strict)")
    if not matching.cases:
        raise AuditError(f"{pred}: no prediction has a reference in {settings.references[0]} (case names differ?)")

    jobs = [CaseJob(files, settings.input_format, outputs, channels, settings.labels, settings.sigmoid,
                    settings.allow_binary, settings.threshold, settings.n_bins) for files in matching.cases]
    measures = list(_measured(jobs, settings.workers, progress))
    cases = pd.DataFrame([m.row for m in measures])
    estimators = estimator_table(measures, settings.threshold, n_bins=settings.n_bins, seed=settings.seed)
    ranked = estimator_summary(estimators, seed=settings.seed)
    numbers = overall_numbers(cases, measures, seed=settings.seed)
    numbers["channels"] = measures[0].channels
    notes = _label_notes(outputs, channels, settings.labels) + case_notes(measures)
    result = AuditResult(out, settings, cases, estimators, ranked, numbers,
                         verdict(numbers, settings.threshold, ranked, settings.tolerance, settings.allow_binary),
                         matching.without_reference, matching.without_prediction, matching.without_probabilities,
                         notes, measures)
    publish(result, out, overwrite)
    return result

