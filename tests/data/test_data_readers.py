"""Readers of the official layouts (BraTS 2018, ISLES 2017/2018, BraTS sample, LIDC) through load_task."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from data_layouts import BRATS_CASES, IS18_CASES, SAMPLE_IDS, blob_label
from PIL import Image

from volbias.data import load_task

# The paper's constants (paper-facts.md), written out here so a wrong table in the code fails the tests.
BR18_SHIFT = [420.884688, 568.786868, 639.488208, 629.919353]
BR18_SCALE = [1320.645043, 1160.682202, 1181.144426, 1363.611767]
IS17_SHIFT = [918.576582, 6.306370, 5.103256, 28.844982, 18.976388, 1.822575]
IS17_SCALE = [655.056252, 10.267162, 4.138227, 16.030511, 28.871382, 3.579261]
IS18_SHIFT = [145.408906, 2.875339, 5.538642, 179.032961, 25.937894]
IS18_SCALE = [186.974013, 4.634349, 5.201967, 293.878453, 42.502020]


@pytest.fixture(scope="module")
def shared_data(data_mirror) -> Path:
    """The mirror root; this module reads its paper-splits folder only (checked on its own)."""
    return data_mirror.require("paper-splits")


def expected_channels(shift, scale):
    """Channel k holds 100 (k + 1) in the fixtures, so after x' = (x - shift) / scale it is constant."""
    return np.array([(100.0 * (k + 1) - s) / c for k, (s, c) in enumerate(zip(shift, scale))])


def interior_values(image, mask):
    return image[:, mask]


def test_brats18_official_layout(brats_root):
    task = load_task("BR18", root=brats_root, spacing=1.0, crop="none")
    assert sorted(c.id for c in task) == sorted(BRATS_CASES.values())
    case = task["Brats18_CBICA_AAB_1"]
    assert case.image.shape == (4, 12, 10, 8) and case.image.dtype == np.float32
    assert case.spacing == (1.0, 1.0, 1.0) and case.meta["grade"] == "HGG"
    # seg labels {0, 1, 2, 4} -> whole tumour = seg > 0, unchanged at the native 1 mm grid
    np.testing.assert_array_equal(case.label, blob_label())
    np.testing.assert_allclose(case.image[:, 2:-2, 2:-2, 2:-2].mean((1, 2, 3)),
                               expected_channels(BR18_SHIFT, BR18_SCALE), rtol=1e-5)
    assert case.mask.all()  # FLAIR > 0 everywhere in the fixture
    # both fixture cases lie in the paper's fold 0
    assert set(task.folds[0]) == set(BRATS_CASES.values()) and all(not f for f in task.folds[1:])


def test_isles17_layout_and_channel_order(isles17_root):
    task = load_task("IS17", root=isles17_root, crop="none")
    assert [c.id for c in task] == ["training_2", "training_13"]
    case = task["training_13"]
    assert case.image.shape[0] == 6 and case.spacing == (2.0, 2.0, 2.0)
    # anisotropic 1.5 x 1.5 x 5 mm voxels: the 2 mm grid spans the same extent between voxel centres
    native_extent = (np.array([12, 10, 8]) - 1) * np.array([1.5, 1.5, 5.0])
    assert np.all(np.abs((np.array(case.image.shape[1:]) - 1) * 2.0 - native_extent) <= 2.0)
    inner = case.image[:, 1:-2, 1:-2, 2:-3]
    np.testing.assert_allclose(inner.mean((1, 2, 3)), expected_channels(IS17_SHIFT, IS17_SCALE), rtol=1e-4)
    assert case.meta["native_spacing"] == (1.5, 1.5, 5.0)
    with open(_splits("IS17")) as fh:
        folds = json.load(fh)["folds"]
    assert task.folds[0] == sorted(["training_13", "training_2"]) and "training_2" in folds[0]


def _splits(name):
    return Path(__file__).resolve().parents[2] / "src" / "volbias" / "registry" / f"{name}.json"


def test_isles18_layout_mask_and_channel_order(isles18_root):
    task = load_task("IS18", root=isles18_root, spacing=1.0, crop="none")
    assert sorted(c.id for c in task) == sorted(IS18_CASES)
    case = task["case_11"]
    assert case.image.shape == (5, 12, 10, 8)
    np.testing.assert_allclose(case.image[:, 5:-2, 2:-2, 2:-2].mean((1, 2, 3)),
                               expected_channels(IS18_SHIFT, IS18_SCALE), rtol=1e-5)
    # mask rule CT > -23: the first three x-slices hold CT = -100
    assert not case.mask[:3].any() and case.mask[4:].all()
    np.testing.assert_allclose(case.image[0, 0, 5, 4], (-100.0 - IS18_SHIFT[0]) / IS18_SCALE[0], rtol=1e-5)


