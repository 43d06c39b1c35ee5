"""The files of a run directory (volbias.training.run_files): reading cases, configs and train logs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from test_analysis_tables import make_cases
from volbias.data.case import Case
from volbias.training import run_files


def write_run(path: Path, cases: pd.DataFrame, config: dict, done: bool = True) -> Path:
    """A run directory in the contract's layout (config.yaml, cases.csv, DONE)."""
    path.mkdir(parents=True)
    cases.to_csv(path / "cases.csv", index=False)
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    if done:
        (path / "DONE").write_text("")
    return path


def test_read_cases_names_file_and_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "cases.csv"
    make_cases().drop(columns=["dice"]).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"cases\.csv.*dice"):
        run_files.read_cases(path)
    with pytest.raises(FileNotFoundError, match="nope"):
        run_files.read_cases(tmp_path / "nope" / "cases.csv")


def test_load_runs_attaches_config_and_skips_unfinished(tmp_path: Path) -> None:
    ce = make_cases(losses=("ce",))
    ce.loc[0, "case_id"] = "007"  # numeric-looking ids stay strings
    sd = make_cases(losses=("sd",))
    write_run(tmp_path / "a" / "ce", ce, {"task": "synthetic", "loss": "ce", "profile": "smoke",
                                         "task_options": {"sigma": 2.0, "noise": "shift"}})
    write_run(tmp_path / "a" / "sd", sd, {"task": "synthetic", "loss": "sd", "profile": "smoke",
                                         "task_options": {"sigma": 2.0, "noise": "shift"}})
    write_run(tmp_path / "b" / "unfinished", sd, {"task": "synthetic"}, done=False)
    frame = run_files.load_runs(tmp_path)
    assert len(frame) == len(ce) + len(sd)
    assert set(frame["run"]) == {"ce", "sd"}
    assert set(frame["setting"]) == {"noise=shift, sigma=2.0"}
    assert (frame["task_options.sigma"] == 2.0).all()
    assert "007" in set(frame["case_id"])
    np.testing.assert_allclose(frame["dice"].sum(), ce["dice"].sum() + sd["dice"].sum())
    empty = run_files.load_runs(tmp_path / "absent")
    assert empty.empty and set(run_files.CASE_COLUMNS) <= set(empty.columns)


def test_read_run_recomputes_convergence_from_the_train_log(tmp_path: Path) -> None:
    """A recorded ``converged`` column is replaced by the rule applied to the log (here: a log of an older
    version without the null model's columns, so never converged)."""
    cases = make_cases(losses=("ce",)).assign(converged=True, convergence="converged: old rule")
    run = write_run(tmp_path / "run", cases, {"task": "synthetic", "loss": "ce", "profile": "smoke"})
    (run / "train_log.csv").write_text("epoch,stage,loss,train_loss,lr\n1,0,ce,0.5,0.001\n")
    frame = run_files.read_run(run)
    assert not frame.converged.any() and frame.convergence.str.contains("null_loss").all()


@pytest.mark.parametrize("shape, known, unit", [((8, 8), False, "pixels"), ((4, 4, 4), False, "voxels"),
                                               ((4, 4, 4), True, "ml"), ((8, 8), True, "ml")])
def test_a_case_knows_the_unit_of_its_volumes(shape: tuple[int, ...], known: bool, unit: str) -> None:
    label = np.zeros(shape, np.float32)
    case = Case("c", label[None], label, np.ones(shape, bool), (1.0,) * len(shape), spacing_known=known)
    assert case.volume_unit == unit
