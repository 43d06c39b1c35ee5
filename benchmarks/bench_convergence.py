"""Do the CPU profile's brain-tumour networks converge? All five folds, at the profile's budget and at twice it.

Trains (or reuses) CE and SD on the five folds of the 10 public BraTS 2018 cases at the cpu profile
(``brain_tumour`` experiment) and again with twice the epochs (``brain_tumour_x2``), prints per budget and
loss the mean held-out Dice with its 95 % bootstrap interval, the relative volume bias of CE's soft and
SD's thresholded volumes, and how many runs are converged, then the change of each loss's mean Dice when
the budget doubles. The merged cases are stored, with the command and the code version, in the package
(``src/volbias/stored/cpu-convergence/``) for the Brain-tumour chapter, which also runs from an installed
wheel.

    python benchmarks/bench_convergence.py [--workers 2] [--runs-dir runs/cpu]

About 10 minutes per standard-budget run on one core of the 2-core development machine when it is shared;
run it once after a change of the training recipe.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from volbias.analysis import book_runs, tables
from volbias.training.checkpoint import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
RESULTS = book_runs.STORED_CONVERGENCE
BUDGETS = (1.0, 2.0)


def _code_version() -> str:
    try:
        return subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="runs trained at a time")
    parser.add_argument("--runs-dir", default=os.environ.get("VOLBIAS_RUNS_DIR", str(ROOT / "runs" / "cpu")))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    frames = []
    for budget in BUDGETS:
        experiment = book_runs.brain_tumour("cpu", seed=args.seed, folds=range(5), budget=budget)
        cases = book_runs.run_experiment(experiment, args.runs_dir, workers=args.workers)
        frames.append(cases.assign(budget=budget))
    cases = pd.concat(frames, ignore_index=True)

    dice = tables.summarize(cases, by=("budget", "loss"), metrics=("dice",), seed=args.seed)
    bias = tables.volume_bias_table(cases, by=("budget", "loss"), seed=args.seed)
    table = dice.drop(columns=["metric", "sd", "median"]).merge(
        bias[["budget", "loss", "bias_soft", "bias_hard"]], on=["budget", "loss"]).set_index(["budget", "loss"])
    runs = cases.drop_duplicates(["budget", "loss", "fold"]).groupby(["budget", "loss"])
    table["converged runs"] = runs.converged.sum().astype(int).astype(str) + "/" + runs.size().astype(str)
    print(table.round(3).to_string())
    means = table["mean"].unstack("budget")
    change = (means[BUDGETS[1]] - means[BUDGETS[0]]).rename("Dice change when the budget doubles")
    print(change.round(4).to_string())

    RESULTS.mkdir(parents=True, exist_ok=True)
    write_text_atomic(RESULTS / "cases.csv", cases.drop(columns=["run_dir"], errors="ignore").to_csv(index=False))
    write_text_atomic(RESULTS / "provenance.json", json.dumps({
        "command": "python benchmarks/bench_convergence.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "code_version": _code_version(), "budgets": list(BUDGETS), "profile": "cpu", "task": "BR18-sample",
    }, indent=2))
    print(f"stored {RESULTS / 'cases.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
