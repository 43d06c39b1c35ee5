"""Every bad input gives one DataError line that names the offending file (or task/option)."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest
from data_layouts import blob_label, channel_values, write_nifti, write_png

from volbias.data import DataError, load_task


def raises_naming(fragment: str, *args, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        load_task(*args, **kwargs)
    message = str(info.value)
    assert fragment in message, message
    assert "\n" not in message
    return message


def brats_file(root, modality, cid="Brats18_CBICA_AAB_1", grade="HGG"):
    return root / grade / cid / f"{cid}_{modality}.nii.gz"


def test_data_error_is_a_value_error():
    assert issubclass(DataError, ValueError)


def test_missing_modality_brats(brats_root):
    brats_file(brats_root, "t2").unlink()
    raises_naming("Brats18_CBICA_AAB_1_t2.nii.gz", "BR18", root=brats_root)


def test_missing_modality_isles17(isles17_root):
    shutil.rmtree(next((isles17_root / "training_2").glob("*.MR_TTP.*")))
    msg = raises_naming("training_2", "IS17", root=isles17_root)
    assert "MR_TTP" in msg


def test_missing_modality_isles18(isles18_root):
    shutil.rmtree(next(isles18_root.glob("TRAINING/case_16/*.CT_CBV.*")))
    assert "CT_CBV" in raises_naming("case_16", "IS18", root=isles18_root)


def test_missing_file_brats_sample(sample_root):
    (sample_root / "case_1" / "T1.nii.gz").unlink()
    raises_naming("case_1/T1.nii.gz", "BR18-sample", root=sample_root)


def test_truncated_file(brats_root):
    path = brats_file(brats_root, "t1")
    data = np.random.default_rng(0).normal(size=(40, 40, 40)).astype(np.float32)
    write_nifti(path, data)  # large enough that cutting it leaves the header intact
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    raises_naming(str(path), "BR18", root=brats_root, crop="none")


def test_non_nifti_file(brats_root):
    path = brats_file(brats_root, "flair")
    path.write_bytes(gzip.compress(b"this is not an image"))
    raises_naming(str(path), "BR18", root=brats_root)


def test_shape_mismatch(brats_root):
    path = brats_file(brats_root, "t1ce", "Brats18_CBICA_ASA_1", "LGG")
    write_nifti(path, np.ones((12, 10, 9), np.float32))
    assert "shape" in raises_naming(str(path), "BR18", root=brats_root)


def test_affine_mismatch(isles17_root):
    path = next((isles17_root / "training_13").glob("*.MR_Tmax.*/*.nii"))
    write_nifti(path, channel_values(1), np.diag([1.5, 1.5, 4.0, 1.0]))
    assert "affine" in raises_naming(str(path), "IS17", root=isles17_root)


def test_label_values_outside_the_set(brats_root):
    path = brats_file(brats_root, "seg")
    seg = blob_label().astype(np.int16)
    seg[0, 0, 0] = 3  # BraTS labels are {0, 1, 2, 4}
    write_nifti(path, seg)
    assert "label values" in raises_naming(str(path), "BR18", root=brats_root)


def test_label_values_outside_binary_set(isles18_root):
    path = next(isles18_root.glob("TRAINING/case_11/*.OT.*/*.nii"))
    write_nifti(path, (blob_label() * 2).astype(np.uint8))
    raises_naming(str(path), "IS18", root=isles18_root)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_intensities(sample_root, bad):
    path = sample_root / "case_2" / "FLAIR.nii.gz"
    data = channel_values(0)
    data[3, 3, 3] = bad
    write_nifti(path, data)
    assert "NaN or infinite" in raises_naming(str(path), "BR18-sample", root=sample_root)


@pytest.mark.parametrize("task", ["BR18", "IS17", "IS18", "BR18-sample", "LIDC"])
def test_empty_data_directory(tmp_path, task):
    empty = tmp_path / "empty"
    empty.mkdir()
    raises_naming(str(empty), task, root=empty)


def test_missing_data_directory(tmp_path):
    raises_naming(str(tmp_path / "nowhere"), "BR18", root=tmp_path / "nowhere")


def test_unknown_task_private_task_and_unknown_option(brats_root):
    assert "known tasks" in raises_naming("'BR19'", "BR19")
    assert "private" in raises_naming("MO17", "MO17")
    raises_naming("'spacingg'", "BR18", root=brats_root, spacingg=2.0)
    raises_naming("crop='middle'", "BR18", root=brats_root, crop="middle")
    raises_naming("noise='pink'", "synthetic", noise="pink")
    raises_naming("min_raters=5", "LIDC", root=brats_root, min_raters=5)


def test_case_outside_the_paper_folds(brats_root):
    (brats_root / "HGG" / "Brats18_CBICA_AAB_1").rename(brats_root / "HGG" / "Brats18_XXXX_001_1")
    for p in (brats_root / "HGG" / "Brats18_XXXX_001_1").iterdir():
        p.rename(p.with_name(p.name.replace("Brats18_CBICA_AAB_1", "Brats18_XXXX_001_1")))
    assert "paper's BR18 folds" in raises_naming("Brats18_XXXX_001_1", "BR18", root=brats_root, crop="none")


def test_lidc_bad_mask_values(lidc_root):
    path = lidc_root / "LIDC-IDRI-0002/nodule-0/mask-1/slice-9.png"
    write_png(path, np.full((128, 128), 7))
    assert "mask values" in raises_naming(str(path), "LIDC", root=lidc_root)


def test_lidc_not_a_png(lidc_root):
    path = lidc_root / "LIDC-IDRI-0002/nodule-0/images/slice-9.png"
    path.write_bytes(b"not a png")
    raises_naming(str(path), "LIDC", root=lidc_root)


def test_lidc_missing_rater_mask(lidc_root):
    path = lidc_root / "LIDC-IDRI-0001/nodule-1/mask-3/slice-2.png"
    path.unlink()
    raises_naming(str(path), "LIDC", root=lidc_root)
