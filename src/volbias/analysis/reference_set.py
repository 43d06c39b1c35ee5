"""The cpu reference result set: enough trained networks per loss to speak about a loss.

``make results-cpu`` (``python -m volbias.analysis.reference_set make``) trains, at the cpu profile's
settings and in the book's run layout (``<set>/<experiment>/cpu/<setting>/<task>/<loss>/fold<k>-seed<s>``):

- phantoms: independent and boundary-shift noise x sigma/R 0.1 and 0.9 x CE and SD x seeds 0-4, each scored
  on its 100 fresh test phantoms; CE-CE and CE-SD at independent noise, sigma/R 0.9, seeds 0-4;
- LIDC: the cpu profile's 800 nodules, 5 patient-grouped folds x CE and SD, and SD with one Dice per batch on
  the same folds (the sensitivity run);
- BR18-sample: 5 folds x CE, SD, CE-CE and CE-SD; CE and SD again at twice the steps (the stability check).

It is resumable (finished runs are kept; a line per finished run) and may be made over several sittings
(``--first`` picks which experiments go first); the manifest lists the planned runs still ``pending``. Of
every run it keeps ``config.yaml``, ``resolved.yaml``, ``cases.csv``, ``train_log.csv``, ``summary.json``,
``launch.json`` and ``DONE`` (no checkpoints, no probability maps); it adds the phantom theory tables of the
test phantoms (``phantom_theory/``) and writes ``manifest.json``: commit, package versions, hardware,
command, the wall time of every run and the hash of the training code
(:mod:`volbias.training.code_hash`). ``check`` says whether the set is valid: every run carries the same
training-code hash, and it is the hash of the training code in the manifest's commit, a commit on ``main``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from volbias.analysis import book_runs, phantom_theory
from volbias.analysis.results_store import write_manifest
from volbias.training.code_hash import training_code_hash, training_code_hash_at
from volbias.training.collect import collect
from volbias.training.grid import Cell
from volbias.training.launchers import launch
from volbias.training.run_files import RUN_FILES, find_runs

NAME = "cpu-reference"
PROFILE = "cpu"
SEEDS: tuple[int, ...] = (0, 1, 2, 3, 4)
FOLDS: tuple[int, ...] = (0, 1, 2, 3, 4)
TWO_STAGE: tuple[str, ...] = ("ce-ce", "ce-sd")
BRAIN_LOSSES: tuple[str, ...] = ("ce", "sd", "ce-ce", "ce-sd")
DOUBLED: tuple[str, ...] = ("ce", "sd")
KEEP: tuple[str, ...] = (*RUN_FILES, "resolved.yaml", "launch.json", "DONE")
"""What the set keeps of each run."""
THEORY_DIR = "phantom_theory"
STABILITY_BUDGET = 2.0


def default_root() -> Path:
    """``data/results/cpu-reference`` of the checkout (else of the working directory)."""
    return book_runs.default_results_dir() / NAME


def _two_stage(experiment: book_runs.Experiment) -> list[book_runs.PlannedRun]:
    """CE-CE and CE-SD copies of the CE runs at the most uncertain independent-noise phantom setting."""
    settings = book_runs.synthetic_settings(PROFILE)
    top = settings[(settings.noise == "independent") & (settings.sweep == "uncertainty")]
    setting = top.sort_values("relative_sigma").iloc[-1]["setting"]
    return [book_runs.PlannedRun(replace(run.config, loss=loss), run.setting) for run in experiment.runs
            if run.setting == setting and run.config.loss == "ce" for loss in TWO_STAGE]


def reference_experiments() -> list[book_runs.Experiment]:
    """The experiments of the set (module docstring), in the book's run layout."""
    phantoms = book_runs.controlled_uncertainty(PROFILE, seeds=SEEDS, device="cpu")
    phantoms = replace(phantoms, runs=phantoms.runs + tuple(_two_stage(phantoms)))
    return [phantoms, book_runs.lidc(PROFILE, device="cpu", folds=FOLDS),
            book_runs.brain_tumour(PROFILE, device="cpu", folds=FOLDS, losses=BRAIN_LOSSES),
            book_runs.brain_tumour(PROFILE, device="cpu", folds=FOLDS, losses=DOUBLED, budget=STABILITY_BUDGET)]


def reference_cells(experiments: Sequence[book_runs.Experiment]) -> list[Cell]:
    """Every run of ``experiments`` as a grid cell named by its path below the set's folder; within an
    experiment the CE and SD runs that every claim compares come first (then the two-stage schedules)."""
    return [Cell(f"{experiment.name}/{experiment.profile}/{cell.name}", cell.values, cell.labels)
            for experiment in experiments
            for cell in sorted(book_runs.experiment_cells(experiment), key=lambda c: c.values["loss"] not in DOUBLED)]


def prune(root: Path) -> None:
    """Delete everything but :data:`KEEP` from each finished run below ``root``."""
    for run_dir in find_runs(root):
        for path in run_dir.iterdir():
            if path.name not in KEEP:
                shutil.rmtree(path) if path.is_dir() else path.unlink()


def phantom_cases(root: Path) -> pd.DataFrame:
    """The test-phantom cases of the set's phantom runs."""
    cases = book_runs.runs_of(root, ["controlled_uncertainty"], PROFILE)
    return cases[cases["split"] == "test"] if len(cases) else cases


def run_table(root: Path) -> pd.DataFrame:
    """One row per run of the set: name, wall time (s), code hash and commit (from ``launch.json``)."""
    rows = []
    for experiment in sorted({p.parts[0] for p in (r.relative_to(root) for r in find_runs(root))}):
        collection = collect(root / experiment / PROFILE, write=False)
        for record in collection.runs:
            if record.status != "complete":
                continue
            launch_info = json.loads((collection.root / record.name / "launch.json").read_text())
            rows.append({"run": f"{experiment}/{PROFILE}/{record.name}", "seconds": record.run_seconds,
                         "training_code_hash": launch_info.get("training_code_hash"),
                         "commit": launch_info.get("commit")})
    return pd.DataFrame(rows, columns=["run", "seconds", "training_code_hash", "commit"])


