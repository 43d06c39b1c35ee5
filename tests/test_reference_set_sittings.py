"""The reference set made over several sittings: which runs are pending, which are unfinished, in what order
the experiments are trained (on folders written here, not the stored set)."""

from __future__ import annotations

from pathlib import Path

import pytest

from volbias.analysis import reference_set


def planned() -> list[str]:
    return [cell.name for cell in reference_set.reference_cells(reference_set.reference_experiments())]


def fake_run(root: Path, name: str, finished: bool) -> Path:
    run = root / name
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("loss: ce\n")
    if finished:
        (run / "cases.csv").write_text("case_id\nc0\n")
        (run / "DONE").write_text("")
    return run


def test_pending_runs_are_the_planned_runs_not_finished(tmp_path: Path) -> None:
    names = planned()
    assert reference_set.pending_runs(tmp_path) == names
    fake_run(tmp_path, names[3], finished=True)
    started = fake_run(tmp_path, names[7], finished=False)
    pending = reference_set.pending_runs(tmp_path)
    assert pending == names[:3] + names[4:]  # a started run is still pending
    assert reference_set.unfinished_runs(tmp_path) == [started]


def test_experiments_named_first_are_trained_first() -> None:
    default = [e.name for e in reference_set.ordered_experiments()]
    assert default == [e.name for e in reference_set.reference_experiments()]
    order = [e.name for e in reference_set.ordered_experiments(["brain_tumour_x2", "lidc"])]
    assert order[:2] == ["brain_tumour_x2", "lidc"] and sorted(order) == sorted(default)
    with pytest.raises(ValueError, match=r"unknown experiments \['stroke'\]"):
        reference_set.ordered_experiments(["stroke"])
