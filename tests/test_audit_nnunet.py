"""``volbias audit`` on prediction folders in nnU-Net v2's layouts: right numbers or a one-line refusal.

Every folder is written by :func:`test_audit_nnunet_writer.export_case` (nnU-Net's export, reproduced and
checked against nnunetv2 itself) from known probabilities on anisotropic, non-cubic grids.  The expected
numbers are computed here with numpy on the reference's stored voxel order, the map moved there by hand
(index flips and transposes written out), never with the audit's code.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy.special import expit
from test_audit_nnunet_writer import dataset_json, export_case, write_image, write_markers

from volbias.audit import run_audit
from volbias.cli import main

SHAPE = (21, 16, 9)
SPACING = (0.8, 0.9, 2.5)
LPS = np.array([[-0.8, 0, 0, 30.0], [0, -0.9, 0, 12.0], [0, 0, 2.5, -40.0], [0, 0, 0, 1]])
"""A scanner's LPS-stored grid: i runs to the right-to-left, j anterior to posterior (RAS+ affine)."""
PERMUTED = np.array([[0, 0, -2.5, 30.0], [-0.8, 0, 0, 12.0], [0, 0.9, 0, -40.0], [0, 0, 0, 1]])
"""An anti-diagonal direction: i runs posterior, j superior, k left (axis codes PSL)."""
BINARY = {"background": 0, "lesion": 1}


def _probabilities(rng: np.random.Generator, shape=SHAPE) -> np.ndarray:
    """A soft off-centre blob (no value within 1e-3 of 0.5, so float32 storage cannot move a voxel across it)."""
    grid = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, SPACING)], indexing="ij")
    centre = [rng.uniform(0.3, 0.45) * n * s for n, s in zip(shape, SPACING)]
    radius = rng.uniform(4.0, 6.0)
    distance = np.sqrt(sum((g - c) ** 2 for g, c in zip(grid, centre)))
    p = expit((radius - distance) / 1.2)
    return np.where(np.abs(p - 0.5) < 1e-3, 0.5 + 2e-3, p)


def _expected(p: np.ndarray, reference: np.ndarray, spacing=SPACING) -> dict[str, float]:
    """Dice, soft and thresholded volume (ml) of ``p`` against a 0/1 ``reference`` on the same voxels."""
    ml = float(np.prod(spacing)) / 1000
    hard = p > 0.5
    return {"dice": 2 * np.sum(hard & reference) / (hard.sum() + reference.sum()), "soft_volume_ml": p.sum() * ml,
            "hard_volume_ml": hard.sum() * ml, "ref_volume_ml": reference.sum() * ml}


def _check(cases_csv: Path, expected: dict[str, dict[str, float]]) -> pd.DataFrame:
    cases = pd.read_csv(cases_csv, dtype={"case_id": str}).set_index("case_id")
    assert sorted(cases.index) == sorted(expected)
    for case, numbers in expected.items():
        for column, value in numbers.items():
            assert cases.loc[case, column] == pytest.approx(value, rel=1e-5, abs=1e-9), (case, column)
    return cases


