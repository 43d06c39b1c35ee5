"""The Training chapter executes at the smoke profile; its glued numbers match the runs it wrote."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from volbias.bookbuild import execute_chapter, read_glued
from volbias.models import build_model, count_parameters, receptive_field

pytestmark = pytest.mark.slow


def test_training_chapter_smoke(repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = tmp_path / "runs"
    monkeypatch.setenv("VOLBIAS_RUNS_DIR", str(runs))
    out = execute_chapter(repo_root / "chapters" / "training.ipynb", tmp_path / "training.ipynb",
                          {"profile": "smoke", "device": "cpu"}, cwd=repo_root / "chapters")
    glued = read_glued(out)
    assert glued["n_params_paper_3d"] == count_parameters(build_model(3, 4))
    assert glued["n_params_profile_2d"] == count_parameters(build_model(2, 1, width=0.1))
    assert (glued["rf_in_plane"], glued["rf_through_plane"]) == (receptive_field(3)[0], receptive_field(3)[2])
    tables = {loss: pd.read_csv(runs / "training" / "smoke" / "synthetic" / loss / "fold0-seed0" / "cases.csv")
              for loss in ["ce", "sd", "ce-ce", "ce-sd"]}
    assert glued["n_val_cases"] == len(tables["ce"])
    for loss, table in tables.items():
        key = loss.replace("-", "_")
        assert glued[f"mean_dice_{key}"] == pytest.approx(table.dice.mean(), abs=6e-4)
        ratio = (table.pred_volume_soft / table.expected_volume).mean()
        assert glued[f"soft_ratio_{key}"] == pytest.approx(ratio, abs=6e-3)
    assert 0 < glued["max_run_seconds"] < 120
