"""The runs behind the chapter "Which volume to trust": later losses next to CE and SD, per profile.

Two data sets: the synthetic phantoms at the largest boundary uncertainty of the controlled-uncertainty
grid, and the LIDC nodules (measured inter-rater uncertainty).  On the phantoms with independent voxel
labels each loss is trained on the profile's seeds and folds (seeds and folds are the networks a ranking
resamples first); the same setting with shift noise (one random radius per blob: voxel labels perfectly
correlated within a blob) is trained with CE and SD once, for the volume intervals.  LIDC is trained with
the profile's losses and folds.  Where DML is trained and the profile asks for it, CE and SD are trained
once more on the soft targets (the marginals) as controls for DML, which is trained on them.  A run whose
configuration equals a run planned by another chapter's experiment
(:func:`volbias.analysis.book_runs.controlled_uncertainty`, :func:`volbias.analysis.book_runs.lidc`)
lives in that experiment's directory, so the two chapters share it; all other runs live under the
``which_volume`` experiment.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from volbias.analysis.book_runs import (
    Experiment,
    PlannedRun,
    controlled_uncertainty,
    default_runs_dir,
    lidc,
    synthetic_settings,
)
from volbias.data import load_task
from volbias.estimators.maps import ALWAYS_SOFT, HeldOutMap, load_held_out_maps

EXPERIMENT = "which_volume"
COMPARED_LOSSES: tuple[str, ...] = ("ce", "sd", "dml", "dsc++", "tversky", "focal", "ce+sd")
"""Losses trained for the comparison. ``"dml"`` trains on the soft targets (the phantoms' exact marginals,
the mean rater of LIDC), the setting it was designed for; on hard targets it equals SD."""

SOFT_CONTROLS: tuple[str, ...] = ("ce", "sd")
"""Losses trained a second time on the soft targets, beside DML: without them a difference between DML and
the rest could be the targets' doing rather than the loss's."""

SHIFT_LOSSES: tuple[str, ...] = ("ce", "sd")
"""Losses trained on the shift-noise phantoms (first seed and fold), for the volume intervals."""

CORE_LOSSES: tuple[str, ...] = ("ce", "sd")
"""Losses trained on every seed of the phantoms; the others (and the soft-target controls) on the first
``later_seeds``."""

WHICH_VOLUME_GRIDS: dict[str, dict[str, Any]] = {
    "smoke": {"synthetic_seeds": 1, "later_seeds": 1, "synthetic_folds": [0, 1], "lidc_folds": [0, 1],
              "synthetic_losses": ("ce", "sd", "dml"), "lidc_losses": ("ce", "sd", "dml"), "soft_controls": True},
    "cpu": {"synthetic_seeds": 3, "later_seeds": 1, "synthetic_folds": [0], "lidc_folds": [0],
            "synthetic_losses": ("ce", "sd", "dml"), "lidc_losses": ("ce", "sd"), "soft_controls": False},
    "gpu": {"synthetic_seeds": 1, "later_seeds": 1, "synthetic_folds": [0, 1, 2, 3, 4], "lidc_folds": [0, 1, 2],
            "synthetic_losses": COMPARED_LOSSES, "lidc_losses": COMPARED_LOSSES, "soft_controls": True},
}
"""Per profile: the number of seeds (from the chapter's seed on) of the phantoms for :data:`CORE_LOSSES` and for
the other losses, the folds of the phantoms and of LIDC, the losses compared on each, and whether
:data:`SOFT_CONTROLS` are trained beside DML.

The CPU profile trains CE and SD on three seeds of the phantoms (one fold each: 128 training and 32 validation
phantoms plus 100 fresh test phantoms per seed) and DML on the first; all but DML are the controlled-uncertainty
and LIDC chapters' own runs or their other seeds, and the chapter takes about seven minutes of the book's CPU
build (DML on three seeds, or the soft-target controls, would add about two minutes each; the smoke and GPU
profiles train the controls).  The smoke profile trains two folds of one seed (so that two networks predict
the same test phantoms, the case the cross-fitting must handle), the GPU profile every loss on five folds of
the phantoms and three of LIDC (one LIDC run trains on all nodules for many epochs; three networks per loss are
the fewest the book ranks, :data:`volbias.analysis.plan.MIN_NETWORKS`).  At the CPU profile LIDC has one network
per loss, so its estimators are shown with intervals over patients but not ranked."""


def _template(profile: str, seed: int, noise: str) -> PlannedRun:
    """The controlled-uncertainty CE run at the most uncertain setting of one noise model."""
    settings = synthetic_settings(profile, seed)
    rows = settings[(settings["sweep"] == "uncertainty") & (settings["noise"] == noise)]
    setting = rows.sort_values("relative_sigma").iloc[-1]["setting"]
    return next(run for run in controlled_uncertainty(profile, seed).runs
                if run.setting == setting and run.config.loss == "ce")


def _variant(template: PlannedRun, loss: str, fold: int, targets: str = "rater") -> PlannedRun:
    """``template`` with another loss, fold and training targets (``"dml"`` always on the soft targets)."""
    training = dict(template.config.training)
    if loss == "dml" or targets == "soft":
        training["targets"] = "soft"
    config = replace(template.config, loss=loss, fold=fold, training=training)
    config.validate(f"{EXPERIMENT} {config.run_name()}")
    return PlannedRun(config, template.setting)


def _planned(template: PlannedRun, losses: Sequence[str], folds: Sequence[int], controls: bool) -> list[PlannedRun]:
    """The runs of one data set: every loss on every fold, plus the soft-target controls where DML is trained
    and ``controls`` asks for them."""
    runs = [_variant(template, loss, fold) for fold in folds for loss in losses]
    if controls and "dml" in losses:
        runs += [_variant(template, loss, fold, "soft") for fold in folds for loss in SOFT_CONTROLS]
    return runs


DATA_SETS: dict[str, str] = {"phantoms": "synthetic, independent noise", "phantoms (shift noise)": "synthetic, shift noise",
                              "LIDC": "LIDC"}
"""The chapter's data sets (key) and what they are."""


def data_set(task: str, setting: str) -> str:
    """The data set of a run of the chapter: ``"phantoms"`` (independent label noise), ``"phantoms (shift noise)"``
    or ``"LIDC"``; ``setting`` is the run's label of its task options (``"..., noise=shift, ..."``)."""
    if task == "LIDC":
        return "LIDC"
    if task != "synthetic":
        raise ValueError(f"task={task!r}: not a data set of the chapter")
    return "phantoms (shift noise)" if "noise=shift" in setting else "phantoms"


def synthetic_seeds(profile: str, seed: int = 0) -> list[int]:
    """The seeds of the chapter's phantom runs at ``profile``, from ``seed`` on."""
    return [seed + k for k in range(WHICH_VOLUME_GRIDS[profile]["synthetic_seeds"])]


def which_volume_experiments(profile: str, seed: int = 0, losses: Sequence[str] = COMPARED_LOSSES) -> list[Experiment]:
    """The chapter's runs, grouped by the experiment directory they live in (shared runs first).

    The synthetic runs copy the configuration of the controlled-uncertainty chapter's most uncertain
    setting of each noise model (one seed after the other), the LIDC runs that of the LIDC chapter; only the
    loss, the fold and (for the soft-target controls and DML) the training targets change. Seeds, folds and
    losses follow :data:`WHICH_VOLUME_GRIDS` (restricted to ``losses``: CE and SD on every seed, the others on
    the first ``later_seeds``); the shift-noise runs train
    :data:`SHIFT_LOSSES` on the first seed and fold. Soft-target runs live in their own directory
    (``<setting>-soft``) so that they never collide with the hard-target run of the same loss.
    """
    if profile not in WHICH_VOLUME_GRIDS:
        raise ValueError(f"profile={profile!r}: unknown; expected one of {', '.join(WHICH_VOLUME_GRIDS)}")
    grid = WHICH_VOLUME_GRIDS[profile]
    seeds = synthetic_seeds(profile, seed)
    others = [controlled_uncertainty(profile, seeds), lidc(profile, seed)]
    wanted: list[PlannedRun] = []
    for k, s in enumerate(seeds):
        trained = [l for l in grid["synthetic_losses"] if l in losses and (l in CORE_LOSSES or k < grid["later_seeds"])]
        wanted += _planned(_template(profile, s, "independent"), trained, grid["synthetic_folds"],
                           grid["soft_controls"] and k < grid["later_seeds"])
    wanted += _planned(_template(profile, seeds[0], "shift"), [l for l in SHIFT_LOSSES if l in losses],
                       grid["synthetic_folds"][:1], False)
    wanted += _planned(others[1].runs[0], [l for l in grid["lidc_losses"] if l in losses], grid["lidc_folds"],
                       grid["soft_controls"])
    wanted = [PlannedRun(run.config, f"{run.setting}-soft") if run.config.training.get("targets") == "soft"
              and run.config.loss not in ALWAYS_SOFT else run for run in wanted]

    shared = {(run.config.to_yaml(), run.setting): experiment.name for experiment in others for run in experiment.runs}
    groups: dict[str, list[PlannedRun]] = {}
    for run in wanted:
        groups.setdefault(shared.get((run.config.to_yaml(), run.setting), EXPERIMENT), []).append(run)
    return [Experiment(name, profile, tuple(runs))
            for name, runs in sorted(groups.items(), key=lambda item: item[0] == EXPERIMENT)]


def run_directories(experiments: Iterable[Experiment], root: str | Path | None = None) -> list[Path]:
    """Run directories of all planned runs, in order."""
    root = Path(root) if root is not None else default_runs_dir()
    return [run.directory(experiment.directory(root)) for experiment in experiments for run in experiment.runs]


def held_out_maps(experiments: Iterable[Experiment], root: str | Path | None = None) -> list[HeldOutMap]:
    """Held-out maps of every planned run (its validation fold and the task's fresh test cases, where it has
    any), each paired with its case (tasks loaded once per data setting)."""
    root = Path(root) if root is not None else default_runs_dir()
    tasks: dict[str, dict[str, Any]] = {}
    maps: list[HeldOutMap] = []
    for experiment in experiments:
        for run in experiment.runs:
            options = run.config.resolved_task_options()
            key = f"{run.config.task} {sorted(options.items())}"
            if key not in tasks:
                data = load_task(run.config.task, **options)
                tasks[key] = {case.id: case for case in [*data.cases, *data.test]}  # folds and fresh test cases
            maps.extend(load_held_out_maps(run.directory(experiment.directory(root)), tasks[key]))
    return maps