def test_paper_folds_match_the_shared_splits(shared_data):
    from volbias.data.registry import paper_folds

    for name, sizes in {"BR18": [57] * 5, "IS17": [9, 9, 9, 8, 8], "IS18": [19, 19, 19, 19, 18]}.items():
        shared = json.loads((shared_data / "paper-splits" / f"{name}.json").read_text())["folds"]
        assert paper_folds(name) == shared
        assert [len(f) for f in paper_folds(name)] == sizes


def test_sample_layout_ids_and_derived_folds(sample_root):
    task = load_task("BR18-sample", root=sample_root, spacing=2.0, crop="none")
    assert [c.id for c in task] == list(SAMPLE_IDS)
    shape = task[SAMPLE_IDS[0]].image.shape
    assert shape[0] == 2 and np.all(np.abs((np.array(shape[1:]) - 1) * 2.0 - (np.array([12, 10, 8]) - 1)) <= 2.0)
    ids = [cid for fold in task.folds for cid in fold]
    assert len(task.folds) == 5 and sorted(ids) == sorted(SAMPLE_IDS)
    for k in range(5):
        train, val = task.split(k)
        assert {c.id for c in val} == set(task.folds[k]) and not {c.id for c in train} & set(task.folds[k])


MANIFEST_VOLUMES_ML = [68.1, 168.2, 37.4, 83.4, 138.1, 212.0, 87.3, 97.2, 26.5, 90.7]
PAPER_FOLD_OF_SAMPLE = [3, 4, 2, 2, 2, 0, 3, 0, 0, 4]  # paper-facts.md


def test_real_brats_sample_from_the_mirror(mirror):
    task = load_task("BR18-sample", max_cases=3, spacing=4.0)
    assert task.spec.spacing_mm == 4.0 and "4 mm" in task.spec.grid
    for k, case in enumerate(task):
        subject = (mirror / "brats18-sample" / f"case_{k}" / "subject_id.txt").read_text().split()[-1]
        assert case.id == subject
        assert case.image.shape == (2, 68, 68, 41) and case.spacing == (4.0, 4.0, 4.0)
        assert case.meta["grid_mm"] == 4.0 and case.meta["verified"]
        assert case.meta["paper_fold"] == PAPER_FOLD_OF_SAMPLE[k]
        # whole-tumour volume survives resampling to 4 mm within a few percent
        assert case.expected_volume == pytest.approx(MANIFEST_VOLUMES_ML[k], rel=0.05)
        assert case.mask.sum() * 64 / 1000 > 1000  # a brain (> 1 l) inside FLAIR > 0


def test_lidc_layout_picks_largest_slice(lidc_root):
    task = load_task("LIDC", root=lidc_root)
    assert [c.id for c in task] == ["LIDC-IDRI-0001_nodule-0", "LIDC-IDRI-0001_nodule-1", "LIDC-IDRI-0002_nodule-0"]
    first = task["LIDC-IDRI-0001_nodule-0"]
    assert first.meta["slice"] == "slice-5" and first.meta["n_marking"] == 3
    raw = [np.asarray(Image.open(lidc_root / "LIDC-IDRI-0001/nodule-0" / f"mask-{r}/slice-5.png")) > 0
           for r in range(4)]
    np.testing.assert_array_equal(first.raters, np.array(raw, dtype=np.float32))
    np.testing.assert_allclose(first.marginals, np.mean(raw, axis=0))
    img = np.asarray(Image.open(lidc_root / "LIDC-IDRI-0001/nodule-0/images/slice-5.png"))
    np.testing.assert_allclose(first.image[0], img / 255.0, rtol=1e-6)
    assert first.spacing == (1.0, 1.0) and not first.spacing_known and first.voxel_volume_ml == 1.0
    assert first.expected_volume == pytest.approx(np.sum(raw) / 4)
    # patient-grouped folds: both nodules of patient 0001 share a fold
    fold_of = {cid: k for k, f in enumerate(task.folds) for cid in f}
    assert fold_of["LIDC-IDRI-0001_nodule-0"] == fold_of["LIDC-IDRI-0001_nodule-1"]
