"""The experiments of the book's chapters: which runs each chapter trains, per profile, and where.

An :class:`Experiment` is a list of planned runs (a :class:`volbias.training.RunConfig` plus the
name of its setting). :func:`run_experiment` trains the runs that are not finished yet under
``<runs root>/<experiment>/<profile>/<setting>/<task>/<loss>/fold<k>-seed<s>/`` (``$VOLBIAS_WORKERS`` at a
time, default 1) and returns the concatenated ``cases.csv`` tables. The runs root is ``$VOLBIAS_RUNS_DIR``,
else ``runs/`` in the source checkout (else in the working directory), so that the Results chapter finds the runs the
other chapters trained.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from volbias.training.collect import Collection, collect, empty_results
from volbias.training.config import RunConfig
from volbias.training.grid import Cell
from volbias.training.launchers import launch

RUNS_ENV = "VOLBIAS_RUNS_DIR"
CORE_LOSSES: tuple[str, ...] = ("ce", "sd")


@dataclass(frozen=True)
class PlannedRun:
    """One run of an experiment: its configuration and the name of the setting it belongs to."""

    config: RunConfig
    setting: str

    def directory(self, experiment_dir: Path) -> Path:
        """Where the run lives inside its experiment's directory."""
        return experiment_dir / self.setting / self.config.run_name()


@dataclass(frozen=True)
class Experiment:
    """The runs a chapter trains at one profile."""

    name: str
    profile: str
    runs: tuple[PlannedRun, ...]

    def directory(self, root: str | Path) -> Path:
        """``<root>/<name>/<profile>``."""
        return Path(root) / self.name / self.profile

    def configs(self) -> list[RunConfig]:
        """The run configurations, in order."""
        return [run.config for run in self.runs]


def _source_root() -> Path | None:
    """The source checkout holding this package (None when installed from a wheel)."""
    root = Path(__file__).resolve().parents[3]
    return root if (root / "pyproject.toml").is_file() else None


def default_runs_dir() -> Path:
    """Root of the book's runs: ``$VOLBIAS_RUNS_DIR``, else ``<checkout>/runs``, else ``./runs``."""
    if os.environ.get(RUNS_ENV):
        return Path(os.environ[RUNS_ENV])
    root = _source_root()
    return (root if root is not None else Path.cwd()) / "runs"


def default_results_dir() -> Path:
    """Where stored result sets live: ``data/results/`` of the checkout, which the package reaches as
    ``volbias/results`` (a link in the checkout, a copy in the wheel, so an installed book finds them too)."""
    return Path(__file__).resolve().parents[1] / "results"


def _config(task: str, loss: str, fold: int, seed: int, profile: str, device: str,
            task_options: Mapping[str, Any] | None = None,
            training: Mapping[str, Any] | None = None,
            loss_options: Mapping[str, Any] | None = None) -> RunConfig:
    return RunConfig.from_dict({"task": task, "loss": loss, "fold": fold, "seed": seed, "profile": profile,
                                "device": device, "task_options": dict(task_options or {}),
                                "loss_options": dict(loss_options or {}), "training": dict(training or {})},
                               source=f"{task}/{loss}")


def _check_profile(profile: str, grids: Mapping[str, Any]) -> None:
    if profile not in grids:
        raise ValueError(f"profile={profile!r}: unknown; expected one of {', '.join(grids)}")


# --- Controlled uncertainty: synthetic phantoms ------------------------------------------------------

SYNTHETIC_GRIDS: dict[str, dict[str, Any]] = {
    "smoke": {"radius": 4.0, "relative_sigma": [0.1, 0.9], "noise": ["independent", "shift"], "size_sigma": 2.0,
              "size_radius": [], "losses": ["ce", "sd"], "two_stage": [], "seeds": [0], "n_test": 10},
    "cpu": {"radius": 4.0, "relative_sigma": [0.1, 0.9], "noise": ["independent", "shift"], "size_sigma": 2.0,
            "size_radius": [], "losses": ["ce", "sd"], "two_stage": [], "seeds": [0], "n_test": 100},
    "gpu": {"radius": 4.0, "relative_sigma": [0.05, 0.1, 0.2, 0.3, 0.5, 0.6, 0.75, 0.9],
            "noise": ["independent", "shift"], "size_sigma": 2.0, "size_radius": [2.5, 3.0, 6.0, 8.0, 12.0],
            "losses": ["ce", "sd", "ce-ce", "ce-sd"], "two_stage": [], "seeds": [0, 1, 2], "n_test": 200},
}
"""Per profile: the radius (pixels) of the uncertainty sweep and its boundary sigmas relative to the radius,
for each label-noise model; the object-size sweep (radii at one fixed sigma, independent noise); the losses
of every setting (two-stage losses added at the most uncertain independent-noise setting); the seeds (each
seed draws other training phantoms and another initialisation); and the number of fresh test phantoms on
which every run is scored. Training settings come from the profile. The cpu build trains seed 0 only; the stored
cpu reference result set (:mod:`volbias.analysis.reference_set`) holds seeds 0-4 of the same settings."""

