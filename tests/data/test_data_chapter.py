"""The Data chapter runs at the smoke profile; its glued numbers agree with computations from the raw files."""

from __future__ import annotations

import json
import math
from itertools import combinations

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from volbias.data import make_phantoms

pytestmark = pytest.mark.slow


@pytest.fixture
def glued(book):
    """The Data chapter executed by the session's book (tests/book_runner.py)."""
    return book.step("data")


@pytest.fixture
def shared_data(data_mirror):
    """The mirror root holding the BraTS sample, the LIDC slices and the paper's splits."""
    return data_mirror.require("brats18-sample", "lidc-idri-slices", "paper-splits")


def test_paper_fold_sizes(glued, shared_data):
    for name in ("BR18", "IS17", "IS18"):
        folds = json.loads((shared_data / "paper-splits" / f"{name}.json").read_text())["folds"]
        assert glued.value(f"data_paper_cases_{name}") == sum(len(f) for f in folds)


def test_brats_volumes_from_raw_labels(glued, shared_data):
    """At an integer grid step s (12 mm at smoke) the resampled grid hits every s-th source voxel exactly."""
    step = int(glued.value("data_brats_grid_mm"))
    assert step == glued.value("data_brats_grid_mm")
    for k, (cid, volume) in enumerate(zip(glued.value("data_brats_ids"), glued.value("data_brats_volumes_ml"))):
        folder = shared_data / "brats18-sample" / f"case_{k}"
        assert cid == (folder / "subject_id.txt").read_text().split()[-1]
        label = np.asarray(nib.load(folder / "GT_W.nii.gz").dataobj) > 0.5
        assert volume == pytest.approx(label[::step, ::step, ::step].sum() * step**3 / 1000, abs=1e-2)


def raw_lidc_statistics(root):
    """Raters marking, pooled pairwise Dice and median area CV, straight from the PNG files."""
    marking, dices, cvs = [], [], []
    for nodule in sorted(root.glob("LIDC-IDRI-*/nodule-*")):
        masks = np.array([np.asarray(Image.open(next((nodule / f"mask-{r}").glob("*.png")))) > 0 for r in range(4)])
        areas = masks.sum((1, 2)).astype(float)
        marked = [m for m in masks if m.any()]
        marking.append(len(marked))
        dices += [2 * (a & b).sum() / (a.sum() + b.sum()) for a, b in combinations(marked, 2)]
        cvs.append(areas.std() / areas.mean())
    return np.bincount(marking, minlength=5)[1:].tolist(), float(np.mean(dices)), float(np.median(cvs))


def test_lidc_disagreement_from_raw_files(glued, shared_data):
    counts, pooled_dice, median_cv = raw_lidc_statistics(shared_data / "lidc-idri-slices")
    assert glued.value("data_lidc_marking_counts") == counts == [781, 508, 488, 853]  # MANIFEST.md
    assert glued.value("data_lidc_n_nodules") == sum(counts) == 2630
    assert glued.value("data_lidc_pooled_pairwise_dice") == pytest.approx(pooled_dice, abs=1e-4)
    assert glued.value("data_lidc_median_area_cv") == pytest.approx(median_cv, abs=1e-4)
    assert round(pooled_dice, 2) == 0.83 and round(median_cv, 2) == 0.73  # MANIFEST.md


def test_synthetic_volumes(glued):
    sigma, n = glued.value("data_synthetic_sigma"), glued.value("data_synthetic_n_draws")
    case = make_phantoms(sigma=sigma, n_cases=1, n_raters=1, seed=0)[0]
    yy, xx = np.mgrid[:64, :64]
    outside = np.ones((64, 64))
    for r, (cy, cx) in zip(case.meta["radii"], case.meta["centres"]):
        d = np.hypot(yy - cy, xx - cx)
        outside *= 1 - 0.5 * (1 + np.vectorize(math.erf)((r - d) / (sigma * math.sqrt(2))))
    expected = (1 - outside).sum()
    for noise in ("independent", "shift"):
        assert glued.value(f"data_synthetic_{noise}_expected_volume") == pytest.approx(expected, abs=1e-2)
        mean = glued.value(f"data_synthetic_{noise}_mean_draw_volume")
        std = glued.value(f"data_synthetic_{noise}_std_draw_volume")
        assert abs(mean - expected) < 5 * std / math.sqrt(n)
    shift, independent = (glued.value(f"data_synthetic_{noise}_std_draw_volume") for noise in ("shift", "independent"))
    assert shift > 5 * independent
