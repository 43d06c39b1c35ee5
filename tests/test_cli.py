"""The ``volbias`` command: run from a YAML config, sweep with skipping, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from volbias.cli import main

SMOKE = {"task": "synthetic", "task_options": {"dims": 2}, "loss": "sd", "fold": 2, "seed": 0,
         "profile": "smoke", "device": "cpu"}


def _write(tmp_path: Path, values: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_run_writes_cases_and_second_call_skips(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _write(tmp_path, SMOKE)
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert "trained" in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "run" / "cases.csv")
    assert len(table) > 0 and (table.loss == "sd").all() and (table.fold == 2).all()
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert "already complete" in capsys.readouterr().out


@pytest.mark.parametrize("change,message", [
    ({"colour": "red"}, "unknown key(s) colour"),
    ({"loss": "hinge"}, "loss='hinge' unknown"),
    ({"task": "MNIST"}, "task='MNIST' unknown"),
    ({"profile": "tpu"}, "profile='tpu' unknown"),
    ({"fold": -1}, "fold must be a non-negative integer"),
    ({"training": {"epochs": 2, "optimizer": "sgd"}}, "training: unknown setting(s) optimizer"),
    ({"task_options": {"dims": 2, "colour": 1}}, "colour"),
])
def test_bad_config_gives_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict,
                                         message: str) -> None:
    config = _write(tmp_path, {**SMOKE, **change})
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("volbias: error:") and "\n" not in err and message in err


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "nope.yaml: config file not found" in err and "\n" not in err


def test_sweep_runs_every_combination_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["sweep", "--tasks", "synthetic", "--losses", "ce", "ce-sd", "--folds", "0", "3", "--seeds", "1",
            "--profile", "smoke", "--device", "cpu", "--task-options", "{dims: 2}", "--training", "{epochs: 2}",
            "--out", str(tmp_path / "sweep"), "--quiet"]
    assert main(args) == 0
    assert "4 runs (4 trained, 0 already complete)" in capsys.readouterr().out
    for loss in ["ce", "ce-sd"]:
        for fold in [0, 3]:
            run_dir = tmp_path / "sweep" / "synthetic" / loss / f"fold{fold}-seed1"
            assert (run_dir / "DONE").is_file()
            assert (pd.read_csv(run_dir / "cases.csv").fold == fold).all()
    assert main(args) == 0
    assert "4 runs (0 trained, 4 already complete)" in capsys.readouterr().out


def test_example_configs_are_valid(repo_root: Path) -> None:
    from volbias.training import RunConfig

    paths = sorted((repo_root / "configs").glob("*.yaml"))
    assert len(paths) >= 2
    for path in paths:
        RunConfig.from_yaml(path)
