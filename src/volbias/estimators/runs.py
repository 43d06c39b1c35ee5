"""The runs behind the chapter "Which volume to trust": later losses next to CE and SD, per profile.

Two data sets: the synthetic phantoms at the largest boundary uncertainty of the controlled-uncertainty
grid (independent voxel labels), and the LIDC nodules (measured inter-rater uncertainty).  Each is trained
with CE, SD and the later losses of :mod:`volbias.losses.later` on the profile's folds, and CE and SD once
more on the soft targets (the marginals) as controls for DML, which is trained on them.  A run whose
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
from volbias.estimators.compare import ALWAYS_SOFT, HeldOutMap, load_held_out_maps

EXPERIMENT = "which_volume"
COMPARED_LOSSES: tuple[str, ...] = ("ce", "sd", "dml", "dsc++", "tversky", "focal", "ce+sd")
"""Losses trained for the comparison. ``"dml"`` trains on the soft targets (the phantoms' exact marginals,
the mean rater of LIDC), the setting it was designed for; on hard targets it equals SD."""

SOFT_CONTROLS: tuple[str, ...] = ("ce", "sd")
"""Losses trained a second time on the soft targets, beside DML: without them a difference between DML and
the rest could be the targets' doing rather than the loss's."""

WHICH_VOLUME_GRIDS: dict[str, dict[str, Any]] = {
    "smoke": {"synthetic_folds": [0, 1], "lidc_folds": [0, 1], "synthetic_losses": ("ce", "sd", "dml"),
              "lidc_losses": ("ce", "sd", "dml")},
    "cpu": {"synthetic_folds": [0], "lidc_folds": [0], "synthetic_losses": ("ce", "sd", "dml"),
            "lidc_losses": ("ce", "sd")},
    "gpu": {"synthetic_folds": [0, 1, 2, 3, 4], "lidc_folds": [0], "synthetic_losses": COMPARED_LOSSES,
            "lidc_losses": COMPARED_LOSSES},
}
"""Per profile: the folds of each data set and the losses compared on it; where DML is among them, each of
:data:`SOFT_CONTROLS` is trained on the soft targets as well. The CPU profile adds only DML and its two
controls on the phantoms (three runs; CE and SD on rater masks are the controlled-uncertainty and LIDC
chapters' own runs), so that the chapter stays within a few minutes of the book's CPU build; LIDC keeps the
LIDC chapter's CE and SD there. The smoke profile trains DML and the controls on both data sets (two folds:
cross-fitting needs more than one held-out group), the GPU profile every loss on both. On the GPU profile
one LIDC run trains on all nodules for many epochs, so LIDC keeps one fold."""


def _synthetic_template(profile: str, seed: int) -> PlannedRun:
    """The controlled-uncertainty CE run at the most uncertain independent-noise setting."""
    settings = synthetic_settings(profile, seed)
    independent = settings[(settings["sweep"] == "uncertainty") & (settings["noise"] == "independent")]
    setting = independent.sort_values("relative_sigma").iloc[-1]["setting"]
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


def _planned(template: PlannedRun, losses: Sequence[str], folds: Sequence[int]) -> list[PlannedRun]:
    """The runs of one data set: every loss on every fold, plus the soft-target controls wherever DML is trained."""
    runs = [_variant(template, loss, fold) for fold in folds for loss in losses]
    if "dml" in losses:
        runs += [_variant(template, loss, fold, "soft") for fold in folds for loss in SOFT_CONTROLS]
    return runs


def which_volume_experiments(profile: str, seed: int = 0, losses: Sequence[str] = COMPARED_LOSSES) -> list[Experiment]:
    """The chapter's runs, grouped by the experiment directory they live in (shared runs first).

    The synthetic runs copy the configuration of the controlled-uncertainty chapter's most uncertain
    independent-noise setting, the LIDC runs that of the LIDC chapter; only the loss, the fold and (for the
    soft-target controls and DML) the training targets change. Folds and losses follow
    :data:`WHICH_VOLUME_GRIDS`, restricted to ``losses``. Soft-target runs live in their own directory
    (``<setting>-soft``) so that they never collide with the hard-target run of the same loss.
    """
    if profile not in WHICH_VOLUME_GRIDS:
        raise ValueError(f"profile={profile!r}: unknown; expected one of {', '.join(WHICH_VOLUME_GRIDS)}")
    grid = WHICH_VOLUME_GRIDS[profile]
    others = [controlled_uncertainty(profile, seed), lidc(profile, seed)]
    synthetic = _synthetic_template(profile, seed)
    lidc_template = others[1].runs[0]
    wanted = _planned(synthetic, [l for l in grid["synthetic_losses"] if l in losses], grid["synthetic_folds"])
    wanted += _planned(lidc_template, [l for l in grid["lidc_losses"] if l in losses], grid["lidc_folds"])
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
