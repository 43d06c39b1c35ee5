"""Tests of volbias.analysis.results_store (manifests, stored result sets) and claims (verdict table)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from volbias.analysis import claims, results_store


def make_cases(task: str, sd_scale: float, dice_gain: float, n: int = 20, seed: int = 0) -> pd.DataFrame:
    """CE: unbiased soft volume; SD: volume scaled by ``sd_scale`` and Dice raised by ``dice_gain``."""
    rng = np.random.default_rng(seed)
    expected = rng.uniform(50, 150, n)
    base_dice = rng.uniform(0.6, 0.85, n)
    rows = []
    for loss in ("ce", "sd"):
        scale, gain = (sd_scale, dice_gain) if loss == "sd" else (1.0, 0.0)
        vol = expected * scale * (1 + rng.normal(0, 0.01, n))
        for i in range(n):
            rows.append({"task": task, "loss": loss, "fold": i % 5, "seed": 0, "case_id": f"c{i}",
                         "dice": base_dice[i] + gain + rng.normal(0, 0.002), "true_volume": expected[i],
                         "expected_volume": expected[i], "pred_volume_soft": vol[i],
                         "pred_volume_hard": vol[i], "voxel_volume_ml": 1.0})
    return pd.DataFrame(rows)


def write_result_set(root: Path, cases: pd.DataFrame) -> Path:
    run = root / "run_sd"
    run.mkdir(parents=True)
    cases.to_csv(run / "cases.csv", index=False)
    (run / "config.yaml").write_text(yaml.safe_dump({"task": "BR18", "loss": "sd", "profile": "gpu"}))
    (run / "DONE").write_text("")
    return root


def test_manifest_round_trip_and_result_set(tmp_path: Path) -> None:
    result = write_result_set(tmp_path / "br18-gpu", make_cases("BR18", 1.0, 0.0))
    path = results_store.write_manifest(result, seed=7, profile="gpu", description="five folds")
    manifest = results_store.read_manifest(result)
    assert manifest["seed"] == 7 and manifest["profile"] == "gpu"
    assert set(results_store.MANIFEST_KEYS) <= set(manifest)
    assert manifest["versions"]["numpy"] == np.__version__
    assert manifest["hardware"]["cpu_count"] >= 1
    assert not list(tmp_path.rglob("*.tmp"))
    assert json.loads(path.read_text()) == manifest
    sets = results_store.read_result_sets(tmp_path)
    assert [s.name for s in sets] == ["br18-gpu"]
    assert len(sets[0].cases) == 40 and set(sets[0].cases["source"]) == {"br18-gpu"}
    assert results_store.read_result_sets(tmp_path / "absent") == []


def test_result_set_columns_come_from_the_book_layout(tmp_path: Path) -> None:
    root = tmp_path / "set"
    write_result_set(root / "lidc" / "cpu" / "LIDC, SD per batch" / "LIDC" / "sd", make_cases("LIDC", 1.0, 0.0))
    write_result_set(root / "brain_tumour_x2" / "cpu" / "BR18-sample" / "BR18-sample" / "ce",
                     make_cases("BR18-sample", 1.0, 0.0))
    write_result_set(root / "loose", make_cases("BR18", 1.0, 0.0))
    results_store.write_manifest(root, seed=0, profile="cpu")
    cases = results_store.read_result_set(root).cases
    by_experiment = cases.groupby("experiment").agg(setting=("setting_name", "first"), budget=("budget", "first"))
    assert by_experiment.loc["lidc"].tolist() == ["LIDC, SD per batch", 1.0]
    assert by_experiment.loc["brain_tumour_x2"].tolist() == ["BR18-sample", 2.0]
    assert cases.loc[cases.experiment == "loose", "setting_name"].isna().all()


def test_manifest_errors_name_the_file(tmp_path: Path) -> None:
    result = write_result_set(tmp_path / "r", make_cases("BR18", 1.0, 0.0))
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        results_store.read_result_set(result)
    (result / "manifest.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"manifest\.json: not valid JSON"):
        results_store.read_manifest(result)
    (result / "manifest.json").write_text(json.dumps({"commit": "abc", "seed": 0}))
    with pytest.raises(ValueError, match=r"lacks \['versions', 'hardware'\]"):
        results_store.read_manifest(result)
    empty = tmp_path / "empty"
    results_store.write_manifest(empty, seed=0, profile="gpu")
    with pytest.raises(ValueError, match="no finished runs"):
        results_store.read_result_set(empty)


def test_claims_table_on_the_paper_tasks() -> None:
    cases = pd.concat([
        make_cases("IS17", sd_scale=1.4, dice_gain=0.04, seed=1),   # high uncertainty, biased: agrees
        make_cases("IS18", sd_scale=1.01, dice_gain=0.0, seed=2),   # high uncertainty, negligible bias: no
        make_cases("BR18", sd_scale=1.01, dice_gain=-0.03, seed=3), # low uncertainty, unbiased: agrees
        make_cases("MO17", sd_scale=0.8, dice_gain=0.03, seed=4),   # low uncertainty, biased: disagrees
    ], ignore_index=True).assign(converged=True, convergence="converged: flat training loss")
    table = claims.claims_table(cases, claims.PAPER_UNCERTAINTY | {"absent": "high"})
    verdict = {(r.claim, r.group): r.verdict for _, r in table.iterrows()}
    assert verdict == {
        ("1", "BR18"): "no", ("1", "IS17"): "yes", ("1", "IS18"): "no", ("1", "MO17"): "yes",
        ("2", "IS17"): "yes", ("2 vs CE", "IS17"): "yes", ("2", "IS18"): "no", ("2 vs CE", "IS18"): "no",
        ("3", "BR18"): "yes", ("3 vs CE", "BR18"): "no", ("3", "MO17"): "no", ("3 vs CE", "MO17"): "yes",
    }
    first = table[table.claim == "1"].set_index("group")["our result"]
    assert first["BR18"].endswith("(CE higher)") and first["IS18"].endswith("(no relevant difference)")
    text = table[(table.claim == "2") & (table.group == "IS17")]["our result"].iloc[0]
    sd = cases[(cases.task == "IS17") & (cases.loss == "sd")]
    by_hand = (sd.pred_volume_hard - sd.expected_volume).sum() / sd.expected_volume.sum()
    assert text.startswith(f"SD +{100 * by_hand:.1f} % [")
    assert (table.networks == "5 / 5").all()
    assert (table.n == 20).all()


def test_live_and_stored_runs_pair_by_the_device_they_ran_on(tmp_path: Path) -> None:
    """A live run asked for ``device: auto`` that ran on the CPU is the twin of a stored run asked for ``cpu``;
    one that ran on a GPU is not; a changed number shows as a difference."""
    cases = make_cases("BR18", 1.0, 0.0, n=4)
    cases = cases[cases.loss == "sd"].assign(run_dir="")

    def run(name: str, asked: str, used: str, shift: float = 0.0) -> pd.DataFrame:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.yaml").write_text(yaml.safe_dump({"task": "BR18", "loss": "sd", "device": asked}))
        (folder / "summary.json").write_text(json.dumps({"device": used}))
        return cases.assign(run_dir=str(folder), dice=cases.dice + shift)

    stored = run("stored", "cpu", "cpu")
    same = results_store.live_vs_stored(run("live", "auto", "cpu"), stored)
    assert len(same) == 1 and bool(same.identical.iloc[0]) and same.largest_difference.iloc[0] == 0
    moved = results_store.live_vs_stored(run("moved", "auto", "cpu", shift=1e-3), stored)
    assert not moved.identical.iloc[0] and moved.largest_difference.iloc[0] == pytest.approx(1e-3)
    assert moved.column.iloc[0] == "dice"
    assert results_store.live_vs_stored(run("gpu", "auto", "cuda"), stored).empty