def ordered_experiments(names: Sequence[str] = ()) -> list[book_runs.Experiment]:
    """The set's experiments, those named in ``names`` first and in that order (all when empty)."""
    experiments = reference_experiments()
    known = [experiment.name for experiment in experiments]
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ValueError(f"unknown experiments {unknown}; the set has {known}")
    rank = {name: i for i, name in enumerate(names)}
    return sorted(experiments, key=lambda experiment: rank.get(experiment.name, len(rank)))


def pending_runs(root: Path) -> list[str]:
    """The planned runs of the set that are not finished below ``root`` (empty when the set is complete)."""
    done = {str(run.relative_to(root)) for run in find_runs(root)}
    return [cell.name for cell in reference_cells(reference_experiments()) if cell.name not in done]


def make_reference_set(root: Path, workers: int = 2, progress: bool = True,
                       command: str = "make results-cpu", first: Sequence[str] = ()) -> Path:
    """Train the missing runs of the set (experiments in ``first`` first), then :func:`close_sitting`."""
    root.mkdir(parents=True, exist_ok=True)
    cells = reference_cells(ordered_experiments(first))
    started = time.time()
    report = launch(cells, root, workers=workers, progress=progress)
    close_sitting(root, command, sitting_seconds=time.time() - started, progress=progress)
    if report.failed:
        raise RuntimeError(f"{root}: {len(report.failed)} runs failed, e.g. {report.failed[0].name}: "
                           f"{report.failed[0].error}; run the command again to retry them")
    return root


def unfinished_runs(root: Path) -> list[Path]:
    """Run folders below ``root`` that hold a started but unfinished run (checkpoints, no ``DONE``)."""
    finished = set(find_runs(root))
    return sorted(config.parent for config in root.rglob("config.yaml") if config.parent not in finished)


def close_sitting(root: Path, command: str = "make results-cpu", sitting_seconds: float | None = None,
                  progress: bool = True) -> Path:
    """Prune the finished runs, add the phantom theory and write the manifest of what the set holds now,
    with the planned runs still ``pending``: after a sitting ends or is stopped (unfinished runs are left
    where they are, to resume; they are not part of the set)."""
    prune(root)
    phantom_theory.attach_theory_volumes(phantom_cases(root), caches=[root / THEORY_DIR], progress=progress)
    runs = run_table(root)
    hashes = sorted(set(runs["training_code_hash"].dropna()))
    write_manifest(root, seed=0, profile=PROFILE, description=__doc__.split("\n\n")[0],
                   command=command, training_code_hash=hashes[0] if len(hashes) == 1 else hashes,
                   n_runs=len(runs), run_seconds_total=round(float(runs["seconds"].sum()), 1),
                   wall_seconds_last_sitting=None if sitting_seconds is None else round(sitting_seconds),
                   runs=runs.to_dict(orient="records"), pending=pending_runs(root))
    return root


def _on_main(commit: str, repo: Path) -> bool:
    result = subprocess.run(["git", "merge-base", "--is-ancestor", commit, "main"], cwd=repo,
                            capture_output=True, check=False)
    return result.returncode == 0


def check_reference_set(root: Path, manifest: dict[str, Any]) -> list[str]:
    """Why the set at ``root`` is not valid (empty when it is): see the module docstring."""
    problems = []
    runs = run_table(root)
    hashes = set(runs["training_code_hash"])
    if len(hashes) != 1:
        problems.append(f"runs made by {len(hashes)} different training codes: {sorted(map(str, hashes))}")
    commit = str(manifest.get("commit", ""))
    repo = Path(__file__).resolve().parents[3]
    if (repo / ".git").exists():
        if not _on_main(commit, repo):
            problems.append(f"the manifest's commit {commit!r} is not on main")
        elif hashes and training_code_hash_at(commit, repo) not in hashes:
            problems.append(f"the training code of commit {commit[:10]} is not the one that made the runs")
    if hashes and training_code_hash() not in hashes:
        problems.append("the installed training code differs from the one that made the runs")
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """``make``, ``close`` or ``check`` the reference set."""
    parser = argparse.ArgumentParser(prog="python -m volbias.analysis.reference_set", description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("make", "close", "check"),
                        help="make: train what is missing; close: write the manifest of what is there (after "
                             "a stopped sitting); check: is the set valid")
    parser.add_argument("--root", type=Path, default=default_root())
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--first", nargs="*", default=(), metavar="EXPERIMENT",
                        help="train these experiments' runs first, in this order (the set's order otherwise)")
    args = parser.parse_args(argv)
    if args.action == "make":
        make_reference_set(args.root, args.workers, command=" ".join(["make results-cpu", *sys.argv[2:]]),
                           first=args.first)
        print(f"{args.root}: {len(find_runs(args.root))} runs; manifest written")
    elif args.action == "close":
        close_sitting(args.root, command="python -m volbias.analysis.reference_set close")
        for run_dir in unfinished_runs(args.root):
            print(f"{run_dir}: unfinished (not part of the set; `make results-cpu` resumes it)")
    from volbias.analysis.results_store import read_manifest

    pending = pending_runs(args.root)
    if pending:
        print(f"{args.root}: {len(pending)} planned runs pending (e.g. {pending[0]}); "
              "`make results-cpu` trains them")
    problems = check_reference_set(args.root, read_manifest(args.root))
    for line in problems:
        print(f"{args.root}: {line}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
