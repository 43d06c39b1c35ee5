"""The experiments of the book's chapters: which runs each chapter trains, per profile, and where.

An :class:`Experiment` is a list of planned runs (a :class:`volbias.training.RunConfig` plus the
name of its setting). :func:`run_experiment` trains the runs that are not finished yet under
``<runs root>/<experiment>/<profile>/<setting>/<task>/<loss>/fold<k>-seed<s>/`` and returns the
concatenated ``cases.csv`` tables. The runs root is ``$VOLBIAS_RUNS_DIR``, else ``runs/`` in the
source checkout (else in the working directory), so that the Results chapter finds the runs the
other chapters trained.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from volbias.analysis.tables import load_runs
from volbias.training.config import RunConfig

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
    """Where stored (e.g. GPU) result sets live: ``<checkout>/data/results`` (else ``./data/results``)."""
    root = _source_root()
    return (root if root is not None else Path.cwd()) / "data" / "results"


def _config(task: str, loss: str, fold: int, seed: int, profile: str, device: str,
            task_options: Mapping[str, Any] | None = None,
            training: Mapping[str, Any] | None = None) -> RunConfig:
    return RunConfig.from_dict({"task": task, "loss": loss, "fold": fold, "seed": seed, "profile": profile,
                                "device": device, "task_options": dict(task_options or {}),
                                "training": dict(training or {})}, source=f"{task}/{loss}")


def _check_profile(profile: str, grids: Mapping[str, Any]) -> None:
    if profile not in grids:
        raise ValueError(f"profile={profile!r}: unknown; expected one of {', '.join(grids)}")


# --- Controlled uncertainty: synthetic phantoms ------------------------------------------------------

SYNTHETIC_GRIDS: dict[str, dict[str, Any]] = {
    "smoke": {"radius": 4.0, "relative_sigma": [0.1, 0.9], "noise": ["independent", "shift"], "size_sigma": 2.0,
              "size_radius": [], "losses": ["ce", "sd"], "two_stage": [], "training": {}},
    "cpu": {"radius": 4.0, "relative_sigma": [0.1, 0.5, 0.9], "noise": ["independent", "shift"],
            "size_sigma": 2.0, "size_radius": [2.5, 8.0], "losses": ["ce", "sd"], "two_stage": ["ce-sd"],
            "training": {"epochs": 80, "batch_size": 2, "lr": 0.01}},
    "gpu": {"radius": 4.0, "relative_sigma": [0.05, 0.1, 0.2, 0.3, 0.5, 0.6, 0.75, 0.9],
            "noise": ["independent", "shift"], "size_sigma": 2.0, "size_radius": [2.5, 3.0, 6.0, 8.0, 12.0],
            "losses": ["ce", "sd", "ce-ce", "ce-sd"], "two_stage": [],
            "training": {"epochs": 300, "batch_size": 2, "lr": 0.01}},
}
"""Per profile: the radius (pixels) of the uncertainty sweep and its boundary sigmas relative to the radius,
for each label-noise model; the object-size sweep (radii at one fixed sigma, independent noise); the losses
of every setting, two-stage losses added at the most uncertain independent-noise setting, and the training
overrides (CE needs many small steps to become calibrated: 1 280 steps of batch 2 on the CPU profile)."""

N_LABEL_DRAWS = 25  # label draws per phantom; one is drawn per epoch, so the network cannot memorise them
PHANTOM_SIZE = 54  # pixels; the network pads every axis to a multiple of 27 anyway


def synthetic_options(radius: float, sigma: float, noise: str, seed: int) -> dict[str, Any]:
    """Task options of one phantom setting (2D, 3 blobs, 54 x 54 pixels, 25 label draws; radius, sigma in px)."""
    return {"dims": 2, "size": PHANTOM_SIZE, "radius": float(radius), "sigma": round(float(sigma), 4),
            "noise": noise, "n_raters": N_LABEL_DRAWS, "seed": int(seed)}


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
                      "losses": list(losses), "task_options": synthetic_options(radius, sigma, noise, seed)})
    return pd.DataFrame(table)


def controlled_uncertainty(profile: str, seed: int = 0, device: str = "auto") -> Experiment:
    """Synthetic phantoms: every setting of :func:`synthetic_settings` trained with its losses, fold 0."""
    settings = synthetic_settings(profile, seed).drop_duplicates("setting")
    training = SYNTHETIC_GRIDS[profile]["training"]
    runs = tuple(
        PlannedRun(_config("synthetic", loss, 0, seed, profile, device, row.task_options, training), row.setting)
        for row in settings.itertuples() for loss in row.losses
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


BRAIN_TRAINING: dict[str, dict[str, Any]] = {"smoke": {}, "cpu": {"batch_size": 2}, "gpu": {}}
"""Training overrides of the brain-tumour runs per profile (CPU: batches of 2, i.e. 4 steps per epoch with
the sample's 8 training cases, instead of one)."""


def brain_tumour(profile: str, seed: int = 0, device: str = "auto", task: str | None = None,
                 folds: Sequence[int] = range(5), losses: Sequence[str] = CORE_LOSSES) -> Experiment:
    """Five-fold CE and SD runs on BraTS: the 10-case sample (smoke, cpu) or the full BR18 (gpu)."""
    _check_profile(profile, BRAIN_TRAINING)
    task = task or ("BR18" if profile == "gpu" else "BR18-sample")
    runs = tuple(PlannedRun(_config(task, loss, fold, seed, profile, device, None, BRAIN_TRAINING[profile]), task)
                 for fold in folds for loss in losses)
    return Experiment("brain_tumour", profile, runs)


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
    "smoke": {"folds": [0], "losses": ["ce", "sd"], "task_options": {"crop_size": 54}, "training": {}},
    "cpu": {"folds": [0], "losses": ["ce", "sd"], "task_options": {"crop_size": 54, "max_cases": 200},
            "training": {"patch_size": None, "epochs": 30, "batch_size": 8, "lr": 0.01}},
    "gpu": {"folds": [0, 1, 2, 3, 4], "losses": ["ce", "sd", "ce-ce", "ce-sd"], "task_options": {},
            "training": {}},
}
"""Per profile: validation folds, losses, data options and training overrides of the LIDC runs. On CPU the
network sees the central 54 x 54 pixels of each 128 x 128 slice (the release centres every crop on its
nodule, and 54 is a multiple of the network's pooling factor 27, so no padding is added); on GPU the whole
slices. Random patches of the whole slice would mostly miss the small nodules."""