def _binary_folder(root: Path, io: str, affine: np.ndarray, n: int = 3, transpose=(0, 1, 2), bbox=None,
                   seed: int = 0, save_probabilities: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``n`` cases of a two-class model; images and references share ``affine``. Returns (p, reference) in the
    files' stored order."""
    rng = np.random.default_rng(seed)
    dataset = dataset_json(BINARY)
    write_markers(root / "pred", dataset, io, transpose)
    cases = {}
    for k in range(n):
        case = f"case_{k:03d}"
        p = _probabilities(rng)
        reference = rng.uniform(size=SHAPE) < p
        image = write_image(root / "images" / f"{case}_0000.nii.gz", rng.normal(size=SHAPE).astype(np.float32), affine)
        write_image(root / "ref" / f"{case}.nii.gz", reference.astype(np.uint8), affine)
        export_case(root / "pred", case, image, [1 - p, p], io, dataset, transpose, bbox, save_probabilities)
        cases[case] = (p, reference)
    return cases


def _audit(root: Path, capsys: pytest.CaptureFixture, *extra: str, pred: str = "pred") -> tuple[int, str]:
    code = main(["audit", "--pred", str(root / pred), "--ref", str(root / "ref"), "--out", str(root / "out"),
                 "--quiet", *extra])
    return code, capsys.readouterr().err


def _refusal(root: Path, capsys: pytest.CaptureFixture, *extra: str, pred: str = "pred") -> str:
    code, err = _audit(root, capsys, *extra, pred=pred)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("volbias: error: "), err
    assert not (root / "out").exists()
    return lines[0]


@pytest.mark.parametrize("io", ["SimpleITKIO", "NibabelIO", "SimpleITKIOWithReorient", "NibabelIOWithReorient"])
def test_lps_stored_cases_with_every_reader_writer(tmp_path: Path, io: str) -> None:
    """The reorienting reader-writers store the map in RAS order while the references stay LPS; the audit undoes
    it (and says so), and gives the numbers of the stored files, as with the default reader-writers."""
    cases = _binary_folder(tmp_path, io, LPS, transpose=(2, 0, 1))
    result = run_audit(tmp_path / "pred", tmp_path / "ref", tmp_path / "out", progress=False)
    _check(tmp_path / "out" / "cases.csv", {c: _expected(p, r) for c, (p, r) in cases.items()})
    reoriented = [note for note in result.notes if "reoriented onto the reference grid" in note]
    if io.endswith("WithReorient"):
        assert reoriented == ["3 cases (case_000, case_001, case_002): map stored in RAS axis order, reference in "
                              "LPS: map reoriented onto the reference grid"]
        assert reoriented[0] in (tmp_path / "out" / "report.md").read_text()
    else:
        assert reoriented == []


@pytest.mark.parametrize("io", ["SimpleITKIOWithReorient", "NibabelIOWithReorient"])
def test_permuted_anti_diagonal_direction(tmp_path: Path, io: str) -> None:
    """A reference whose axes are permuted relative to RAS: the stored map's axes are a permutation of the
    reference's, undone by the audit."""
    cases = _binary_folder(tmp_path, io, PERMUTED)
    run_audit(tmp_path / "pred", tmp_path / "ref", tmp_path / "out", progress=False)
    _check(tmp_path / "out" / "cases.csv", {c: _expected(p, r) for c, (p, r) in cases.items()})


def test_references_resaved_in_ras_order(tmp_path: Path) -> None:
    """Predictions of LPS-stored images, references re-saved by a tool in RAS order (same shape and spacing): the
    map is flipped onto the reference; expected numbers on the re-saved grid (i and j reversed by hand)."""
    cases = _binary_folder(tmp_path, "SimpleITKIO", LPS)
    for case in cases:
        ras = nib.as_closest_canonical(nib.load(tmp_path / "ref" / f"{case}.nii.gz"))
        nib.save(ras, tmp_path / "ref" / f"{case}.nii.gz")
    expected = {c: _expected(p[::-1, ::-1, :], r[::-1, ::-1, :]) for c, (p, r) in cases.items()}
    np.testing.assert_array_equal(np.asarray(nib.load(tmp_path / "ref" / "case_000.nii.gz").dataobj),
                                  cases["case_000"][1][::-1, ::-1, :])  # the re-saved file is what the test assumes
    result = run_audit(tmp_path / "pred", tmp_path / "ref", tmp_path / "out", progress=False)
    _check(tmp_path / "out" / "cases.csv", expected)
    assert any("map stored in LPS axis order, reference in RAS" in note for note in result.notes)


def test_nifti_maps_against_references_saved_with_permuted_axes(tmp_path: Path) -> None:
    """NIfTI probability maps (RAS) against references saved in PERMUTED order (same voxels, other layout)."""
    rng = np.random.default_rng(5)
    expected = {}
    ras = np.diag([*SPACING, 1.0])
    for k in range(2):
        p = _probabilities(rng)
        reference = rng.uniform(size=SHAPE) < p
        write_image(tmp_path / "pred" / f"c{k}.nii.gz", p.astype(np.float32), ras)
        # stored axis order (k, i, j) with i flipped: voxel (a, b, c) of the file is voxel (n_i - 1 - b, c, a)
        stored = reference.transpose(2, 0, 1)[:, ::-1, :]
        affine = np.zeros((4, 4))
        affine[0, 1], affine[1, 2], affine[2, 0], affine[3, 3] = -SPACING[0], SPACING[1], SPACING[2], 1.0
        affine[0, 3] = (SHAPE[0] - 1) * SPACING[0]
        write_image(tmp_path / "ref" / f"c{k}.nii.gz", stored.astype(np.uint8), affine)
        expected[f"c{k}"] = _expected(p.transpose(2, 0, 1)[:, ::-1, :], stored, (SPACING[2], SPACING[0], SPACING[1]))
    run_audit(tmp_path / "pred", tmp_path / "ref", tmp_path / "out", progress=False)
    _check(tmp_path / "out" / "cases.csv", expected)


def test_grid_that_is_no_permutation_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A reference whose origin lies 3 voxels away, or that is rotated by 10 degrees: refused, both files and
    orientations named."""
    _binary_folder(tmp_path, "SimpleITKIO", LPS, n=2)
    shifted = LPS.copy()
    shifted[2, 3] += 3 * SPACING[2]
    path = tmp_path / "ref" / "case_001.nii.gz"
    write_image(path, np.asarray(nib.load(path).dataobj), shifted)
    line = _refusal(tmp_path, capsys)
    assert f"{tmp_path / 'pred' / 'case_001.npz'}: voxel grid (LPS, origin (30.00, 12.00, -40.00) mm)" in line
    assert f"its reference {path} (LPS, origin (30.00, 12.00, -32.50) mm)" in line
    assert "resample the prediction onto the reference grid" in line
    angle = np.deg2rad(10)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0, 0], [np.sin(angle), np.cos(angle), 0, 0],
                         [0, 0, 1, 0], [0, 0, 0, 1]])
    write_image(path, np.asarray(nib.load(path).dataobj), rotation @ LPS)
    assert "does not lie on its reference" in _refusal(tmp_path, capsys)


def _multi_class_folder(root: Path, dataset: dict, io: str = "SimpleITKIO", n: int = 2, seed: int = 1,
                        save_probabilities: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Cases of a model with two nested structures: p_outer >= p_inner; label 2 inside label 1 in the reference.
    Returns (p_outer, p_inner, reference labels) per case, in stored order."""
    rng = np.random.default_rng(seed)
    write_markers(root / "pred", dataset, io)
    region_based = any(isinstance(v, list) for v in dataset["labels"].values())
    cases = {}
    for k in range(n):
        case = f"m{k}"
        outer = _probabilities(rng)
        inner = outer * np.clip(_probabilities(rng) * 1.6, 0, 1)
        inner = np.where(np.abs(inner - 0.5) < 1e-3, 0.5 - 2e-3, inner)
        draw = rng.uniform(size=SHAPE)
        labels = np.where(draw < inner, 2, np.where(draw < outer, 1, 0)).astype(np.uint8)
        image = write_image(root / "images" / f"{case}_0000.nii.gz", rng.normal(size=SHAPE).astype(np.float32), LPS)
        write_image(root / "ref" / f"{case}.nii.gz", labels, LPS)
        maps = [outer, inner] if region_based else [1 - outer, outer - inner, inner]
        export_case(root / "pred", case, image, maps, io, dataset, save_probabilities=save_probabilities)
        cases[case] = (outer, inner, labels)
    return cases


REGIONS = dataset_json({"background": 0, "whole": [1, 2], "core": 2}, regions_class_order=[1, 2])


def test_two_region_sigmoid_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """No implicit channel for a region-based model; --channel 0 audits the 'whole' region against labels {1, 2}
    (from dataset.json); a --label that is not the channel's is warned about."""
    cases = _multi_class_folder(tmp_path, REGIONS)
    line = _refusal(tmp_path, capsys)
    assert f"{tmp_path / 'pred' / 'dataset.json'}: a region-based model (sigmoid outputs" in line
    assert "0 (whole: labels 1, 2), 1 (core: label 2)); name the region to audit with --channel" in line
    assert "the regions of a region-based model overlap" in _refusal(tmp_path, capsys, "--channel", "0", "1")
    code, err = _audit(tmp_path, capsys, "--channel", "0")
    assert code == 0 and "warning" not in err
    _check(tmp_path / "out" / "cases.csv", {c: _expected(o, np.isin(r, [1, 2])) for c, (o, _, r) in cases.items()})
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["channels"] == "channel 0 (whole: labels 1, 2) of a region-based (sigmoid) model"
    code, err = _audit(tmp_path, capsys, "--channel", "1", "--label", "1", "2", "--overwrite")
    assert code == 0
    assert "warning: --label 1 2 does not match channel 1 (core: label 2)" in err
    _check(tmp_path / "out" / "cases.csv", {c: _expected(i, np.isin(r, [1, 2])) for c, (_, i, r) in cases.items()})


THREE_CLASSES = dataset_json({"background": 0, "liver": 1, "tumour": 2})


def test_three_class_union_and_argmax(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--channel 1 2 sums the two foreground classes; the argmax volume is that of nnU-Net's own segmentation
    file (labels 1 or 2 in <case>.nii.gz, read here with nibabel)."""
    cases = _multi_class_folder(tmp_path, THREE_CLASSES, io="NibabelIOWithReorient")
    line = _refusal(tmp_path, capsys)
    assert "3 channels (0 (background: label 0), 1 (liver: label 1), 2 (tumour: label 2)" in line
    assert "name the foreground channel(s) with --channel" in line
    assert "channel 0 is the background" in _refusal(tmp_path, capsys, "--channel", "0", "1")
    code, _ = _audit(tmp_path, capsys, "--channel", "1", "2")
    assert code == 0
    ml = float(np.prod(SPACING)) / 1000
    expected = {}
    for case, (outer, _, labels) in cases.items():
        segmentation = np.asarray(nib.load(tmp_path / "pred" / f"{case}.nii.gz").dataobj)
        argmax = np.isin(segmentation, [1, 2])
        reference = np.isin(labels, [1, 2])
        expected[case] = {**_expected(outer, reference), "argmax_volume_ml": argmax.sum() * ml,
                          "argmax_dice": 2 * np.sum(argmax & reference) / (argmax.sum() + reference.sum())}
    _check(tmp_path / "out" / "cases.csv", expected)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert "argmax" in summary["relative_bias"]
    report = (tmp_path / "out" / "report.md").read_text()
    assert "argmax (ml)" in report and "channels 1 (liver: label 1) + 2 (tumour: label 2)" in report


def test_folder_predicted_without_save_probabilities(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Only nnU-Net's segmentations (no .npz): refused in auto mode with the fix; offered as probability maps
    (--format nifti), refused as integer maps unless --allow-binary, and then the soft volume is the hard one."""
    _binary_folder(tmp_path, "SimpleITKIO", LPS, n=2, save_probabilities=False)
    line = _refusal(tmp_path, capsys)
    assert f"{tmp_path / 'pred'}: an nnU-Net prediction folder (dataset.json, plans.json, " in line
    assert "run nnUNetv2_predict again with --save_probabilities" in line
    line = _refusal(tmp_path, capsys, "--format", "nifti")
    assert f"{tmp_path / 'pred' / 'case_000.nii.gz'}: holds integers, a segmentation rather than probabilities" in line
    assert "--allow-binary" in line
    code, _ = _audit(tmp_path, capsys, "--format", "nifti", "--allow-binary")
    assert code == 0
    cases = pd.read_csv(tmp_path / "out" / "cases.csv")
    np.testing.assert_allclose(cases["soft_volume_ml"], cases["hard_volume_ml"])
    assert "The maps are binary (--allow-binary): their soft volume is their thresholded volume." in \
        (tmp_path / "out" / "report.md").read_text()


def test_missing_npz_is_named_as_such(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _binary_folder(tmp_path, "SimpleITKIO", LPS)
    for suffix in (".npz", ".pkl"):
        (tmp_path / "pred" / f"case_001{suffix}").unlink()
    code, err = _audit(tmp_path, capsys)
    assert code == 0
    assert ("1 nnU-Net segmentations without a probability map <case>.npz (predicted without "
            "--save_probabilities?; not audited): case_001") in err
    assert "references without a prediction" not in err
    shutil.rmtree(tmp_path / "out")
    assert "segmentations without <case>.npz: case_001 (--strict)" in _refusal(tmp_path, capsys, "--strict")


def test_softmax_channels_that_do_not_sum_to_one(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _binary_folder(tmp_path, "SimpleITKIO", LPS, n=2)
    path = tmp_path / "pred" / "case_001.npz"
    with np.load(path) as archive:
        probabilities = archive["probabilities"]
    np.savez_compressed(path, probabilities=probabilities * 0.6)
    line = _refusal(tmp_path, capsys)
    assert f"{path}: its 2 channels sum to 0.6..0.6 instead of 1 (softmax)" in line


def test_pickle_without_orientation_is_audited_with_a_note(tmp_path: Path) -> None:
    """A pickle holding only the spacing (as some converters write): shape and spacing are compared, and the
    report says that orientation was not checked."""
    cases = _binary_folder(tmp_path, "SimpleITKIO", np.diag([*SPACING, 1.0]), n=1)
    pkl = tmp_path / "pred" / "case_000.pkl"
    with pkl.open("rb") as handle:
        properties = pickle.load(handle)
    pkl.write_bytes(pickle.dumps({"spacing": properties["spacing"]}))
    result = run_audit(tmp_path / "pred", tmp_path / "ref", tmp_path / "out", progress=False)
    _check(tmp_path / "out" / "cases.csv", {c: _expected(p, r) for c, (p, r) in cases.items()})
    assert result.notes == ["1 case (case_000): orientation and origin not checked (the prediction file holds no "
                            "orientation): only shape and voxel size were compared"]


def test_label_that_is_not_the_default_channels(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A two-class model audits channel 1 (label 1); --label 1 agrees with it, --label 2 is warned about."""
    _binary_folder(tmp_path, "SimpleITKIO", LPS, n=1)
    code, err = _audit(tmp_path, capsys, "--label", "1")
    assert code == 0 and "warning" not in err
    code, err = _audit(tmp_path, capsys, "--label", "2", "--overwrite")
    assert code == 0
    assert "warning: --label 2 does not match channel 1 (lesion: label 1)" in err
