"""Synthetic phantoms: exact marginals (closed form and Monte Carlo), the two noise models, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from volbias.data import DataError, load_task, make_phantoms, sample_rater


def phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


@pytest.mark.parametrize("dims", [2, 3])
def test_single_blob_marginals_closed_form(dims):
    case = make_phantoms(dims=dims, n_blobs=1, n_cases=1, sigma=2.0, seed=3)[0]
    (r,), (c,) = case.meta["radii"], case.meta["centres"]
    for index in [(0,) * dims, tuple(int(round(x)) for x in c), tuple(int(round(x)) + 3 for x in c)]:
        d = math.dist(index, c)
        assert case.marginals[index] == pytest.approx(phi((r - d) / 2.0), abs=1e-6)
    assert case.image.shape == (1, *case.label.shape) and case.mask.all()
    assert case.label.shape == ((64, 64) if dims == 2 else (32, 32, 32))


def test_several_blobs_combine_as_independent_unions():
    case = make_phantoms(n_blobs=3, n_cases=1, sigma=1.0, seed=5)[0]
    yy, xx = np.mgrid[:64, :64]
    outside = np.ones((64, 64))
    for r, (cy, cx) in zip(case.meta["radii"], case.meta["centres"]):
        d = np.hypot(yy - cy, xx - cx)
        outside *= 1 - np.vectorize(phi)((r - d) / 1.0)
    np.testing.assert_allclose(case.marginals, 1 - outside, atol=1e-6)


@pytest.mark.parametrize("noise", ["independent", "shift"])
def test_monte_carlo_marginals_and_expected_volume(noise):
    n = 600
    case = make_phantoms(noise=noise, n_raters=n, n_cases=1, size=32, radius=4, sigma=1.5, n_blobs=2, seed=1)[0]
    p = case.marginals.astype(np.float64)
    counts = case.raters.sum(0).astype(np.int64)
    # two-sided binomial test per voxel, Bonferroni-corrected over the image
    pvalue = np.minimum(1.0, 2 * np.minimum(binom.cdf(counts, n, p), binom.sf(counts - 1, n, p)))
    assert pvalue.min() > 1e-4 / p.size
    volumes = case.raters.reshape(n, -1).sum(1)
    assert abs(volumes.mean() - p.sum()) <= 5 * volumes.std() / np.sqrt(n)
    assert case.expected_volume == pytest.approx(p.sum(), rel=1e-5)


def test_shift_noise_correlates_voxels():
    kw = dict(n_raters=300, n_cases=1, size=32, radius=5, sigma=1.5, n_blobs=1, seed=2)
    ind = make_phantoms(noise="independent", **kw)[0]
    shift = make_phantoms(noise="shift", **kw)[0]
    np.testing.assert_allclose(ind.marginals, shift.marginals)
    p = ind.marginals.astype(np.float64)
    var_independent = (p * (1 - p)).sum()  # closed form for independent voxels
    assert ind.raters.reshape(300, -1).sum(1).var() == pytest.approx(var_independent, rel=0.3)
    assert shift.raters.reshape(300, -1).sum(1).var() > 5 * var_independent
    # each shift draw is a disk: every voxel closer to the centre than a marked voxel is marked
    (c,) = shift.meta["centres"]
    yy, xx = np.mgrid[:32, :32]
    d = np.hypot(yy - c[0], xx - c[1])
    for draw in shift.raters[:20] > 0:
        if draw.any():
            assert np.all(draw[d < d[draw].max() - 1e-9])


def test_sigma_zero_is_certain():
    case = make_phantoms(sigma=0.0, n_cases=2, seed=0)[0]
    assert set(np.unique(case.marginals)) <= {0.0, 1.0}
    assert np.all(case.raters == case.marginals)


def test_deterministic_given_seed_and_task_options():
    a = load_task("synthetic", n_cases=6, seed=7)
    b = load_task("synthetic", n_cases=6, seed=7)
    c = load_task("synthetic", n_cases=6, seed=8)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.image, y.image)
        np.testing.assert_array_equal(x.raters, y.raters)
    assert not np.array_equal(a.cases[0].image, c.cases[0].image)
    assert sorted(cid for f in a.folds for cid in f) == sorted(x.id for x in a)
    np.testing.assert_array_equal(a.cases[0].label, a.cases[0].raters[0])
    assert len(load_task("synthetic", max_cases=3)) == 3
    assert load_task("synthetic", dims=3, n_cases=2).spec.dims == 3


def test_image_contrast_and_noise():
    case = make_phantoms(n_cases=1, contrast=2.0, image_noise=0.0, seed=0)[0]
    np.testing.assert_allclose(case.image[0], 2.0 * case.marginals, atol=1e-6)
    noisy = make_phantoms(n_cases=1, contrast=2.0, image_noise=0.5, seed=0)[0]
    assert np.std(noisy.image[0] - 2.0 * noisy.marginals) == pytest.approx(0.5, rel=0.05)


def test_sample_rater_is_uniform_over_raters():
    case = make_phantoms(n_cases=1, n_raters=4, seed=0)[0]
    rng = np.random.default_rng(0)
    counts = np.zeros(4)
    for _ in range(400):
        draw = sample_rater(case, rng)
        counts[[k for k in range(4) if np.array_equal(draw, case.raters[k])][0]] += 1
    assert counts.min() > 60


@pytest.mark.parametrize("options", [dict(dims=4), dict(sigma=-1.0), dict(size=10, radius=6), dict(n_raters=0)])
def test_bad_options(options):
    with pytest.raises(DataError):
        load_task("synthetic", **options)
