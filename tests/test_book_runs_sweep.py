"""The book's experiments run through the launchers: ``$VOLBIAS_WORKERS`` runs at a time, results read back
through ``collect``, and a failed run that raises only after the others finished."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from volbias.analysis import book_runs
from volbias.training import RunConfig

pytestmark = pytest.mark.slow


def _planned(loss: str, setting: str) -> book_runs.PlannedRun:
    config = RunConfig.from_dict({"task": "synthetic", "task_options": {"dims": 2}, "loss": loss, "fold": 0,
                                  "seed": 0, "profile": "smoke", "device": "cpu", "training": {"epochs": 1}})
    return book_runs.PlannedRun(config, setting)


def test_default_workers_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(book_runs.WORKERS_ENV, raising=False)
    assert book_runs.default_workers() == 1
    monkeypatch.setenv(book_runs.WORKERS_ENV, "3")
    assert book_runs.default_workers() == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(book_runs.WORKERS_ENV, bad)
        with pytest.raises(ValueError, match=f"VOLBIAS_WORKERS='{bad}': expected a positive integer"):
            book_runs.default_workers()


def test_run_experiment_with_two_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # ce-sd needs two epochs: its run fails (after loading its data) while the other two train
    experiment = book_runs.Experiment("tiny", "smoke", (_planned("ce", "low"), _planned("sd", "high"),
                                                          _planned("ce-sd", "high")))
    monkeypatch.setenv(book_runs.WORKERS_ENV, "2")
    with pytest.raises(RuntimeError, match=r"1 of 3 runs of experiment 'tiny' failed .*needs at least 2 epochs"):
        book_runs.run_experiment(experiment, tmp_path, progress=False)
    base = tmp_path / "tiny" / "smoke"
    good = ["low/synthetic/ce/fold0-seed0", "high/synthetic/sd/fold0-seed0"]
    workers = {json.loads((base / name / "launch.json").read_text())["worker"] for name in good}
    assert workers == {0, 1}  # the two runs went to the two workers
    assert (base / "high/synthetic/ce-sd/fold0-seed0/ERROR").is_file()

    cases = book_runs.experiment_cases(experiment, tmp_path)
    assert set(cases.run_name) == set(good)
    assert cases.groupby("run_name").setting_name.first().to_dict() == dict(zip(good, ["low", "high"]))
    for name in good:
        own = pd.read_csv(base / name / "cases.csv")
        pd.testing.assert_series_equal(cases[cases.run_name == name].dice.reset_index(drop=True), own.dice)
    manifest = json.loads((base / "manifest.json").read_text())
    assert manifest["failed"] == ["high/synthetic/ce-sd/fold0-seed0"] and manifest["counts"]["complete"] == 2
    assert len(book_runs.runs_of(tmp_path, ["tiny", "absent"], "smoke")) == len(cases)
