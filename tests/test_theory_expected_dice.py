"""Poisson-binomial pmf, expected Dice and the Dice-optimal mask against brute force and sampling."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from volbias.theory import dice_optimal_mask, expected_dice, expected_dice_topk, poisson_binomial_pmf

probabilities = arrays(np.float64, st.integers(1, 9), elements=st.floats(0.0, 1.0))


def recursion_pmf(p: np.ndarray) -> np.ndarray:
    """Exact Poisson-binomial pmf by the one-voxel-at-a-time recursion."""
    pmf = np.zeros(p.size + 1)
    pmf[0] = 1.0
    for q in p:
        pmf[1:] = pmf[1:] * (1 - q) + pmf[:-1] * q
        pmf[0] *= 1 - q
    return pmf


def brute_force_expected_dice(mask: np.ndarray, p: np.ndarray) -> float:
    """Sum over all 2^N label maps of P(y) Dice(mask, y), with Dice 1 when both are empty."""
    labels = np.array(list(itertools.product([False, True], repeat=p.size)))
    probability = np.prod(np.where(labels, p, 1 - p), axis=1)
    overlap = (labels & mask).sum(axis=1)
    total = mask.sum() + labels.sum(axis=1)
    dice = np.where(total > 0, 2 * overlap / np.maximum(total, 1), 1.0)
    return float(probability @ dice)


def full_pmf(p: np.ndarray) -> np.ndarray:
    offset, pmf = poisson_binomial_pmf(p)
    out = np.zeros(p.size + 1)
    out[offset : offset + pmf.size] = pmf[: p.size + 1 - offset]
    return out


@pytest.mark.parametrize("n", [1, 7, 40, 300, 5000])
def test_pmf_matches_the_exact_recursion(n: int) -> None:
    rng = np.random.default_rng(n)
    p = rng.random(n) ** rng.uniform(0.3, 3)
    p[: n // 10] = 1.0
    p[n // 10 : n // 5] = 0.0
    np.testing.assert_allclose(full_pmf(p), recursion_pmf(p), rtol=0, atol=1e-15)
    if n <= 300:
        np.testing.assert_allclose(full_pmf(p), stats.poisson_binom(p).pmf(np.arange(n + 1)), rtol=0, atol=1e-13)
    assert full_pmf(p).sum() == pytest.approx(1.0, abs=1e-13)


def test_pmf_of_a_large_sum_has_the_right_moments() -> None:
    p = np.random.default_rng(0).random(200_000)
    offset, pmf = poisson_binomial_pmf(p)
    support = offset + np.arange(pmf.size)
    mean = support @ pmf
    assert pmf.sum() == pytest.approx(1.0, abs=1e-11)
    assert mean == pytest.approx(p.sum(), rel=1e-12)
    assert ((support - mean) ** 2) @ pmf == pytest.approx(np.sum(p * (1 - p)), rel=1e-9)


@settings(max_examples=50, deadline=None)
@given(probabilities, st.integers(0, 2**32 - 1))
def test_expected_dice_matches_brute_force(p: np.ndarray, seed: int) -> None:
    mask = np.random.default_rng(seed).random(p.size) < 0.5
    assert expected_dice(mask, p) == pytest.approx(brute_force_expected_dice(mask, p), abs=1e-12)


def test_expected_dice_on_twelve_voxels_and_empty_mask() -> None:
    rng = np.random.default_rng(12)
    p = rng.random(12)
    for mask in (rng.random(12) < 0.4, np.zeros(12, bool), np.ones(12, bool)):
        assert expected_dice(mask, p) == pytest.approx(brute_force_expected_dice(mask, p), abs=1e-12)
    assert expected_dice(np.zeros(12, bool), p) == pytest.approx(np.prod(1 - p))


def test_expected_dice_matches_monte_carlo_on_a_large_map() -> None:
    rng = np.random.default_rng(5)
    p = rng.beta(0.3, 0.6, size=20_000)
    mask = p > 0.4
    labels = rng.random((400, p.size)) < p
    dice = 2 * (labels & mask).sum(1) / (mask.sum() + labels.sum(1))
    assert expected_dice(mask, p) == pytest.approx(dice.mean(), abs=5 * dice.std() / np.sqrt(len(dice)) + 1e-6)


def test_normal_method_is_close_for_many_voxels() -> None:
    rng = np.random.default_rng(6)
    p = rng.random(50_000)
    mask = p > 0.3
    assert expected_dice(mask, p, method="normal") == pytest.approx(expected_dice(mask, p), abs=1e-8)


def test_expected_dice_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="mask"):
        expected_dice(np.ones(3, bool), np.full(4, 0.5))
    with pytest.raises(ValueError, match="method"):
        expected_dice(np.ones(4, bool), np.full(4, 0.5), method="mc")


@settings(max_examples=40, deadline=None)
@given(probabilities)
def test_topk_curve_matches_brute_force(p: np.ndarray) -> None:
    order, values = expected_dice_topk(p)
    for k in range(p.size + 1):
        mask = np.zeros(p.size, bool)
        mask[order[:k]] = True
        assert values[k] == pytest.approx(brute_force_expected_dice(mask, p), abs=1e-12)


def test_topk_curve_matches_exact_method_on_a_large_map() -> None:
    p = np.random.default_rng(7).random(3000) ** 2
    order, values = expected_dice_topk(p)
    for k in (1, 50, 700, 1500, 2999):
        mask = np.zeros(p.size, bool)
        mask[order[:k]] = True
        assert values[k] == pytest.approx(expected_dice(mask, p), abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.integers(1, 8), elements=st.floats(0.0, 1.0)))
def test_dice_optimal_mask_beats_every_mask(p: np.ndarray) -> None:
    best = max(
        brute_force_expected_dice(np.array(bits), p) for bits in itertools.product([False, True], repeat=p.size)
    )
    mask = dice_optimal_mask(p)
    assert brute_force_expected_dice(mask, p) == pytest.approx(best, abs=1e-11)
    if mask.any() and (~mask).any():
        assert p[mask].min() >= p[~mask].max()