N_LABEL_DRAWS = 25  # label draws per phantom; one is drawn per epoch, so the network cannot memorise them
PHANTOM_SIZE = 54  # pixels; the network pads every axis to a multiple of 27 anyway


def synthetic_options(radius: float, sigma: float, noise: str, seed: int, n_test: int = 0) -> dict[str, Any]:
    """Task options of one phantom setting (2D, 3 blobs, 54 x 54 pixels, 25 label draws; radius, sigma in px;
    ``n_test`` fresh test phantoms)."""
    return {"dims": 2, "size": PHANTOM_SIZE, "radius": float(radius), "sigma": round(float(sigma), 4),
            "noise": noise, "n_raters": N_LABEL_DRAWS, "seed": int(seed), "n_test": int(n_test)}


def synthetic_settings(profile: str, seed: int = 0) -> pd.DataFrame:
    """One row per phantom setting of the controlled-uncertainty sweep.

    Columns: setting (directory name), sweep ("uncertainty" or "size"), noise, radius, sigma,
    relative_sigma, losses and task_options.
    """
    _check_profile(profile, SYNTHETIC_GRIDS)
    grid = SYNTHETIC_GRIDS[profile]
    top = max(grid["relative_sigma"])
    rows = []
    for noise in grid["noise"]:
        for rel in grid["relative_sigma"]:
            rows.append(("uncertainty", noise, grid["radius"], rel * grid["radius"],
                         grid["losses"] + (grid["two_stage"] if rel == top and noise == "independent" else [])))
    rows += [("size", "independent", r, grid["size_sigma"], grid["losses"]) for r in grid["size_radius"]]
    table = []
    for sweep, noise, radius, sigma, losses in rows:
        table.append({"setting": f"{noise}-r{radius:g}-sigma{sigma:g}", "sweep": sweep, "noise": noise,
                      "radius": radius, "sigma": round(sigma, 4), "relative_sigma": round(sigma / radius, 4),
                      "losses": list(losses),
                      "task_options": synthetic_options(radius, sigma, noise, seed, grid["n_test"])})
    return pd.DataFrame(table)


def controlled_uncertainty(profile: str, seeds: int | Sequence[int] | None = None,
                           device: str = "auto") -> Experiment:
    """Synthetic phantoms: every setting of :func:`synthetic_settings` trained with its losses on fold 0, once per
    seed of the profile's grid (``seeds``, one or several, overrides them); a seed draws the phantoms and the
    initialisation."""
    _check_profile(profile, SYNTHETIC_GRIDS)
    if seeds is None:
        seeds = SYNTHETIC_GRIDS[profile]["seeds"]
    seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    runs = tuple(
        PlannedRun(_config("synthetic", loss, 0, seed, profile, device, row.task_options), row.setting)
        for seed in seeds for row in synthetic_settings(profile, seed).itertuples() for loss in row.losses
    )
    return Experiment("controlled_uncertainty", profile, runs)


# --- Brain tumour -----------------------------------------------------------------------------------

def task_available(task: str) -> tuple[bool, str]:
    """Whether ``task``'s data can be loaded here (one case is read); else the loader's one-line reason."""
    from volbias.data import DataError, load_task

    try:
        load_task(task, max_cases=1)
    except DataError as err:
        return False, str(err)
    return True, ""


BRAIN_FOLDS: dict[str, list[int]] = {"smoke": [0], "cpu": [0], "gpu": [0, 1, 2, 3, 4]}
"""Folds the book's build trains per profile. The CPU build trains one of the five folds to stay within its time
budget; the stored cpu reference result set (:mod:`volbias.analysis.reference_set`) holds all five with the four
schedules, and CE and SD again with twice the steps."""


