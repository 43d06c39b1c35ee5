"""Poisson-binomial pmf, expected Dice and the Dice-optimal mask against brute force, sampling and the reference."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from reference_expected_dice import reference_dice_optimal_mask, reference_expected_dice, reference_expected_dice_topk
from scipy import stats

from volbias.theory import _dice_search, dice_optimal_mask, expected_dice, expected_dice_topk, poisson_binomial_pmf

AGREEMENT = 1e-10
# Subnormal probabilities (below 2.2e-308) are left out: the quadrature's lower node divides by the
# largest mask mass, which is 0 when every probability is subnormal (a known limitation, see
# test_subnormal_probabilities_are_a_known_limitation).
probabilities = arrays(np.float64, st.integers(1, 12), elements=st.floats(0.0, 1.0, allow_subnormal=False))


def recursion_pmf(p: np.ndarray) -> np.ndarray:
    """Exact Poisson-binomial pmf by the one-voxel-at-a-time recursion."""
    pmf = np.zeros(p.size + 1)
    pmf[0] = 1.0
    for q in p:
        pmf[1:] = pmf[1:] * (1 - q) + pmf[:-1] * q
        pmf[0] *= 1 - q
    return pmf


@functools.cache
def label_maps(n: int) -> np.ndarray:
    """All 2^n label maps as rows of booleans."""
    maps = np.array(list(itertools.product([False, True], repeat=n)), dtype=bool).reshape(-1, n)
    maps.flags.writeable = False
    return maps


def brute_force_expected_dice(masks: np.ndarray, p: np.ndarray) -> np.ndarray:
    """E[Dice] of each row of ``masks``: a sum over all 2^N label maps, with Dice 1 when both are empty."""
    labels = label_maps(p.size)
    probability = np.prod(np.where(labels, p, 1 - p), axis=1)
    masks = np.atleast_2d(masks).astype(float)
    scores = []
    for chunk in np.array_split(masks, max(1, len(masks) // 256)):
        overlap = chunk @ labels.T.astype(float)
        total = chunk.sum(axis=1)[:, None] + labels.sum(axis=1)[None, :]
        dice = np.where(total > 0, 2 * overlap / np.maximum(total, 1), 1.0)
        scores.append(dice @ probability)
    return np.concatenate(scores)


def top_k_masks(order: np.ndarray) -> np.ndarray:
    """Row k is the mask of the first k voxels of ``order``."""
    masks = np.zeros((order.size + 1, order.size), dtype=bool)
    for k in range(1, order.size + 1):
        masks[k, order[:k]] = True
    return masks


def full_pmf(p: np.ndarray) -> np.ndarray:
    offset, pmf = poisson_binomial_pmf(p)
    out = np.zeros(p.size + 1)
    out[offset : offset + pmf.size] = pmf[: p.size + 1 - offset]
    return out


def probability_map(kind: str, n: int, seed: int) -> np.ndarray:
    """Maps of the kinds the functions meet: smooth, sparse (97 % below 1e-4), tied, quantised, degenerate."""
    rng = np.random.default_rng(seed)
    if kind == "dense":
        return rng.beta(0.3, 3.0, n)
    if kind == "sparse":
        p = rng.random(n) * 1e-4
        lesion = max(1, int(0.03 * n))
        p[:lesion] = rng.beta(0.5, 0.5, lesion)
        return rng.permutation(p)
    if kind == "tied":
        return rng.choice([0.0, 0.2, 0.5, 0.5, 0.9, 1.0], n)
    if kind == "quantised":
        return np.round(rng.beta(0.3, 3.0, n), 2)
    if kind == "zeros":
        return np.zeros(n)
    if kind == "ones":
        return np.ones(n)
    if kind == "tiny":
        return rng.random(n) * 1e-7
    if kind == "signed_zeros":  # -0.0 is a valid probability with the sign bit set
        return rng.choice([-0.0, 0.0, 0.3, 0.7], n)
    raise ValueError(kind)


KINDS = ["dense", "sparse", "tied", "quantised", "zeros", "ones", "tiny", "signed_zeros"]


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


@settings(max_examples=40, deadline=None)
@given(probabilities, st.integers(0, 2**32 - 1))
def test_expected_dice_matches_brute_force(p: np.ndarray, seed: int) -> None:
    mask = np.random.default_rng(seed).random(p.size) < 0.5
    assert expected_dice(mask, p) == pytest.approx(brute_force_expected_dice(mask, p)[0], abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(probabilities)
def test_topk_curve_matches_brute_force(p: np.ndarray) -> None:
    order, values = expected_dice_topk(p)
    np.testing.assert_array_equal(order, np.argsort(-p, kind="stable"))
    np.testing.assert_allclose(values, brute_force_expected_dice(top_k_masks(order), p), rtol=0, atol=1e-12)


@pytest.mark.xfail(raises=ZeroDivisionError, strict=True,
                   reason="the quadrature's lower node divides by a mask mass that underflows to 0")
def test_subnormal_probabilities_are_a_known_limitation() -> None:
    expected_dice_topk(np.array([5e-324]))


@pytest.mark.parametrize("seed", range(2))
def test_dice_optimal_mask_beats_every_mask_on_eleven_voxels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = rng.beta(0.5, 0.5, 11)
    p[:2] = [p[2], 1.0]  # a tie and a certain voxel
    every_mask = label_maps(11)
    best = brute_force_expected_dice(every_mask, p).max()
    mask = dice_optimal_mask(p)
    assert brute_force_expected_dice(mask, p)[0] == pytest.approx(best, abs=1e-12)
    assert expected_dice(mask, p) == pytest.approx(best, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float64, st.integers(1, 8), elements=st.floats(0.0, 1.0)))
def test_dice_optimal_mask_beats_every_mask(p: np.ndarray) -> None:
    scores = brute_force_expected_dice(label_maps(p.size), p)
    mask = dice_optimal_mask(p)
    assert brute_force_expected_dice(mask, p)[0] == pytest.approx(scores.max(), abs=1e-11)
    if mask.any() and (~mask).any():
        assert p[mask].min() >= p[~mask].max()


def test_expected_dice_matches_monte_carlo_on_a_large_map() -> None:
    rng = np.random.default_rng(5)
    p = rng.beta(0.3, 0.6, size=20_000)
    mask = p > 0.4
    labels = rng.random((400, p.size)) < p
    dice = 2 * (labels & mask).sum(1) / (mask.sum() + labels.sum(1))
    assert expected_dice(mask, p) == pytest.approx(dice.mean(), abs=5 * dice.std() / np.sqrt(len(dice)) + 1e-6)


def test_expected_dice_is_exact_for_identical_voxels() -> None:
    """All voxels at 1/2: X and Z are binomial, so E[Dice] is a double sum over two binomial pmf's."""
    n, k = 4000, 1500
    p = np.full(n, 0.5)
    x, z = np.arange(k + 1), np.arange(n - k + 1)
    px, pz = stats.binom(k, 0.5).pmf(x), stats.binom(n - k, 0.5).pmf(z)
    exact = px @ (2 * x[:, None] / (k + x[:, None] + z[None, :])) @ pz
    mask = np.arange(n) < k
    assert expected_dice(mask, p) == pytest.approx(exact, abs=1e-13)
    assert expected_dice_topk(p)[1][k] == pytest.approx(exact, abs=1e-13)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [1, 2, 3000])
