"""Writing held-out maps as NIfTI files, the command line's output, and the temperature fit's voxel draw."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml
from test_audit_files import write_nifti

from volbias.audit.estimators import TEMPERATURE_VOXELS_PER_CASE, temperature_voxels
from volbias.audit.export import export_held_out
from volbias.cli import main
from volbias.data.case import Case


def _run_dir(root: Path, maps: dict[str, np.ndarray], fold: int, test_maps: dict[str, np.ndarray] | None = None
             ) -> Path:
    """A finished run directory as the training writes it: cases.csv (validation rows, then test rows),
    config.yaml, probabilities.npz (float16)."""
    root.mkdir(parents=True)
    splits = [(case_id, "validation") for case_id in maps] + [(case_id, "test") for case_id in test_maps or {}]
    pd.DataFrame([{"task": "toy", "loss": "ce", "fold": fold, "seed": 0, "case_id": case_id, "split": split,
                   "dice": 0.0, "true_volume": 0.0, "expected_volume": 0.0, "pred_volume_soft": 0.0,
                   "pred_volume_hard": 0.0, "voxel_volume_ml": 0.001, "volume_unit": "ml", "profile": "smoke",
                   "converged": False, "convergence": "too few epochs"}
                  for case_id, split in splits]).to_csv(root / "cases.csv", index=False)
    (root / "config.yaml").write_text(yaml.safe_dump({"task": "toy", "loss": "ce", "profile": "smoke"}))
    np.savez_compressed(root / "probabilities.npz",
                        **{k: v.astype(np.float16) for k, v in {**maps, **(test_maps or {})}.items()})
    return root


def test_export_writes_masked_maps_and_labels_with_spacing(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    shape = (5, 4, 3)
    cases, maps = {}, {}
    for k, case_id in enumerate(["a", "b", "c"]):
        mask = np.ones(shape, bool)
        mask[0] = False
        label = (rng.uniform(size=shape) < 0.3).astype(np.float32)
        cases[case_id] = Case(case_id, np.zeros((1, *shape), np.float32), label, mask, (1.0 + k, 2.0, 0.5))
        maps[case_id] = rng.uniform(size=shape)
    runs = [_run_dir(tmp_path / "run0", {"a": maps["a"], "b": maps["b"]}, 0),
            _run_dir(tmp_path / "run1", {"c": maps["c"]}, 1)]
    written = export_held_out(runs, cases, tmp_path / "pred", tmp_path / "ref")
    assert written == ["a", "b", "c"]
    for case_id, case in cases.items():
        pred = nib.load(tmp_path / "pred" / f"{case_id}.nii.gz")
        ref = nib.load(tmp_path / "ref" / f"{case_id}.nii.gz")
        expected = np.where(case.mask, maps[case_id].astype(np.float16).astype(np.float32), 0.0)
        np.testing.assert_array_equal(np.asarray(pred.dataobj), expected)
        np.testing.assert_array_equal(np.asarray(ref.dataobj), case.label.astype(np.uint8))
        assert pred.header.get_zooms() == pytest.approx(case.spacing)
        assert ref.header.get_data_dtype() == np.uint8


def test_export_leaves_out_the_test_cases_every_fold_predicts(tmp_path: Path) -> None:
    shape = (3, 3, 2)
    cases = {case_id: Case(case_id, np.zeros((1, *shape), np.float32), np.zeros(shape, np.float32),
                           np.ones(shape, bool), (1.0,) * 3) for case_id in ("a", "b", "t")}
    maps = {case_id: np.full(shape, 0.25) for case_id in cases}
    runs = [_run_dir(tmp_path / "run0", {"a": maps["a"]}, 0, test_maps={"t": maps["t"]}),
            _run_dir(tmp_path / "run1", {"b": maps["b"]}, 1, test_maps={"t": maps["t"]})]
    assert export_held_out(runs, cases, tmp_path / "pred", tmp_path / "ref") == ["a", "b"]
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["a.nii.gz", "b.nii.gz"]
    assert sorted(p.name for p in (tmp_path / "ref").iterdir()) == ["a.nii.gz", "b.nii.gz"]


def test_export_refuses_a_case_held_out_twice(tmp_path: Path) -> None:
    shape = (2, 2, 2)
    case = Case("a", np.zeros((1, *shape), np.float32), np.zeros(shape, np.float32), np.ones(shape, bool), (1.0,) * 3)
    runs = [_run_dir(tmp_path / f"run{k}", {"a": np.zeros(shape)}, k) for k in range(2)]
    with pytest.raises(ValueError, match="case 'a' is held out by an earlier run too"):
        export_held_out(runs, {"a": case}, tmp_path / "pred", tmp_path / "ref")


def test_temperature_voxels_draw_uniformly_from_large_regions() -> None:
    region = np.zeros((60, 60, 30), bool)
    region[:, :, 5:25] = True  # 72 000 voxels
    first = temperature_voxels(region, seed=0, index=3)
    assert first.sum() == TEMPERATURE_VOXELS_PER_CASE and not (first & ~region).any()
    np.testing.assert_array_equal(first, temperature_voxels(region, seed=0, index=3))
    assert (first != temperature_voxels(region, seed=0, index=4)).any()
    share_low_x = first[:30].sum() / first.sum()  # half of the region lies at x < 30
    assert share_low_x == pytest.approx(0.5, abs=0.02)
    small = np.zeros((10, 10, 10), bool)
    small[2:8] = True
    assert temperature_voxels(small, seed=0, index=0) is small


def test_command_line_prints_the_verdict(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rng = np.random.default_rng(1)
    for k in range(20):
        prob = np.zeros((10, 9, 8), np.float32)
        prob[3:7, 3:7, 2:6] = rng.uniform(0.6, 1.0, size=(4, 4, 4))
        write_nifti(tmp_path / "pred" / f"c{k}.nii.gz", prob)
        write_nifti(tmp_path / "ref" / f"c{k}.nii.gz", (prob > 0.8).astype(np.uint8))
    write_nifti(tmp_path / "ref" / "extra.nii.gz", np.zeros((10, 9, 8), np.uint8))
    code = main(["audit", "--pred", str(tmp_path / "pred"), "--ref", str(tmp_path / "ref"),
                 "--out", str(tmp_path / "report"), "--quiet"])
    captured = capsys.readouterr()
    assert code == 0
    assert captured.err == "volbias audit: 1 references without a prediction (not audited): extra\n"
    lines = captured.out.splitlines()
    assert lines[0] == f"{tmp_path / 'report'}: audit of 20 cases written (report.md)"
    # every thresholded map keeps its whole cube (p > 0.6) while the reference keeps the voxels above 0.8
    assert lines[1].startswith("  The thresholded (p > 0.5) volumes over-estimate the reference by")