def brain_tumour(profile: str, seed: int = 0, device: str = "auto", task: str | None = None,
                 folds: Sequence[int] | None = None, losses: Sequence[str] = CORE_LOSSES,
                 budget: float = 1.0) -> Experiment:
    """CE and SD runs on BraTS: the 10-case sample (smoke, cpu) or the full BR18 (gpu), on the profile's folds.

    ``budget`` multiplies the profile's number of epochs (the experiment is then named
    ``brain_tumour_x<budget>``, so that its runs live beside the standard ones).
    """
    _check_profile(profile, BRAIN_FOLDS)
    if budget <= 0:
        raise ValueError(f"budget={budget!r}: must be positive")
    task = task or ("BR18" if profile == "gpu" else "BR18-sample")
    folds = BRAIN_FOLDS[profile] if folds is None else list(folds)
    training = {} if budget == 1.0 else {"epochs": max(1, round(budget * _profile_epochs(profile, task)))}
    name = "brain_tumour" if budget == 1.0 else f"brain_tumour_x{budget:g}"
    runs = tuple(PlannedRun(_config(task, loss, fold, seed, profile, device, None, training), task)
                 for fold in folds for loss in losses)
    return Experiment(name, profile, runs)


def _profile_epochs(profile: str, task: str) -> int:
    from volbias.profiles import get_profile

    return get_profile(profile).for_task(task).epochs


# --- Stroke lesions ---------------------------------------------------------------------------------

ISLES_ENV = "VOLBIAS_ISLES_ROOT"
ISLES_FOLDERS: dict[str, str] = {"IS17": "ISLES2017_Training", "IS18": "ISLES2018_Training"}
"""Folder of each ISLES training set inside the reader's ISLES root (as extracted from the Zenodo record)."""


def isles_tasks(isles_root: str | Path | None) -> list[str]:
    """The stroke tasks whose training folder exists under ``isles_root`` (else ``$VOLBIAS_ISLES_ROOT``)."""
    root = isles_root if isles_root is not None else os.environ.get(ISLES_ENV)
    if not root:
        return []
    return [task for task, folder in ISLES_FOLDERS.items() if (Path(root) / folder).is_dir()]


def stroke(profile: str, tasks: Sequence[str] = ("IS17", "IS18"), seed: int = 0, device: str = "auto",
           folds: Sequence[int] = range(5), losses: Sequence[str] = CORE_LOSSES) -> Experiment:
    """Five-fold CE and SD runs on ISLES 2017 and/or 2018.

    The data are read from the data mirror, so point ``$VOLBIAS_DATA_MIRROR`` at the ISLES root
    (the folder holding ``ISLES2017_Training/`` and/or ``ISLES2018_Training/``) before running.
    """
    unknown = sorted(set(tasks) - set(ISLES_FOLDERS))
    if unknown:
        raise ValueError(f"tasks: {unknown} are not stroke tasks; expected IS17 and/or IS18")
    runs = tuple(PlannedRun(_config(task, loss, fold, seed, profile, device), task)
                 for task in tasks for fold in folds for loss in losses)
    return Experiment("stroke", profile, runs)


# --- Measured uncertainty: LIDC -------------------------------------------------------------------

LIDC_GRIDS: dict[str, dict[str, Any]] = {
    "smoke": {"folds": [0], "losses": ["ce", "sd"], "task_options": {"crop_size": 54}},
    "cpu": {"folds": [0], "losses": ["ce", "sd"], "task_options": {}},
    "gpu": {"folds": [0, 1, 2, 3, 4], "losses": ["ce", "sd", "ce-ce", "ce-sd"], "task_options": {}},
}
"""Per profile: validation folds, losses and data options of the LIDC runs (training settings and, on CPU, the
800 nodules and the central 64 x 64 pixels of each 128 x 128 slice come from the profile: the release centres
every crop on its nodule). The stored cpu reference result set holds all five folds."""

LIDC_SENSITIVITY: dict[str, Any] = {"loss": "sd", "setting": "LIDC, SD per batch",
                                     "loss_options": {"reduction": "batch"}}
"""The sensitivity run for SD's convention on empty rater draws: Dice over the whole batch instead of per image,
so that an empty draw still pulls the prediction down through the batch's denominator."""


def lidc(profile: str, seed: int = 0, device: str = "auto", sensitivity: bool = True,
         folds: Sequence[int] | None = None) -> Experiment:
    """LIDC nodules, one random rater per sample and epoch: CE and SD on the profile's folds (or ``folds``), plus
    (``sensitivity``) SD with the Dice over the batch (:data:`LIDC_SENSITIVITY`) on the first of them, or on
    each of ``folds`` when they are given."""
    _check_profile(profile, LIDC_GRIDS)
    grid = LIDC_GRIDS[profile]
    options = {"seed": seed, **grid["task_options"]}
    chosen = grid["folds"] if folds is None else list(folds)
    runs = [PlannedRun(_config("LIDC", loss, fold, seed, profile, device, options), "LIDC")
            for fold in chosen for loss in grid["losses"]]
    if sensitivity:
        extra = LIDC_SENSITIVITY
        for fold in chosen if folds is not None else chosen[:1]:
            config = _config("LIDC", extra["loss"], fold, seed, profile, device, options,
                             loss_options=extra["loss_options"])
            runs.append(PlannedRun(config, extra["setting"]))
    return Experiment("lidc", profile, tuple(runs))


