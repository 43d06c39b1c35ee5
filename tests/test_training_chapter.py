"""The Training chapter at the smoke profile (executed by the session's book): its glued numbers match the runs
it wrote."""

from __future__ import annotations

import pandas as pd
import pytest

from volbias.models import build_model, count_parameters, receptive_field

pytestmark = pytest.mark.slow


def test_training_chapter_smoke(book) -> None:
    chapter = book.step("training")
    runs = chapter.runs_dir
    assert chapter.value("n_params_paper_3d") == count_parameters(build_model(3, 4))
    assert chapter.value("n_params_profile_2d") == count_parameters(build_model(2, 1, width=0.1))
    rf = receptive_field(3)
    assert (chapter.value("rf_in_plane"), chapter.value("rf_through_plane")) == (rf[0], rf[2])
    tables = {loss: pd.read_csv(runs / "training" / "smoke" / "synthetic" / loss / "fold0-seed0" / "cases.csv")
              for loss in ["ce", "sd", "ce-ce", "ce-sd"]}
    assert chapter.value("n_val_cases") == len(tables["ce"])
    for loss, table in tables.items():
        key = loss.replace("-", "_")
        assert chapter.value(f"mean_dice_{key}") == pytest.approx(table.dice.mean(), abs=6e-4)
        ratio = (table.pred_volume_soft / table.expected_volume).mean()
        assert chapter.value(f"soft_ratio_{key}") == pytest.approx(ratio, abs=6e-3)
