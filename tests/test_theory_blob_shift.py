"""Expected Dice under independent blob shifts (volbias.theory.blob_shift) against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from volbias.data import make_phantoms
from volbias.data.synthetic import draw_labels
from volbias.theory.blob_shift import (
    BlobShift,
    dice_optimal_threshold_mask,
    expected_dice_nested,
    expected_dice_of_masks,
)
from volbias.theory.boundary_shift import shift_expected_dice_topk


def _phantom(sigma: float, seed: int, n_blobs: int = 3):
    return make_phantoms(dims=2, size=54, radius=4.0, sigma=sigma, noise="shift", n_cases=1, n_raters=1,
                         n_blobs=n_blobs, seed=seed)[0]


def test_one_blob_equals_the_exact_nested_disks() -> None:
    model = BlobShift.from_geometry((40, 40), [(20.3, 19.6)], [6.0], 2.5)
    order, exact = shift_expected_dice_topk(model.distances[0], 6.0, 2.5)
    np.testing.assert_allclose(expected_dice_nested(model, order), exact, atol=1e-12)


def test_marginals_are_those_of_the_phantom() -> None:
    case = _phantom(3.6, seed=4)
    model = BlobShift.of_phantom(case.marginals.shape, case.meta)
    np.testing.assert_allclose(model.marginals(), case.marginals.ravel(), atol=1e-6)


@pytest.mark.parametrize("sigma, seed", [(3.6, 0), (0.4, 1)])
def test_three_blobs_match_a_fresh_monte_carlo_of_1e5_label_draws(sigma: float, seed: int) -> None:
    """Within four standard errors of the mean Dice of 10^5 draws from the phantom's own label model, at the
    optimum and away from it (sigma/R = 0.9: blobs overlap in many draws; 0.1: hardly ever)."""
    case = _phantom(sigma, seed)
    model = BlobShift.of_phantom(case.marginals.shape, case.meta)
    p = model.marginals()
    order = np.argsort(-p, kind="stable")
    values = expected_dice_nested(model, order)
    sizes = sorted({int(np.argmax(values)), int(0.6 * p.sum()), int(1.4 * p.sum())})
    masks = np.zeros((p.size, len(sizes)), dtype=np.float32)
    for column, k in enumerate(sizes):
        masks[order[:k], column] = 1.0
    rng = np.random.default_rng(1000 + seed)
    dice = []
    for _ in range(10):  # 10 x 10^4 draws
        labels = draw_labels(case, 10_000, rng).reshape(10_000, -1).astype(np.float32)
        dice.append(2.0 * (labels @ masks) / (np.array(sizes) + labels.sum(1, keepdims=True)))
    dice = np.concatenate(dice)
    error = dice.std(axis=0, ddof=1) / np.sqrt(len(dice))
    assert np.all(np.abs(values[sizes] - dice.mean(0)) < 4 * error), (values[sizes], dice.mean(0), error)


def test_masks_and_nested_masks_agree_and_nothing_random_enters() -> None:
    case = _phantom(3.6, seed=2)
    model = BlobShift.of_phantom(case.marginals.shape, case.meta)
    p = model.marginals()
    order = np.argsort(-p, kind="stable")
    nested = expected_dice_nested(model, order)
    sizes = [0, 50, int(p.sum()), 600]
    masks = np.zeros((len(sizes), p.size), dtype=bool)
    for row, k in enumerate(sizes):
        masks[row, order[:k]] = True
    np.testing.assert_allclose(expected_dice_of_masks(model, masks), nested[sizes], atol=1e-12)
    np.testing.assert_array_equal(expected_dice_nested(model, order), nested)  # the same, however often
    k, best = dice_optimal_threshold_mask(model)
    assert best == pytest.approx(nested.max()) and nested[k] == best


def test_an_empty_mask_scores_the_chance_that_the_reference_is_empty() -> None:
    """P(no voxel centre inside any blob) = prod_b P(R_b + delta_b <= min distance to blob b)."""
    model = BlobShift.from_geometry((20, 20), [(10.0, 10.0), (4.0, 4.0)], [1.0, 1.5], 1.0)
    empty = expected_dice_of_masks(model, np.zeros((1, model.size), dtype=bool))[0]
    expected = np.prod([stats.norm.cdf((d.min() - r) / 1.0) for d, r in zip(model.distances, model.radii)])
    assert empty == pytest.approx(expected, rel=1e-9)
    assert expected_dice_nested(model, np.arange(model.size))[0] == pytest.approx(expected, rel=1e-9)
