"""What an audit was asked to do (:class:`AuditSettings`) and what it found (:class:`AuditResult`).

Both live below :mod:`.run`, :mod:`.report` and :mod:`.plots`, which all read them, so that none of those
modules imports another for its types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from volbias.audit.measures import CaseMeasures


@dataclass
class AuditSettings:
    """What was audited and how (recorded in ``summary.json``)."""

    pred: Path
    references: tuple[Path, ...]
    input_format: str
    channels: tuple[int, ...] | None
    labels: tuple[int, ...] | None
    threshold: float
    seed: int
    n_bins: int
    tolerance: float = 0.05
    allow_binary: bool = False
    sigmoid: bool = False
    workers: int = 1


@dataclass
class AuditResult:
    """Everything the report shows; written to ``out`` by :func:`volbias.audit.run.run_audit`.

    ``notes`` are the report's statements about the input (maps reoriented onto the reference grid,
    the channels audited, label mismatches, binary maps); ``without_probabilities`` lists nnU-Net cases
    with a segmentation but no ``<case>.npz``.
    """

    out: Path
    settings: AuditSettings
    cases: pd.DataFrame
    estimators: pd.DataFrame
    estimator_summary: pd.DataFrame
    numbers: dict[str, Any]
    verdict: list[str]
    without_reference: tuple[str, ...]
    without_prediction: tuple[str, ...]
    without_probabilities: tuple[str, ...] = ()
    notes: list[str] = field(default_factory=list)
    measures: list[CaseMeasures] = field(repr=False, default_factory=list)

    @property
    def model(self) -> str:
        """A short name of the audited model: its prediction folder's name."""
        return self.settings.pred.name or str(self.settings.pred)
