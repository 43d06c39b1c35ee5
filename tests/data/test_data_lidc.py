"""LIDC on the real mirror: rater masks against the raw PNGs, soft labels, selection options, grouped folds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from volbias.data import load_task, rater_disagreement, raters_agree, sample_rater


@pytest.fixture(scope="module")
def shared_data(data_mirror) -> Path:
    """The mirror root; this module reads its lidc-idri-slices folder only (checked on its own)."""
    return data_mirror.require("lidc-idri-slices")


@pytest.fixture(scope="module")
def lidc_subset(shared_data, lidc_cache):
    mp = pytest.MonkeyPatch()
    mp.setenv("VOLBIAS_DATA_MIRROR", str(shared_data))
    try:
        yield load_task("LIDC", max_cases=60, seed=1, cache_dir=lidc_cache)
    finally:
        mp.undo()


def raw_masks(shared_data, case):
    folder = shared_data / "lidc-idri-slices" / case.meta["patient"] / case.meta["nodule"]
    files = [next((folder / f"mask-{r}").glob("*.png")) for r in range(4)]
    return np.array([np.asarray(Image.open(f)) > 0 for f in files])


def test_raters_soft_label_and_label_match_raw_files(lidc_subset, shared_data):
    assert len(lidc_subset) == 60
    for case in lidc_subset.cases[:15]:
        masks = raw_masks(shared_data, case)
        np.testing.assert_array_equal(case.raters, masks.astype(np.float32))
        np.testing.assert_allclose(case.marginals, masks.mean(0))
        np.testing.assert_array_equal(case.label, (masks.sum(0) >= 3).astype(np.float32))  # strict majority
        assert case.expected_volume == pytest.approx(masks.sum() / 4)
        assert case.meta["n_marking"] == int(masks.any(axis=(1, 2)).sum())
        assert case.image.shape == (1, 128, 128) and case.mask.all() and not case.spacing_known


def test_disagreement_against_brute_force(lidc_subset, shared_data):
    for case in lidc_subset.cases[:15]:
        masks = raw_masks(shared_data, case)
        areas = masks.sum((1, 2)).astype(float)
        stats = rater_disagreement(case)
        assert stats["area_cv"] == pytest.approx(areas.std() / areas.mean())
        marked = [m for m in masks if m.any()]
        dices = [2 * (a & b).sum() / (a.sum() + b.sum()) for i, a in enumerate(marked) for b in marked[i + 1:]]
        if dices:
            assert stats["mean_pairwise_dice"] == pytest.approx(np.mean(dices))
        else:
            assert np.isnan(stats["mean_pairwise_dice"])


def test_patient_grouped_deterministic_folds(lidc_subset, shared_data, lidc_cache, monkeypatch):
    fold_of_patient: dict[str, int] = {}
    for k, fold in enumerate(lidc_subset.folds):
        for cid in fold:
            patient = lidc_subset[cid].meta["patient"]
            assert fold_of_patient.setdefault(patient, k) == k
    assert sorted(c for f in lidc_subset.folds for c in f) == sorted(c.id for c in lidc_subset)
    monkeypatch.setenv("VOLBIAS_DATA_MIRROR", str(shared_data))
    again = load_task("LIDC", max_cases=60, seed=1, cache_dir=lidc_cache)
    assert again.folds == lidc_subset.folds and [c.id for c in again] == [c.id for c in lidc_subset]
    other = load_task("LIDC", max_cases=60, seed=2, cache_dir=lidc_cache)
    assert [c.id for c in other] != [c.id for c in lidc_subset]


def test_min_raters_filter(shared_data, lidc_cache, monkeypatch):
    monkeypatch.setenv("VOLBIAS_DATA_MIRROR", str(shared_data))
    task = load_task("LIDC", min_raters=4, max_cases=40, cache_dir=lidc_cache)
    assert all(c.meta["n_marking"] == 4 and c.raters.reshape(4, -1).any(1).all() for c in task)


def test_one_rater_per_epoch_has_the_soft_label_as_mean(lidc_subset):
    case = max(lidc_subset.cases, key=lambda c: rater_disagreement(c)["area_cv"])
    rng = np.random.default_rng(0)
    draws = np.mean([sample_rater(case, rng) for _ in range(2000)], axis=0)
    assert np.abs(draws - case.marginals).max() < 0.06


def test_central_crop_matches_the_raw_files(shared_data, lidc_cache, monkeypatch):
    from volbias.data import DataError

    monkeypatch.setenv("VOLBIAS_DATA_MIRROR", str(shared_data))
    task = load_task("LIDC", max_cases=10, seed=1, crop_size=54, cache_dir=lidc_cache)
    for case in task.cases:
        masks = raw_masks(shared_data, case)[:, 37:91, 37:91]  # the central 54 of 128 pixels
        image = np.asarray(Image.open(next((shared_data / "lidc-idri-slices" / case.meta["patient"]
                                            / case.meta["nodule"] / "images").glob("*.png"))))
        assert case.image.shape == (1, 54, 54) and case.mask.shape == (54, 54)
        np.testing.assert_allclose(case.image[0], image[37:91, 37:91] / 255.0, atol=1e-6)
        np.testing.assert_allclose(case.marginals, masks.mean(0))
        np.testing.assert_array_equal(case.raters, masks.astype(np.float32))
    with pytest.raises(DataError, match="crop_size=200"):
        load_task("LIDC", max_cases=10, crop_size=200, cache_dir=lidc_cache)


def test_raters_agree_needs_four_raters_and_a_small_area_spread() -> None:
    table = pd.DataFrame({"n_marking": [4, 4, 3, 4], "area_cv": [0.05, 0.35, 0.01, 0.2]})
    assert raters_agree(table).tolist() == [True, False, False, False]  # CV 0.2 is not below 0.2
    assert raters_agree(table, cv=0.5).tolist() == [True, True, False, True]
