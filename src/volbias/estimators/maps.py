"""Held-out probability maps of finished runs, each with its case and the run (experiment, network) it came from.

Runs trained on soft targets carry the loss label ``"<loss> (soft)"`` (:func:`run_loss_name`), except DML,
which is always trained on them.  An *experiment* is one task, data setting, loss and seed; its *networks*
are its folds' runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from volbias.training.run_files import read_run
from volbias.data.case import Case

ALWAYS_SOFT: tuple[str, ...] = ("dml",)
"""Losses trained on the soft targets only (their label does not repeat it)."""

EXPERIMENT_KEYS: tuple[str, ...] = ("task", "setting", "loss", "seed")


def run_loss_name(loss: str, targets: str) -> str:
    """The comparison's name of a run: the loss, with ``" (soft)"`` when trained on the soft targets."""
    return f"{loss} (soft)" if targets == "soft" and loss not in ALWAYS_SOFT else loss


@dataclass
class HeldOutMap:
    """One held-out probability map with its case, the run it came from and the case's split in that run
    (``"validation"``: the run's held-out fold; ``"test"``: fresh cases every network of the experiment
    predicts)."""

    task: str
    setting: str
    loss: str
    seed: int
    fold: int
    case: Case
    prob: np.ndarray
    split: str = "validation"

    @property
    def experiment(self) -> tuple[str, str, str, int]:
        """``(task, setting, loss, seed)``."""
        return (self.task, self.setting, self.loss, self.seed)


def by_experiment(maps: Iterable[HeldOutMap]) -> dict[tuple[str, str, str, int], list[HeldOutMap]]:
    """The maps grouped by experiment, in order of first appearance."""
    groups: dict[tuple[str, str, str, int], list[HeldOutMap]] = {}
    for m in maps:
        groups.setdefault(m.experiment, []).append(m)
    return groups


def load_held_out_maps(run_dir: str | Path, cases: Mapping[str, Case]) -> list[HeldOutMap]:
    """Held-out maps of one finished run; ``cases`` maps case ids to the run's (validation and test) cases.

    Maps are clipped to [0, 1] and set to 0 outside each case's mask.
    """
    run_dir = Path(run_dir)
    frame = read_run(run_dir)
    targets = str(frame["training.targets"].iloc[0]) if "training.targets" in frame.columns else "rater"
    path = run_dir / "probabilities.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: run has no probability maps")
    maps: list[HeldOutMap] = []
    with np.load(path) as archive:
        for row in frame.itertuples(index=False):
            if row.case_id not in cases:
                raise KeyError(f"{run_dir}: case {row.case_id!r} of task {row.task!r} was not loaded")
            if row.case_id not in archive.files:
                raise KeyError(f"{path}: no map for case {row.case_id!r}")
            case = cases[row.case_id]
            prob = archive[row.case_id].astype(np.float64)
            if prob.shape != case.label.shape:
                raise ValueError(f"{path}: map of {row.case_id} has shape {prob.shape}, label {case.label.shape}")
            clipped = np.where(case.mask, np.clip(prob, 0.0, 1.0), 0.0)
            maps.append(HeldOutMap(row.task, row.setting, run_loss_name(row.loss, targets), int(row.seed),
                                   int(row.fold), case, clipped, str(getattr(row, "split", "validation"))))
    return maps