def test_fast_implementation_matches_the_reference(kind: str, n: int) -> None:
    p = probability_map(kind, n, seed=n)
    rng = np.random.default_rng(n + 1)
    for mask in (rng.random(n) < 0.3, p > 0.3, np.ones(n, bool), np.zeros(n, bool)):
        assert expected_dice(mask, p) == pytest.approx(reference_expected_dice(mask, p), abs=AGREEMENT)
    order, values = expected_dice_topk(p)
    reference_order, reference_values = reference_expected_dice_topk(p)
    np.testing.assert_array_equal(order, reference_order)
    np.testing.assert_allclose(values, reference_values, rtol=0, atol=AGREEMENT)
    np.testing.assert_array_equal(dice_optimal_mask(p), reference_dice_optimal_mask(p))


@pytest.mark.parametrize("kind", ["dense", "sparse", "tied", "quantised", "signed_zeros"])
def test_grouped_search_finds_the_reference_optimum(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a small candidate limit the search regroups several times before it sorts."""
    monkeypatch.setattr(_dice_search, "CANDIDATES", 16)
    p = probability_map(kind, 4000, seed=11).reshape(40, 100)
    np.testing.assert_array_equal(dice_optimal_mask(p), reference_dice_optimal_mask(p))


def test_empty_map() -> None:
    p = np.zeros((0, 3))
    assert expected_dice(np.zeros((0, 3), bool), p) == 1.0
    order, values = expected_dice_topk(p)
    assert order.size == 0 and values.tolist() == [1.0]
    assert dice_optimal_mask(p).shape == (0, 3)


def test_search_bounds_enclose_the_expected_dice() -> None:
    rng = np.random.default_rng(8)
    for p in (rng.beta(0.3, 3.0, 400), rng.random(50), np.round(rng.random(300), 1)):
        _, values = reference_expected_dice_topk(p)
        ordered = np.sort(p)[::-1]
        k = np.arange(1, p.size + 1, dtype=float)
        spread = np.cumsum(ordered * (1 - ordered))
        lower, upper = _dice_search._bounds(k, np.cumsum(ordered), spread, spread, p.sum(), np.sum(p * (1 - p)))
        assert np.all(lower <= values[1:] + 1e-12) and np.all(values[1:] <= upper + 1e-12)


def test_normal_method_is_close_for_many_voxels() -> None:
    rng = np.random.default_rng(6)
    p = rng.random(50_000)
    mask = p > 0.3
    assert expected_dice(mask, p, method="normal") == pytest.approx(reference_expected_dice(mask, p), abs=1e-8)


def test_torch_tensors_give_the_same_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU tensor takes the device code path; no tensor may pass through numpy implicitly (CUDA could not)."""
    rng = np.random.default_rng(9)
    p = probability_map("quantised", 3000, seed=9).reshape(30, 100)
    mask = rng.random(p.shape) < 0.4

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("a tensor was converted to numpy implicitly")

    monkeypatch.setattr(torch.Tensor, "__array__", refuse)
    tensor = torch.from_numpy(p)
    reference = reference_expected_dice(mask, p)
    assert expected_dice(torch.from_numpy(mask), tensor) == pytest.approx(reference, abs=AGREEMENT)
    normal = expected_dice(mask, p, method="normal")
    assert expected_dice(mask, tensor, method="normal") == pytest.approx(normal, abs=1e-14)
    order, values = expected_dice_topk(tensor)
    reference_order, reference_values = reference_expected_dice_topk(p)
    assert isinstance(order, torch.Tensor) and isinstance(values, torch.Tensor)
    np.testing.assert_array_equal(order.numpy(), reference_order)
    np.testing.assert_allclose(values.numpy(), reference_values, rtol=0, atol=AGREEMENT)
    optimal = dice_optimal_mask(tensor)
    assert optimal.dtype == torch.bool and optimal.shape == tensor.shape
    np.testing.assert_array_equal(optimal.numpy(), reference_dice_optimal_mask(p))


@pytest.mark.parametrize("as_tensor", [False, True])
def test_expected_dice_rejects_bad_input(as_tensor: bool) -> None:
    wrap = torch.as_tensor if as_tensor else np.asarray
    with pytest.raises(ValueError, match="mask: shape"):
        expected_dice(wrap(np.ones(3, bool)), wrap(np.full(4, 0.5)))
    with pytest.raises(ValueError, match="mask: a hard mask"):
        expected_dice(wrap(np.full(4, 0.5)), wrap(np.full(4, 0.5)))
    with pytest.raises(ValueError, match="method"):
        expected_dice(wrap(np.ones(4, bool)), wrap(np.full(4, 0.5)), method="mc")
    for bad in (np.array([0.2, np.nan]), np.array([0.2, 1.5]), np.array([-0.1, 0.5])):
        with pytest.raises(ValueError, match="p: probabilities"):
            dice_optimal_mask(wrap(bad))
        with pytest.raises(ValueError, match="p: probabilities"):
            expected_dice_topk(wrap(bad))