def lidc(profile: str, seed: int = 0, device: str = "auto") -> Experiment:
    """LIDC nodules, one random rater per sample and epoch: CE and SD on the profile's folds."""
    _check_profile(profile, LIDC_GRIDS)
    grid = LIDC_GRIDS[profile]
    options = {"seed": seed, **grid["task_options"]}
    runs = tuple(PlannedRun(_config("LIDC", loss, fold, seed, profile, device, options, grid["training"]), "LIDC")
                 for fold in grid["folds"] for loss in grid["losses"])
    return Experiment("lidc", profile, runs)


# --- Results chapter fallback --------------------------------------------------------------------

BOOK_EXPERIMENTS: tuple[str, ...] = ("controlled_uncertainty", "brain_tumour", "stroke", "lidc")
"""The experiments whose runs the Results chapter collects, in the book's order."""


def results_fallback(profile: str, seed: int = 0, device: str = "auto") -> Experiment:
    """The smallest experiment that still tests claims 1-3: the controlled-uncertainty CE and SD runs at
    the least and the most uncertain independent-noise settings (shared with that chapter's runs)."""
    settings = synthetic_settings(profile, seed)
    sweep = settings[(settings["sweep"] == "uncertainty") & (settings["noise"] == "independent")]
    extremes = {sweep.loc[sweep["relative_sigma"].idxmin(), "setting"],
                sweep.loc[sweep["relative_sigma"].idxmax(), "setting"]}
    runs = tuple(run for run in controlled_uncertainty(profile, seed, device).runs
                 if run.setting in extremes and run.config.loss in CORE_LOSSES)
    return Experiment("controlled_uncertainty", profile, runs)


# --- Running ----------------------------------------------------------------------------------------

def _finished(run_dir: Path, config: RunConfig) -> bool:
    """True when ``run_dir`` holds a finished run of exactly ``config``."""
    if not (run_dir / "DONE").exists() or not (run_dir / "config.yaml").is_file():
        return False
    stored = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    return RunConfig.from_dict(stored, source=str(run_dir / "config.yaml")).to_dict() == config.to_dict()


def run_experiment(experiment: Experiment, root: str | Path | None = None, progress: bool = True) -> pd.DataFrame:
    """Train the experiment's unfinished runs and return the cases of all of its runs.

    A run directory that already holds a finished run of the same configuration is reused. The
    returned cases carry the columns of :func:`volbias.analysis.tables.load_runs` plus ``setting_name``.
    """
    from tqdm import tqdm

    from volbias.training import run

    base = experiment.directory(root if root is not None else default_runs_dir())
    for planned in tqdm(experiment.runs, desc=experiment.name, disable=not progress):
        out_dir = planned.directory(base)
        if not _finished(out_dir, planned.config):
            run(planned.config, out_dir)
    return experiment_cases(experiment, root)


def experiment_cases(experiment: Experiment, root: str | Path | None = None) -> pd.DataFrame:
    """Cases of the experiment's finished runs (``setting_name`` = the planned run's setting)."""
    base = experiment.directory(root if root is not None else default_runs_dir())
    dirs = [p.directory(base) for p in experiment.runs]
    frames = []
    for planned, run_dir in zip(experiment.runs, dirs):
        if (run_dir / "DONE").exists():
            frame = load_runs(run_dir)
            frame["setting_name"] = planned.setting
            frames.append(frame)
    if not frames:
        raise FileNotFoundError(f"{base}: no finished runs of experiment {experiment.name!r}")
    return pd.concat(frames, ignore_index=True)


def runs_of(root: str | Path, experiments: Iterable[str], profile: str) -> pd.DataFrame:
    """Cases of every finished run of the named experiments at ``profile`` below ``root`` (may be empty)."""
    return load_runs([Path(root) / name / profile for name in experiments])
