"""Bad audit input: one line on stderr naming the file and the problem, exit status 2, ``--out`` untouched."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from test_audit_files import write_nifti, write_nnunet

from volbias.audit import report
from volbias.cli import main

SHAPE = (8, 7, 6)


def _good_case(root: Path, name: str, spacing=(1.0, 1.0, 2.0)) -> tuple[Path, Path]:
    prob = np.zeros(SHAPE, np.float32)
    prob[2:5, 2:5, 2:4] = np.linspace(0.1, 0.9, 18, dtype=np.float32).reshape(3, 3, 2)
    ref = (prob > 0.4).astype(np.uint8)
    return (write_nifti(root / "pred" / f"{name}.nii.gz", prob, spacing),
            write_nifti(root / "ref" / f"{name}.nii.gz", ref, spacing))


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """Three good NIfTI cases under ``tmp_path/pred`` and ``tmp_path/ref``."""
    for name in ("a", "b", "c"):
        _good_case(tmp_path, name)
    return tmp_path


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _audit(root: Path, capsys: pytest.CaptureFixture, *extra: str, out: Path | None = None) -> tuple[int, str]:
    out = out or root / "out"
    code = main(["audit", "--pred", str(root / "pred"), "--ref", str(root / "ref"), "--out", str(out), "--quiet",
                 *extra])
    return code, capsys.readouterr().err


def _refused(root: Path, capsys: pytest.CaptureFixture, *extra: str) -> str:
    """Run the audit twice, into a missing ``--out`` and over an existing one (``--overwrite``); both must
    fail with one line, leave ``--out`` as it was and leave no temporary folder behind. Returns the line."""
    before = set(root.iterdir())
    code, err = _audit(root, capsys, *extra)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("volbias: error: "), err
    assert not (root / "out").exists()
    assert set(root.iterdir()) == before
    existing = root / "existing"
    existing.mkdir(exist_ok=True)
    (existing / "keep.txt").write_text("earlier report")
    snapshot = _listing(existing)
    code, err_again = _audit(root, capsys, *extra, "--overwrite", out=existing)
    assert code == 2 and err_again == err.replace(str(root / "out"), str(existing))
    assert _listing(existing) == snapshot
    assert set(root.iterdir()) == before | {existing}
    return lines[0]


def test_good_input_writes_the_report(inputs: Path, capsys: pytest.CaptureFixture) -> None:
    code, err = _audit(inputs, capsys)
    assert code == 0 and err == ""
    assert {"report.md", "cases.csv", "summary.json", "estimators.csv"} <= set(_listing(inputs / "out"))


@pytest.mark.parametrize("bad, problem", [
    (1.5, r"probabilities outside \[0, 1\] \(min 0, max 1\.5\)"),
    (-0.25, r"probabilities outside \[0, 1\] \(min -0\.25, max 0\.9\)"),
    (np.nan, "probability map contains NaN"),
])
def test_probabilities_outside_0_1_or_nan(inputs: Path, capsys: pytest.CaptureFixture, bad: float,
                                         problem: str) -> None:
    prob = np.zeros(SHAPE, np.float32)
    prob[3, 3, 3], prob[1, 1, 1] = 0.9, bad
    path = write_nifti(inputs / "pred" / "b.nii.gz", prob, (1.0, 1.0, 2.0))
    line = _refused(inputs, capsys)
    assert str(path) in line
    assert re.search(problem, line), line


def test_shape_differs_from_reference(inputs: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_nifti(inputs / "pred" / "c.nii.gz", np.zeros((8, 7, 5), np.float32), (1.0, 1.0, 2.0))
    line = _refused(inputs, capsys)
    assert f"{path}: shape (8, 7, 5) differs from its reference {inputs / 'ref' / 'c.nii.gz'} (8, 7, 6)" in line


def test_spacing_differs_from_reference(inputs: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_nifti(inputs / "pred" / "a.nii.gz", np.zeros(SHAPE, np.float32), (1.0, 1.0, 2.5))
    line = _refused(inputs, capsys)
    assert f"{path}: voxel spacing (1, 1, 2.5) mm differs from its reference" in line


def test_rater_grid_differs_from_first_reference(inputs: Path, capsys: pytest.CaptureFixture) -> None:
    for name in ("a", "b"):
        write_nifti(inputs / "rater2" / f"{name}.nii.gz", np.zeros(SHAPE, np.uint8), (1.0, 1.0, 2.0))
    path = write_nifti(inputs / "rater2" / "c.nii.gz", np.zeros(SHAPE, np.uint8), (1.0, 1.5, 2.0))
    line = _refused(inputs, capsys, "--raters", str(inputs / "rater2"))
    assert f"{path}: voxel spacing (1, 1.5, 2) mm differs from its reference" in line


def test_case_without_reference_is_listed_and_skipped(inputs: Path, capsys: pytest.CaptureFixture) -> None:
    write_nifti(inputs / "pred" / "zz.nii.gz", np.zeros(SHAPE, np.float32))
    code, err = _audit(inputs, capsys)
    assert code == 0
    assert "skipped 1 predictions without a reference: zz" in err
    out = inputs / "out"
    assert "zz" not in (out / "cases.csv").read_text()
    assert "- Skipped (prediction without a reference): zz." in (out / "report.md").read_text()
    assert '"without_reference": [\n      "zz"\n    ]' in (out / "summary.json").read_text()


def test_case_without_reference_is_refused_with_strict(inputs: Path, capsys: pytest.CaptureFixture) -> None:
    write_nifti(inputs / "pred" / "zz.nii.gz", np.zeros(SHAPE, np.float32))
    line = _refused(inputs, capsys, "--strict")
    assert line == f"volbias: error: {inputs / 'pred'}: predictions without a reference: zz (--strict)"


def test_unreadable_nifti(inputs: Path, capsys: pytest.CaptureFixture) -> None:
    path = inputs / "ref" / "b.nii.gz"
    path.write_bytes(b"this is not a NIfTI file")
    line = _refused(inputs, capsys)
    assert f"{path}: not a readable NIfTI file" in line


def test_truncated_nifti(inputs: Path, capsys: pytest.CaptureFixture) -> None:
    path = inputs / "pred" / "a.nii.gz"
    path.write_bytes(path.read_bytes()[:-40])
    line = _refused(inputs, capsys)
    assert str(path) in line and ("truncated or damaged" in line or "not a readable NIfTI" in line)


def _nnunet_inputs(root: Path) -> None:
    for name in ("a", "b", "c"):
        prob = np.zeros(SHAPE)
        prob[2:4, 2:5, 1:3] = 0.7
        write_nnunet(root / "pred", name, prob, spacing=(1.0, 1.0, 2.0))
        write_nifti(root / "ref" / f"{name}.nii.gz", (prob > 0.5).astype(np.uint8), (1.0, 1.0, 2.0))


def test_unreadable_npz(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _nnunet_inputs(tmp_path)
    path = tmp_path / "pred" / "b.npz"
    path.write_bytes(b"PK\x03\x04 broken")
    line = _refused(tmp_path, capsys)
    assert f"{path}: not a readable npz archive" in line


def test_missing_and_unreadable_pickle(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _nnunet_inputs(tmp_path)
    path = tmp_path / "pred" / "c.pkl"
    path.write_bytes(b"\x80\x05garbage")
    assert f"{path}: not a readable nnU-Net properties pickle" in _refused(tmp_path, capsys)
    path.unlink()
    assert f"{path}: missing; nnU-Net writes <case>.pkl" in _refused(tmp_path, capsys)


def test_nnunet_grid_that_is_not_the_references(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """An nnU-Net map written in nibabel order by mistake has its axes reversed: refused by shape."""
    _nnunet_inputs(tmp_path)
    path = write_nnunet(tmp_path / "pred", "a", np.zeros(SHAPE).transpose(2, 1, 0), spacing=(1.0, 1.0, 2.0))
    line = _refused(tmp_path, capsys)
    assert f"{path}: shape (6, 7, 8) differs from its reference" in line


@pytest.mark.parametrize("folder, what", [("pred", "NIfTI probability maps"), ("ref", "NIfTI label maps")])
def test_empty_folder(inputs: Path, capsys: pytest.CaptureFixture, folder: str, what: str) -> None:
    for path in (inputs / folder).iterdir():
        path.unlink()
    line = _refused(inputs, capsys)
    assert f"{inputs / folder}: empty folder, no {what}" in line


def test_missing_folder(inputs: Path, capsys: pytest.CaptureFixture) -> None:
    for path in (inputs / "ref").iterdir():
        path.unlink()
    (inputs / "ref").rmdir()
    assert f"{inputs / 'ref'}: no such folder (--ref)" in _refused(inputs, capsys)


def test_no_case_matches(inputs: Path, capsys: pytest.CaptureFixture) -> None:
    for path in (inputs / "ref").iterdir():
        path.rename(path.with_name("other_" + path.name))
    line = _refused(inputs, capsys)
    assert f"{inputs / 'pred'}: no prediction has a reference in {inputs / 'ref'}" in line


def test_multi_class_reference_needs_label(inputs: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_nifti(inputs / "ref" / "a.nii.gz", (np.full(SHAPE, 2) * (np.arange(6) % 2)).astype(np.uint8),
                       (1.0, 1.0, 2.0))
    line = _refused(inputs, capsys)
    assert f"{path}: reference holds the labels {{0, 2}}; name the foreground label(s) with --label" in line


def test_probability_map_given_as_reference(inputs: Path, capsys: pytest.CaptureFixture) -> None:
    path = write_nifti(inputs / "ref" / "c.nii.gz", np.full(SHAPE, 0.3, np.float32), (1.0, 1.0, 2.0))
    assert f"{path}: reference holds non-integer values" in _refused(inputs, capsys)


def test_bad_threshold(inputs: Path, capsys: pytest.CaptureFixture) -> None:
    assert "--threshold 1: must lie strictly between 0 and 1" in _refused(inputs, capsys, "--threshold", "1")


def test_out_not_empty_needs_overwrite(inputs: Path, capsys: pytest.CaptureFixture) -> None:
    out = inputs / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    code, err = _audit(inputs, capsys)
    assert code == 2 and f"{out}: folder is not empty; pass --overwrite to replace it" in err
    assert _listing(out) == {"keep.txt": b"x"}
    code, err = _audit(inputs, capsys, "--overwrite")
    assert code == 0 and "keep.txt" not in _listing(out) and "report.md" in _listing(out)
    assert sorted(p.name for p in inputs.iterdir()) == ["out", "pred", "ref"]


def test_failure_while_writing_leaves_out_untouched(inputs: Path, capsys: pytest.CaptureFixture,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    out = inputs / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")

    def broken(result, folder: Path) -> None:
        (folder / "cases.csv").write_text("half")
        raise OSError("disk full")

    monkeypatch.setattr(report, "write_report", broken)
    with pytest.raises(OSError, match="disk full"):
        main(["audit", "--pred", str(inputs / "pred"), "--ref", str(inputs / "ref"), "--out", str(out), "--quiet",
              "--overwrite"])
    assert _listing(out) == {"keep.txt": b"x"}
    assert sorted(p.name for p in inputs.iterdir()) == ["out", "pred", "ref"]
