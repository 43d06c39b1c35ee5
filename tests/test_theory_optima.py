"""Expected volume, CE and plug-in soft Dice optima against brute force and sampling."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from volbias.theory import (
    cross_entropy_optimum,
    expected_volume,
    plugin_soft_dice,
    soft_dice_optimum,
    soft_dice_threshold,
)
from volbias.theory._checks import TIE_TOLERANCE, first_maximiser

probabilities = arrays(np.float64, st.integers(1, 12), elements=st.floats(0.0, 1.0))


def brute_force_soft_dice(p: np.ndarray) -> dict[tuple[bool, ...], float]:
    """Plug-in soft Dice of every one of the 2^N binary masks (1 when both sums are zero)."""
    total = p.sum()
    scores = {}
    for bits in itertools.product([False, True], repeat=p.size):
        s = np.array(bits, dtype=float)
        denominator = s.sum() + total
        scores[bits] = 1.0 if denominator == 0 else 2 * s @ p / denominator
    return scores


def tie_respecting_cuts(p: np.ndarray) -> list[tuple[bool, ...]]:
    """Every mask ``p >= v`` for a value ``v`` of ``p``, by growing size; only the empty mask if ``p`` is all zero."""
    if not p.any():
        return [tuple([False] * p.size)]
    return [tuple(p >= v) for v in sorted(set(p.tolist()), reverse=True)]


def test_expected_volume_matches_monte_carlo_and_spacing() -> None:
    rng = np.random.default_rng(0)
    p = rng.random((6, 7))
    labels = rng.random((20000, 6, 7)) < p
    sampled = labels.sum(axis=(1, 2)).mean()
    standard_error = labels.sum(axis=(1, 2)).std() / np.sqrt(len(labels))
    assert abs(expected_volume(p) - sampled) < 5 * standard_error
    assert expected_volume(p, spacing=(2.0, 0.5)) == pytest.approx(p.sum() * 1.0)
    assert expected_volume(p, spacing=2.0) == pytest.approx(p.sum() * 4.0)


def test_expected_volume_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="p:"):
        expected_volume(np.array([0.2, 1.5]))
    with pytest.raises(ValueError, match="spacing"):
        expected_volume(np.ones((2, 2)), spacing=(1.0, 2.0, 3.0))


def test_cross_entropy_optimum_minimises_expected_cross_entropy() -> None:
    p = np.array([0.03, 0.3, 0.5, 0.81])
    grid = np.linspace(1e-4, 1 - 1e-4, 9999)
    expected_ce = -(p[:, None] * np.log(grid) + (1 - p[:, None]) * np.log(1 - grid))
    numeric = grid[np.argmin(expected_ce, axis=1)]
    np.testing.assert_allclose(cross_entropy_optimum(p), numeric, atol=2e-4)


@settings(max_examples=60, deadline=None)
@given(probabilities)
def test_soft_dice_optimum_is_the_brute_force_maximiser(p: np.ndarray) -> None:
    scores = brute_force_soft_dice(p)
    best = max(scores.values())
    mask = soft_dice_optimum(p)
    assert mask.dtype == bool
    assert plugin_soft_dice(mask.astype(float), p) == pytest.approx(best, abs=1e-12)
    assert scores[tuple(mask)] == pytest.approx(best, abs=1e-12)
    assert soft_dice_threshold(p) == pytest.approx(best / 2, abs=1e-12)
    # the documented tie rule: among the cuts that keep tied voxels together, the smallest within
    # TIE_TOLERANCE of the best (scores from the brute force above, not from the code under test)
    cuts = tie_respecting_cuts(p)
    chosen = cuts[first_maximiser(np.array([scores[c] for c in cuts]))]
    assert mask.sum() == sum(chosen)


def test_soft_dice_optimum_takes_the_smaller_of_two_tied_masks() -> None:
    """2<s,p>/(sum s + sum p) is equal (to rounding) for {0} and {0, 1} when p = (1, sqrt 2 - 1)."""
    p = np.array([1.0, np.sqrt(2.0) - 1.0])
    assert abs(plugin_soft_dice(np.array([1.0, 0.0]), p) - plugin_soft_dice(np.ones(2), p)) < TIE_TOLERANCE
    np.testing.assert_array_equal(soft_dice_optimum(p), [True, False])
    assert soft_dice_threshold(p) == pytest.approx(plugin_soft_dice(np.array([1.0, 0.0]), p) / 2, abs=1e-15)


@settings(max_examples=60, deadline=None)
@given(probabilities)
def test_soft_dice_optimum_is_top_k_and_threshold_below_half(p: np.ndarray) -> None:
    mask = soft_dice_optimum(p)
    tau = soft_dice_threshold(p)
    assert tau <= 0.5
    if mask.any() and (~mask).any():
        assert p[mask].min() > p[~mask].max()  # top-k, ties kept together
    assert np.all(p[mask] >= tau - 1e-12) and np.all(p[~mask] <= tau + 1e-12)


@settings(max_examples=40, deadline=None)
@given(probabilities, st.integers(0, 2**32 - 1))
def test_no_soft_map_beats_the_binary_optimum(p: np.ndarray, seed: int) -> None:
    rng = np.random.default_rng(seed)
    best = plugin_soft_dice(soft_dice_optimum(p).astype(float), p)
    for s in rng.random((50, p.size)) ** rng.uniform(0.2, 5):
        assert plugin_soft_dice(s, p) <= best + 1e-12


def test_threshold_separates_continuous_marginals() -> None:
    rng = np.random.default_rng(3)
    p = rng.beta(0.5, 0.5, size=5000)
    np.testing.assert_array_equal(soft_dice_optimum(p), p > soft_dice_threshold(p))


def test_threshold_falls_as_uncertainty_grows() -> None:
    rng = np.random.default_rng(4)
    logits = rng.normal(0, 1, 2000) + 3 * (rng.random(2000) < 0.3) - 1.5
    taus = [soft_dice_threshold(1 / (1 + np.exp(-logits / temperature))) for temperature in (0.1, 0.5, 1, 2, 4)]
    assert all(a > b for a, b in zip(taus, taus[1:]))


@settings(max_examples=60, deadline=None)
@given(probabilities)
def test_cross_entropy_optimum_volume_is_the_expected_volume(p: np.ndarray) -> None:
    s = cross_entropy_optimum(p)
    assert expected_volume(s) == pytest.approx(float(np.sum(p)), abs=1e-12)
    assert np.array_equal(s, p) and s is not p