# --- Results chapter fallback --------------------------------------------------------------------

BOOK_EXPERIMENTS: tuple[str, ...] = ("controlled_uncertainty", "brain_tumour", "stroke", "lidc")
"""The experiments whose runs the Results chapter collects, in the book's order."""


def results_fallback(profile: str, seeds: int | Sequence[int] | None = None, device: str = "auto") -> Experiment:
    """The smallest experiment that still tests claims 1-3: the controlled-uncertainty CE and SD runs at
    the least and the most uncertain independent-noise settings (shared with that chapter's runs)."""
    settings = synthetic_settings(profile)
    sweep = settings[(settings["sweep"] == "uncertainty") & (settings["noise"] == "independent")]
    extremes = {sweep.loc[sweep["relative_sigma"].idxmin(), "setting"],
                sweep.loc[sweep["relative_sigma"].idxmax(), "setting"]}
    runs = tuple(run for run in controlled_uncertainty(profile, seeds, device).runs
                 if run.setting in extremes and run.config.loss in CORE_LOSSES)
    return Experiment("controlled_uncertainty", profile, runs)


# --- Running ----------------------------------------------------------------------------------------

WORKERS_ENV = "VOLBIAS_WORKERS"


def default_workers() -> int:
    """Runs :func:`run_experiment` trains at a time: ``$VOLBIAS_WORKERS``, else 1."""
    text = os.environ.get(WORKERS_ENV, "").strip()
    if not text:
        return 1
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{WORKERS_ENV}={text!r}: expected a positive integer (runs trained at a time)")
    return int(text)


def experiment_cells(experiment: Experiment) -> list[Cell]:
    """The experiment's runs as cells of a grid rooted at its directory; ``setting_name`` labels their rows."""
    return [Cell(f"{planned.setting}/{planned.config.run_name()}", planned.config.to_dict(),
                 {"setting_name": planned.setting}) for planned in experiment.runs]


def run_experiment(experiment: Experiment, root: str | Path | None = None, progress: bool = True,
                   workers: int | None = None, launcher: str = "local") -> pd.DataFrame:
    """Train the experiment's unfinished runs, ``workers`` at a time, and return the cases of all of its runs.

    The runs go through :func:`volbias.training.launch` (``workers`` default :func:`default_workers`;
    ``launcher="debug"`` trains in this process): a directory that already holds a finished run of the same
    configuration is reused, and a failed run does not stop the others but raises once they are done.
    ``results.csv`` and ``manifest.json`` are written into the experiment's directory in either case
    (:func:`volbias.training.collect`); the returned cases are its rows (the columns of
    :func:`volbias.training.run_files.read_run`, ``run_name`` and ``setting_name``).
    """
    base = experiment.directory(root if root is not None else default_runs_dir())
    cells = experiment_cells(experiment)
    workers = workers if workers is not None else default_workers()
    report = launch(cells, base, launcher=launcher, workers=workers, progress=progress)
    collection = collect(base, cells)
    if report.failed:
        first = report.failed[0]
        raise RuntimeError(f"{base}: {len(report.failed)} of {len(cells)} runs of experiment {experiment.name!r} "
                           f"failed (see their ERROR files); {first.name}: {first.error}")
    return _cases(collection, experiment)


def _cases(collection: Collection, experiment: Experiment) -> pd.DataFrame:
    if collection.results.empty:
        raise FileNotFoundError(f"{collection.root}: no finished runs of experiment {experiment.name!r}")
    return collection.results


def experiment_cases(experiment: Experiment, root: str | Path | None = None) -> pd.DataFrame:
    """Cases of the experiment's finished runs, merged as :func:`volbias.training.collect` merges them."""
    base = experiment.directory(root if root is not None else default_runs_dir())
    if not base.is_dir():
        raise FileNotFoundError(f"{base}: no finished runs of experiment {experiment.name!r}")
    return _cases(collect(base, experiment_cells(experiment), write=False), experiment)


def runs_of(root: str | Path, experiments: Iterable[str], profile: str) -> pd.DataFrame:
    """Cases of every finished run of the named experiments at ``profile`` below ``root`` (may be empty)."""
    dirs = [Path(root) / name / profile for name in experiments]
    frames = [collect(d, write=False).results for d in dirs if d.is_dir()]
    frames = [frame for frame in frames if not frame.empty]
    return pd.concat(frames, ignore_index=True) if frames else empty_results()
