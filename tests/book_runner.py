"""The book executed for the tests: chapters at the smoke profile, in book order, each step once per session.

A *step* is one execution of a chapter with its parameters.  Steps of one *sequence* share a runs directory
(``VOLBIAS_RUNS_DIR``), as the chapters of a book build do, and run in the sequence's order: asking for a
step first executes the steps before it that have not run yet.  A step that fails is not retried: its error
is raised again to each test of that step, while the later steps still run (and their tests report whatever
of theirs the failure broke).  Each step keeps a snapshot of what it left behind (glued values, the finished
runs under the runs directory), so a test reads the state right after its step, whatever ran later and in
whatever order the tests run.

The Theory, Data and Training chapters are sequences of their own (they share no runs).  The experiment
sequence starts with the Results chapter on an empty runs directory (it trains its own fallback sweep,
which the Controlled-uncertainty chapter then reuses), then follows ``_toc.yml``: the experiment chapters
and the Results chapter again, now with stored result sets made of the book's own runs (a stand-in for the
cpu reference set, and a set as from a GPU machine), and the experiment chapters once more reading that
stand-in.  "Which volume to
trust" is a sequence of its own: it trains the runs it shares with the Controlled-uncertainty and LIDC
chapters itself, so that its tests (their own module, possibly on another xdist worker) do not execute the
whole experiment sequence a second time.  The Stroke chapter with ISLES 2017 files written in the
challenge layout is a sequence of its own too, so that its runs do not enter the Results chapter. "Audit your
own model" is one as well: it trains the two smoke brain-tumour runs it audits itself (seconds), rather than
have its tests execute the experiment sequence up to the Brain-tumour chapter.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from data_mirror import DataMirror
from volbias.bookbuild import check_executed, execute_chapter, read_glued

PROFILE = "smoke"


@dataclass(frozen=True)
class Step:
    """One chapter execution: a name, the chapter, its sequence, parameters and what it reads."""

    name: str
    chapter: str
    sequence: str
    parameters: Callable[[Path], dict[str, Any]] = lambda work: {}
    data: tuple[str, ...] = ()
    prepare: Callable[[Path, Path], None] = lambda work, runs: None
    shared_cache: bool = False  # read the data through the session's data cache (else a cache the other steps share)


@dataclass
class StepResult:
    """What a step left behind: its glued values and the finished runs at that moment."""

    step: Step
    glued: dict[str, object]
    runs_dir: Path
    work_dir: Path
    done: list[Path] = field(default_factory=list)  # run directories holding DONE, relative to runs_dir

    def value(self, key: str) -> Any:
        """A glued value; a clear failure naming the chapter and its glued keys when it is not glued."""
        if key not in self.glued:
            prefix = key.split("_")[0]
            similar = sorted(k for k in self.glued if k.startswith(prefix))
            pytest.fail(f"chapter {self.step.chapter!r} (step {self.step.name!r}) glues no {key!r}; it glues "
                        f"{similar or sorted(self.glued)}", pytrace=False)
        return self.glued[key]

    def runs_under(self, relative: str | Path) -> list[Path]:
        """Finished run directories below ``runs_dir / relative`` at the end of the step."""
        prefix = Path(relative).parts
        return [self.runs_dir / d for d in self.done if d.parts[:len(prefix)] == prefix]

    def cases(self, run_dir: Path) -> pd.DataFrame:
        """The cases table of a finished run (case ids as strings)."""
        if not (run_dir / "DONE").is_file():
            pytest.fail(f"{run_dir}: no finished run there after step {self.step.name!r}", pytrace=False)
        return pd.read_csv(run_dir / "cases.csv", dtype={"case_id": str})


def write_isles17(root: Path, seed: int = 0) -> Path:
    """Five tiny ISLES 2017 training cases in the challenge layout (ids from folds 0 and 1 of the paper)."""
    rng = np.random.default_rng(seed)
    tokens = ("MR_ADC", "MR_Tmax", "MR_MTT", "MR_TTP", "MR_rCBF", "MR_rCBV")
    affine = np.diag([1.5, 1.5, 5.0, 1.0])
    grid = np.stack(np.meshgrid(np.arange(40) * 1.5, np.arange(40) * 1.5, np.arange(12) * 5.0, indexing="ij"))
    for k, case in enumerate(("training_2", "training_11", "training_13", "training_20", "training_24")):
        centre = np.array([30.0, 30.0, 30.0]) + rng.normal(0, 3, 3)
        lesion = np.sqrt(((grid - centre.reshape(3, 1, 1, 1)) ** 2).sum(0)) < 14
        for j, token in enumerate((*tokens, "OT")):
            name = f"VSD.Brain.XX.O.{token}.{128000 + 10 * k + j}"
            image = 800.0 + 200.0 * lesion + rng.normal(0, 20, lesion.shape)
            data = lesion.astype(np.uint8) if token == "OT" else image.astype(np.float32)
            (root / case / name).mkdir(parents=True)
            nib.save(nib.Nifti1Image(data, affine), str(root / case / name / f"{name}.nii"))
    return root


REFERENCE = "cpu-reference"
"""The name the chapters give the stored reference set (their ``reference`` parameter's default)."""


def store_result_sets(work: Path, runs: Path) -> None:
    """Two stored result sets made of the book's own smoke runs: a stand-in for the cpu reference set (the
    experiment chapters' runs in its layout, the brain-tumour runs once more as ``brain_tumour_x2``) and a
    set as from a GPU machine (the controlled-uncertainty runs). Copies of the live runs: every live run has a
    stored twin with the same configuration and the same numbers."""
    from volbias.analysis import results_store

    for name in (REFERENCE, "gpu-synthetic"):
        if (work / "results" / name).exists():
            shutil.rmtree(work / "results" / name)
    reference = work / "results" / REFERENCE
    for experiment in ("controlled_uncertainty", "brain_tumour", "lidc"):
        shutil.copytree(runs / experiment, reference / experiment)
    shutil.copytree(runs / "brain_tumour", reference / "brain_tumour_x2")
    results_store.write_manifest(reference, seed=0, profile="smoke", description="the book's runs, for the tests")
    other = work / "results" / "gpu-synthetic"
    shutil.copytree(runs / "controlled_uncertainty", other / "controlled_uncertainty")
    results_store.write_manifest(other, seed=0, profile="gpu", description="copy for the tests")


def without_stored(work: Path) -> dict[str, str]:
    """Parameters that keep a chapter from reading any stored result set (not even the checkout's)."""
    return {"results_dir": str(work / "no-results")}


def with_stored(work: Path) -> dict[str, str]:
    """Parameters that point a chapter at the stored result sets of :func:`store_result_sets`."""
    return {"results_dir": str(work / "results")}


STEPS: tuple[Step, ...] = (
    Step("theory", "theory", "theory"),
    Step("data", "data", "data", data=("brats18-sample", "lidc-idri-slices", "paper-splits"), shared_cache=True),
    Step("training", "training", "training", lambda work: {"device": "cpu"}),
    Step("results_alone", "results", "experiments", without_stored),
    Step("controlled_uncertainty", "controlled_uncertainty", "experiments", without_stored),
    Step("brain_tumour", "brain_tumour", "experiments", without_stored, data=("brats18-sample",)),
    Step("stroke", "stroke", "experiments"),
    Step("lidc", "lidc", "experiments", without_stored, data=("lidc-idri-slices",)),
    Step("results", "results", "experiments", with_stored, data=("brats18-sample", "lidc-idri-slices"),
         prepare=store_result_sets),
    # the experiment chapters again, now reading the stored reference set (their live runs are reused)
    Step("controlled_uncertainty_stored", "controlled_uncertainty", "experiments", with_stored),
    Step("brain_tumour_stored", "brain_tumour", "experiments", with_stored, data=("brats18-sample",)),
    Step("lidc_stored", "lidc", "experiments", with_stored, data=("lidc-idri-slices",)),
    Step("which_volume", "which_volume", "which-volume", data=("lidc-idri-slices",)),
    Step("stroke_official", "stroke", "stroke-official", lambda work: {"isles_root": str(work / "isles")},
         prepare=lambda work, runs: write_isles17(work / "isles" / "ISLES2017_Training")),
    Step("audit", "audit", "audit", data=("brats18-sample",)),
)


class Book:
    """Executes :data:`STEPS` on demand, each once, in sequence order; remembers failures and re-raises them."""

    def __init__(self, repo_root: Path, work_dir: Path, mirror: DataMirror) -> None:
        self.repo_root = repo_root
        self.work_dir = work_dir
        self.mirror = mirror  # its cache_dir is the session's data cache
        self._results: dict[str, StepResult] = {}
        self._failures: dict[str, BaseException] = {}

    def runs_dir(self, sequence: str) -> Path:
        """The runs directory shared by the steps of ``sequence``."""
        return self.work_dir / sequence / "runs"

    def step(self, name: str) -> StepResult:
        """The snapshot of step ``name``, executing it (and the steps before it in its sequence) if needed."""
        if name not in {s.name for s in STEPS}:
            raise KeyError(f"unknown step {name!r}; steps: {[s.name for s in STEPS]}")
        target = next(s for s in STEPS if s.name == name)
        for step in STEPS[:STEPS.index(target)]:
            if step.sequence == target.sequence:
                with contextlib.suppress(Exception):  # a failed step is raised again to its own tests
                    self._execute(step)
        self._execute(target)
        return self._results[name]

    def _execute(self, step: Step) -> None:
        if step.name in self._results:
            return
        if step.name in self._failures:
            raise self._failures[step.name]
        sequence_data = sorted({d for s in STEPS if s.sequence == step.sequence for d in s.data})
        mirror = self.mirror.require(*sequence_data) if sequence_data else self.mirror.root
        work, runs = self.work_dir / step.sequence, self.runs_dir(step.sequence)
        runs.mkdir(parents=True, exist_ok=True)
        try:
            step.prepare(work, runs)
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("VOLBIAS_RUNS_DIR", str(runs))
                patch.setenv("VOLBIAS_DATA_MIRROR", str(mirror))
                patch.delenv("VOLBIAS_ISLES_ROOT", raising=False)
                # the session's data cache, else one the steps share: never the user's cache
                cache = self.mirror.cache_dir if step.shared_cache else self.work_dir / "chapter-cache"
                patch.setenv("VOLBIAS_CACHE_DIR", str(cache))
                out = execute_chapter(self.repo_root / "chapters" / f"{step.chapter}.ipynb",
                                      work / "executed" / f"{step.name}.ipynb",
                                      {"profile": PROFILE, **step.parameters(work)},
                                      cwd=self.repo_root / "chapters")
            problems = check_executed([out])
            if problems:  # e.g. a glued numpy repr, which the HTML build would reject at some profile
                raise RuntimeError(f"{step.chapter}: " + "; ".join(str(p) for p in problems))
        except Exception as err:
            self._failures[step.name] = err
            raise
        done = sorted(p.parent.relative_to(runs) for p in runs.rglob("DONE"))
        self._results[step.name] = StepResult(step, read_glued(out), runs, work, done)
