"""The task table: inputs, target, masking rule, normalisation constants, grid and folds of every task.

The constants of BR18, IS17 and IS18 (shift/scale per channel, mask rule, 2 mm grid, output patch
136 x 136 x 82) and their 5 folds (package data, ``volbias/registry/<task>.json``) come from the authors'
public code for their MICCAI 2019 Dice/Jaccard paper (repository JeroenBertels/optimizingdice,
[bertels2019miccai]), not from the volume-bias paper, which does not list them: that they carry over to
the volume-bias paper is inferred. "Paper folds" below means these folds.

Folds of the public stand-ins are derived deterministically (``derived_folds``): BR18-sample does not
use the paper's BR18 folds because its ten cases fall in paper folds 0, 2, 3 and 4 only (fold 1 would
be empty); each case's paper fold is kept in ``case.meta["paper_fold"]``. LIDC folds are grouped by
patient, so that one patient's nodules stay in one fold.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import pandas as pd

from .errors import DataError

N_FOLDS = 5
PAPER_PATCH = (136, 136, 82)  # the network's output patch at 2 mm


@dataclass(frozen=True)
class TaskSpec:
    """Static description of a task; load_task returns a copy whose spacing_mm is the grid used."""

    name: str
    title: str
    public: bool
    dims: int
    inputs: tuple[str, ...]
    target: str
    mask_rule: str  # human-readable rule, e.g. "FLAIR > 0"
    mask_channel: int | None  # channel the rule thresholds (None: every voxel is inside)
    mask_threshold: float
    shifts: tuple[float, ...]
    scales: tuple[float, ...]
    spacing_mm: float | None  # isotropic grid after resampling (None: native pixels)
    folds_source: str  # "paper" (the paper's JSON), "derived" or "none"
    uncertainty: str
    source: str
    citation: str
    options: tuple[str, ...] = field(default=())

    @property
    def grid(self) -> str:
        """Text for figure captions: the voxel grid the arrays live on."""
        return "native pixels" if self.spacing_mm is None else f"{self.spacing_mm:g} mm isotropic"


_COMMON = ("spacing", "max_cases", "cache_dir", "crop")

TASKS: dict[str, TaskSpec] = {
    "BR18": TaskSpec(
        "BR18", "BraTS 2018 whole tumour (MR)", True, 3, ("FLAIR", "T1", "T1CE", "T2"), "whole tumour",
        "FLAIR > 0", 0, 0.0,
        (420.884688, 568.786868, 639.488208, 629.919353), (1320.645043, 1160.682202, 1181.144426, 1363.611767),
        2.0, "paper", "low", "BraTS 2018 training data (registration: CBICA IPP)", "bakas2018", _COMMON),
    "IS17": TaskSpec(
        "IS17", "ISLES 2017 final infarct (MR perfusion + ADC)", True, 3,
        ("ADC", "Tmax", "MTT", "TTP", "rCBF", "rCBV"), "final infarct (OT)", "ADC > 0", 0, 0.0,
        (918.576582, 6.306370, 5.103256, 28.844982, 18.976388, 1.822575),
        (655.056252, 10.267162, 4.138227, 16.030511, 28.871382, 3.579261),
        2.0, "paper", "high", "ISLES 2017 training data (Zenodo record 17736412)", "maier2017isles", _COMMON),
    "IS18": TaskSpec(
        "IS18", "ISLES 2018 infarct core (CT perfusion)", True, 3, ("CT", "CT_Tmax", "CT_MTT", "CT_CBF", "CT_CBV"),
        "infarct core (OT)", "CT > -23", 0, -23.0,
        (145.408906, 2.875339, 5.538642, 179.032961, 25.937894),
        (186.974013, 4.634349, 5.201967, 293.878453, 42.502020),
        2.0, "paper", "high", "ISLES 2018 training data (Zenodo record 17736412)", "isles2018", _COMMON),
    "BR18-sample": TaskSpec(
        "BR18-sample", "BraTS 2018, 10 public cases (FLAIR, T1)", True, 3, ("FLAIR", "T1"), "whole tumour",
        "FLAIR > 0", 0, 0.0, (420.884688, 568.786868), (1320.645043, 1160.682202),
        2.0, "derived", "low", "JeroenBertels/deepvoxnet2 demos/brats_2018 (10 cases)", "bakas2018", _COMMON),
    "LIDC": TaskSpec(
        "LIDC", "LIDC-IDRI lung nodules, up to 4 radiologists (2D)", True, 2, ("CT (lung window, 8 bit)",),
        "nodule (>= half of 4 raters)", "all pixels", None, 0.0, (0.0,), (255.0,),
        None, "derived", "measured (4 raters)", "periclesanfe/Pulmoseg LIDC-IDRI-slices", "armato2011",
        ("max_cases", "min_raters", "seed", "crop_size", "cache_dir")),
    "synthetic": TaskSpec(
        "synthetic", "Blob phantoms with known voxel marginals", True, 2, ("intensity",), "blobs",
        "all voxels", None, 0.0, (0.0,), (1.0,), None, "derived", "controlled (sigma)", "generated",
        "bertels2021",
        ("dims", "radius", "sigma", "noise", "n_cases", "size", "contrast", "image_noise", "n_raters", "n_blobs", "n_test",
         "seed", "max_cases", "cache_dir")),
    "MO17": TaskSpec(
        "MO17", "Third molars on dental panoramic radiographs (2D)", False, 2, ("radiograph",), "third molar",
        "unknown", None, 0.0, (), (), None, "none", "low", "private clinical data", "bertels2019", ()),
}

PRIVATE_MESSAGE = {
    "MO17": "private clinical data of the paper's authors (third molars on panoramic radiographs); "
    "it is not distributed and cannot be loaded",
}


def get_spec(name: str) -> TaskSpec:
    """The TaskSpec of `name`; DataError for unknown names."""
    if name not in TASKS:
        raise DataError(f"task {name!r}: unknown task; known tasks: {', '.join(TASKS)}")
    return TASKS[name]


def list_tasks() -> list[str]:
    """Names of all tasks in the registry (MO17 is listed but private)."""
    return list(TASKS)


def tasks_table() -> pd.DataFrame:
    """One row per task: inputs, target, mask rule, grid, folds, inherent uncertainty, availability."""
    rows = [
        {
            "task": s.name, "description": s.title, "dims": f"{s.dims}D", "inputs": ", ".join(s.inputs),
            "target": s.target, "mask": s.mask_rule, "grid": s.grid, "folds": s.folds_source,
            "inherent uncertainty": s.uncertainty, "available": "public" if s.public else "private",
            "source": s.source,
        }
        for s in TASKS.values()
    ]
    return pd.DataFrame(rows).set_index("task")


def paper_folds(name: str) -> list[list[str]]:
    """The authors' 5 folds of case ids for BR18, IS17 or IS18 (optimizingdice repository; package data)."""
    path = resources.files("volbias") / "registry" / f"{name}.json"
    folds = json.loads(path.read_text())["folds"]
    return [list(f) for f in folds]


def paper_fold_of(name: str) -> dict[str, int]:
    """Map case id -> index of its paper fold."""
    return {cid: k for k, fold in enumerate(paper_folds(name)) for cid in fold}


def derived_folds(ids: list[str], seed: int = 0, groups: list[str] | None = None) -> list[list[str]]:
    """Deterministic 5 folds: groups (default: each id) shuffled with `seed`, then each group goes to the
    fold holding the fewest ids so far (so a patient's cases stay in one fold and folds stay balanced)."""
    groups = list(ids) if groups is None else list(groups)
    members: dict[str, list[str]] = {}
    for cid, g in zip(ids, groups):
        members.setdefault(g, []).append(cid)
    order = sorted(members)
    rng = np.random.default_rng(seed)
    order = [order[i] for i in rng.permutation(len(order))]
    order.sort(key=lambda g: -len(members[g]))  # largest groups first, ties keep the seeded order
    folds: list[list[str]] = [[] for _ in range(N_FOLDS)]
    for g in order:
        k = min(range(N_FOLDS), key=lambda i: (len(folds[i]), i))
        folds[k].extend(members[g])
    return [sorted(f) for f in folds]
