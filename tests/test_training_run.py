"""Smoke runs of every loss schedule: valid run directories, correct cases.csv, determinism on CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from volbias.data import load_task
from volbias.training import RunConfig, run

REQUIRED = ["task", "loss", "fold", "seed", "case_id", "dice", "true_volume", "expected_volume",
            "pred_volume_soft", "pred_volume_hard", "voxel_volume_ml"]


def smoke_config(loss: str, seed: int = 0, **training: object) -> RunConfig:
    return RunConfig.from_dict({"task": "synthetic", "task_options": {"dims": 2}, "loss": loss, "fold": 1,
                                "seed": seed, "profile": "smoke", "device": "cpu", "training": training})


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    torch.set_num_threads(1)
    return {loss: run(smoke_config(loss), root / loss).out_dir for loss in ["ce", "sd", "ce-ce", "ce-sd", "dml"]}


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * np.logical_and(a, b).sum() / total


@pytest.mark.parametrize("loss", ["ce", "sd", "ce-ce", "ce-sd", "dml"])
def test_run_directory_and_cases_csv(runs: dict[str, Path], loss: str) -> None:
    out = runs[loss]
    for name in ["config.yaml", "checkpoints/last.pt", "train_log.csv", "probabilities.npz", "cases.csv", "DONE"]:
        assert (out / name).is_file(), name
    config = smoke_config(loss)
    assert yaml.safe_load((out / "config.yaml").read_text()) == config.to_dict()
    task = load_task("synthetic", **config.resolved_task_options())
    _, val_cases = task.split(config.fold)
    table = pd.read_csv(out / "cases.csv")
    assert set(REQUIRED) <= set(table.columns)
    assert sorted(table.case_id) == sorted(c.id for c in val_cases)
    assert (table.task == "synthetic").all() and (table.loss == loss).all()
    assert (table.fold == 1).all() and (table.seed == 0).all()
    probs = np.load(out / "probabilities.npz")
    assert sorted(probs.files) == sorted(c.id for c in val_cases)
    for case in val_cases:
        row = table.set_index("case_id").loc[case.id]
        p = probs[case.id].astype(np.float64)
        assert p.shape == case.label.shape and probs[case.id].dtype == np.float16
        assert p.min() >= 0 and p.max() <= 1
        # independent recomputation from the stored map (float16 storage: small tolerances)
        assert row.pred_volume_soft == pytest.approx(p.sum(), rel=2e-3, abs=0.5)
        assert row.pred_volume_hard == pytest.approx((p > 0.5).sum(), abs=max(2, 0.01 * p.size))
        assert row.dice == pytest.approx(_dice(p > 0.5, case.label > 0.5), abs=0.02)
        assert row.true_volume == case.label.sum()
        assert row.expected_volume == pytest.approx(case.marginals.sum(dtype=np.float64), rel=1e-6)
        assert row.voxel_volume_ml == 1.0  # synthetic spacing is unknown: volumes in voxels


def test_train_log_follows_the_schedule(runs: dict[str, Path]) -> None:
    epochs = smoke_config("ce").resolved_profile().epochs
    for loss, stages in [("ce", ["ce"]), ("sd", ["sd"]), ("ce-sd", ["ce", "sd"]), ("ce-ce", ["ce", "ce"])]:
        log = pd.read_csv(runs[loss] / "train_log.csv")
        assert list(log.epoch) == list(range(1, epochs + 1))
        assert list(dict.fromkeys(zip(log.stage, log.loss))) == list(enumerate(stages))
        assert np.isfinite(log.train_loss).all()
    ce, cece = (pd.read_csv(runs[k] / "train_log.csv") for k in ("ce", "ce-ce"))
    # CE-CE restarts the optimiser and schedule at the switch: its learning rate starts again at the profile's
    switch = int((cece.stage == 1).idxmax())
    start = smoke_config("ce-ce").resolved_profile().lr
    assert cece.lr[0] == pytest.approx(start) and cece.lr[switch] == pytest.approx(start)
    assert (ce.lr.diff().dropna() <= 0).all()


def test_second_call_does_not_retrain(runs: dict[str, Path]) -> None:
    before = (runs["ce"] / "cases.csv").stat().st_mtime_ns
    result = run(smoke_config("ce"), runs["ce"])
    assert not result.trained and (runs["ce"] / "cases.csv").stat().st_mtime_ns == before


def test_other_config_in_same_directory_is_refused(runs: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="different config"):
        run(smoke_config("ce", seed=5), runs["ce"])


def test_determinism_same_seed_same_metrics(runs: dict[str, Path], tmp_path: Path) -> None:
    again = run(smoke_config("ce-sd"), tmp_path / "again").out_dir
    pd.testing.assert_frame_equal(pd.read_csv(again / "cases.csv"), pd.read_csv(runs["ce-sd"] / "cases.csv"))
    a, b = np.load(again / "probabilities.npz"), np.load(runs["ce-sd"] / "probabilities.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a.files)
    other = run(smoke_config("ce-sd", seed=1), tmp_path / "other").out_dir
    assert not pd.read_csv(other / "cases.csv").pred_volume_soft.equals(
        pd.read_csv(again / "cases.csv").pred_volume_soft)
