"""``collect``: one results table from hand-made run directories in every state, the manifest, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from volbias.cli import main
from volbias.training.collect import collect, config_hash
from volbias.training.grid import Cell, record_grid


def _config(loss: str, fold: int) -> dict:
    return {"task": "synthetic", "loss": loss, "fold": fold, "seed": 0, "profile": "smoke", "device": "cpu",
            "task_options": {"dims": 2}, "loss_options": {}, "training": {}}


def _cases(loss: str, fold: int, dice: list[float]) -> pd.DataFrame:
    rows = [{"task": "synthetic", "loss": loss, "fold": fold, "seed": 0, "case_id": f"c{i}", "dice": d,
             "true_volume": 10.0 + i, "expected_volume": 11.0 + i, "pred_volume_soft": 12.0 + i,
             "pred_volume_hard": 13.0 + i, "voxel_volume_ml": 1.0} for i, d in enumerate(dice)]
    return pd.DataFrame(rows)


def _log(seconds: tuple[float, ...], settled: bool = True, null_columns: bool = True) -> pd.DataFrame:
    """A train log: a settled loss far below the null model's (converged) or one still falling."""
    n = len(seconds)
    losses = np.full(n, 0.2) if settled else np.linspace(0.5, 0.2, n)
    log = pd.DataFrame({"epoch": range(1, n + 1), "stage": 0, "loss": "ce", "train_loss": losses,
                        "train_dice": 0.8, "soft_volume_ratio": 1.0, "null_loss": 0.5, "null_dice": 0.0,
                        "lr": [1e-3 if e < n // 2 else 1e-4 if e < 3 * n // 4 else 1e-5 for e in range(n)],
                        "seconds": seconds})
    return log if null_columns else log.drop(columns=["null_loss", "null_dice"])


def _run_dir(root: Path, loss: str, fold: int, cases: pd.DataFrame | None = None, done: bool = True,
             log: pd.DataFrame | None = None, eval_seconds: float = 0.0, launch: dict | None = None) -> Path:
    out = root / "synthetic" / loss / f"fold{fold}-seed0"
    (out / "checkpoints").mkdir(parents=True)
    (out / "config.yaml").write_text(yaml.safe_dump(_config(loss, fold)))
    (out / "checkpoints" / "last.pt").write_bytes(b"")
    if cases is not None:
        cases.to_csv(out / "cases.csv", index=False)
        (log if log is not None else _log(())).to_csv(out / "train_log.csv", index=False)
        (out / "summary.json").write_text(json.dumps({"device": "cpu", "eval_seconds": eval_seconds}))
    if launch is not None:
        (out / "launch.json").write_text(json.dumps(launch))
    if done:
        (out / "DONE").write_text("complete\n")
    return out


@pytest.fixture
def grid(tmp_path: Path) -> Path:
    """A grid with runs in every state: converged, unconverged (still falling; a log of an older version),
    failed, interrupted, never started."""
    root = tmp_path / "grid"
    _run_dir(root, "ce", 0, _cases("ce", 0, [0.8, 0.6]), log=_log((0.25,) * 16), eval_seconds=0.25,
             launch={"code_version": "9.9.9", "commit": "abc1234", "device": "cuda:0", "device_name": "Test GPU"})
    _run_dir(root, "sd", 0, _cases("sd", 0, [0.9, 0.7]), log=_log((0.0625,) * 16, settled=False))
    _run_dir(root, "ce", 1, _cases("ce", 1, [0.5]), log=_log((0.125,) * 16, null_columns=False), eval_seconds=1.0)
    failed = _run_dir(root, "sd", 1, done=False)
    (failed / "ERROR").write_text("ValueError: boom\n")
    _run_dir(root, "ce", 2, done=False)  # interrupted: a checkpoint, no DONE, no ERROR
    _run_dir(root, "ce", 3, _cases("ce", 3, [0.5]).drop(columns=["dice"]))  # unreadable cases.csv
    hidden = root / ".submitit" / "x"
    hidden.mkdir(parents=True)
    (hidden / "config.yaml").write_text("not a run\n")
    record_grid(root, [Cell("synthetic/ce/fold0-seed0", _config("ce", 0), {"setting_name": "low"}),
                       Cell("synthetic/sd/fold2-seed0", _config("sd", 2), {"setting_name": "high"})])
    return root


def test_collect_merges_complete_runs_and_lists_the_others(grid: Path) -> None:
    collection = collect(grid)
    status = {record.name: record.status for record in collection.runs}
    assert status == {"synthetic/ce/fold0-seed0": "complete", "synthetic/sd/fold0-seed0": "complete",
                      "synthetic/ce/fold1-seed0": "complete", "synthetic/sd/fold1-seed0": "failed",
                      "synthetic/ce/fold2-seed0": "incomplete", "synthetic/sd/fold2-seed0": "missing",
                      "synthetic/ce/fold3-seed0": "failed"}
    assert {r.name for r in collection.missing} == {"synthetic/ce/fold2-seed0", "synthetic/sd/fold2-seed0"}
    assert [r.name for r in collection.unconverged] == ["synthetic/ce/fold1-seed0", "synthetic/sd/fold0-seed0"]
    errors = {r.name: r.error for r in collection.failed}
    assert errors["synthetic/sd/fold1-seed0"] == "ValueError: boom"
    assert "missing columns ['dice']" in errors["synthetic/ce/fold3-seed0"]

    results = pd.read_csv(grid / "results.csv", dtype={"case_id": str})
    expected = pd.concat([pd.read_csv(grid / "synthetic" / loss / f"fold{fold}-seed0" / "cases.csv")
                          for loss, fold in [("ce", 0), ("sd", 0), ("ce", 1)]], ignore_index=True)
    assert len(results) == len(collection.results) == 5
    merged = results.sort_values(["loss", "fold", "case_id"]).reset_index(drop=True)
    expected = expected.sort_values(["loss", "fold", "case_id"]).reset_index(drop=True)
    pd.testing.assert_series_equal(merged["dice"], expected["dice"])
    pd.testing.assert_series_equal(merged["pred_volume_soft"], expected["pred_volume_soft"])
    assert set(results.run_name) == {"synthetic/ce/fold0-seed0", "synthetic/sd/fold0-seed0",
                                     "synthetic/ce/fold1-seed0"}
    by_run = results.groupby("run_name")
    assert by_run.setting_name.first().dropna().to_dict() == {"synthetic/ce/fold0-seed0": "low"}  # grid.json labels
    assert by_run.converged.first().to_dict() == {"synthetic/ce/fold0-seed0": True,  # from the train logs
                                                  "synthetic/sd/fold0-seed0": False, "synthetic/ce/fold1-seed0": False}
    assert not list(grid.glob(".*.tmp"))


def test_manifest_records_each_run(grid: Path) -> None:
    collect(grid)
    manifest = json.loads((grid / "manifest.json").read_text())
    runs = {run["name"]: run for run in manifest["runs"]}
    assert manifest["counts"] == {"complete": 3, "failed": 2, "incomplete": 1, "missing": 1}
    assert manifest["unconverged"] == ["synthetic/ce/fold1-seed0", "synthetic/sd/fold0-seed0"]
    assert sorted(manifest["failed"]) == ["synthetic/ce/fold3-seed0", "synthetic/sd/fold1-seed0"]
    first = runs["synthetic/ce/fold0-seed0"]
    assert first["run_seconds"] == pytest.approx(16 * 0.25 + 0.25)
    assert (first["code_version"], first["commit"], first["device_name"]) == ("9.9.9", "abc1234", "Test GPU")
    assert first["converged"] is True and runs["synthetic/ce/fold1-seed0"]["converged"] is False
    assert "before the last decay" in runs["synthetic/sd/fold0-seed0"]["convergence"]
    assert "lacks null_loss" in runs["synthetic/ce/fold1-seed0"]["convergence"]
    assert runs["synthetic/ce/fold1-seed0"]["run_seconds"] == pytest.approx(16 * 0.125 + 1.0)
    assert runs["synthetic/ce/fold1-seed0"]["device"] == "cpu"  # from summary.json when launch.json is absent
    hashes = {name: run["config_hash"] for name, run in runs.items()}
    assert len(set(hashes.values())) == len(hashes)  # every run has another config
    assert hashes["synthetic/ce/fold0-seed0"] == config_hash(dict(reversed(list(_config("ce", 0).items()))))


def test_collect_of_named_cells_only(grid: Path) -> None:
    cells = [Cell("synthetic/ce/fold1-seed0", _config("ce", 1), {"setting_name": "mid"}),
             Cell("synthetic/ce/fold9-seed0", _config("ce", 9))]
    collection = collect(grid, cells, write=False)
    assert [(r.name, r.status) for r in collection.runs] == [("synthetic/ce/fold1-seed0", "complete"),
                                                             ("synthetic/ce/fold9-seed0", "missing")]
    assert set(collection.results.setting_name) == {"mid"} and len(collection.results) == 1
    assert not (grid / "results.csv").exists()


def test_collect_command(grid: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["collect", str(grid)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{grid / 'results.csv'}: 5 cases from 3 of 7 runs"
    assert "missing: synthetic/ce/fold2-seed0 (started, not finished)" in out
    assert "missing: synthetic/sd/fold2-seed0 (not started)" in out
    assert "failed: synthetic/sd/fold1-seed0: ValueError: boom" in out
    assert any(line.startswith("unconverged: synthetic/sd/fold0-seed0 (not converged: ") for line in out)
    assert main(["collect", str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"volbias: error: {tmp_path / 'absent'}: no such runs directory"
