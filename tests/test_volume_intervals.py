"""Volume intervals: coverage on phantoms with known marginals, the comonotone coupling, CRPS against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from volbias.data.synthetic import draw_labels, make_phantoms
from volbias.estimators.intervals import (
    central_interval,
    component_volume_pmf,
    crps,
    independent_volume_pmf,
    interval_row,
)


def _coverage(cases, coupling: str, n_draws: int, nominal: float, seed: int) -> tuple[float, float]:
    """Monte Carlo coverage of fresh label draws, and the intervals' exact coverage under the model."""
    rng = np.random.default_rng(seed)
    inside, exact = [], []
    for case in cases:
        draws = draw_labels(case, n_draws, rng).reshape(n_draws, -1).sum(1)
        row = interval_row(case.marginals.astype(np.float64), draws, coupling, nominal)
        inside.append(row["coverage"])
        exact.append(row["model_coverage"])
    return float(np.mean(inside)), float(np.mean(exact))


@pytest.mark.parametrize("nominal", [0.8, 0.9, 0.95])
def test_poisson_binomial_interval_covers_independent_label_draws(nominal: float) -> None:
    cases = make_phantoms(dims=2, size=54, radius=4.0, sigma=3.6, noise="independent", n_cases=30, n_raters=1,
                          seed=0)
    covered, exact = _coverage(cases, "independent", 400, nominal, seed=1)
    assert covered == pytest.approx(nominal, abs=0.02)
    assert exact >= nominal and covered == pytest.approx(exact, abs=4 * np.sqrt(exact * (1 - exact) / 12000))


@pytest.mark.parametrize("radius, sigma", [(8.0, 2.0), (4.0, 3.6)])
def test_component_interval_covers_shift_noise_draws_where_the_independent_one_does_not(radius: float,
                                                                                        sigma: float) -> None:
    cases = make_phantoms(dims=2, size=54, radius=radius, sigma=sigma, noise="shift", n_cases=30, n_raters=1,
                          n_blobs=1, seed=2)
    covered, exact = _coverage(cases, "components", 400, 0.9, seed=3)
    # single blob, shift noise: the coupling is exact, so the draws fall inside as often as the model says
    assert covered == pytest.approx(exact, abs=0.02) and exact >= 0.9
    if sigma / radius < 0.5:  # a sharp boundary: small atoms, coverage close to nominal
        assert covered == pytest.approx(0.9, abs=0.02)
    too_narrow, _ = _coverage(cases, "independent", 400, 0.9, seed=3)
    assert too_narrow < 0.6  # correlated labels: the independent interval is far too narrow


def test_component_pmf_against_sampling_the_coupling() -> None:
    rng = np.random.default_rng(4)
    prob = np.zeros((16, 16))
    cores = [(slice(2, 5), slice(2, 5)), (slice(10, 13), slice(9, 14))]
    for rows, cols in cores:  # an object: a core above 1/2 in a faint ring
        prob[rows.start - 1: rows.stop + 1, cols.start - 1: cols.stop + 1] = rng.uniform(0.05, 0.45)
        prob[rows, cols] = rng.uniform(0.6, 1.0, (rows.stop - rows.start, cols.stop - cols.start))
    prob[0, 15], prob[15, 0], prob[15, 15] = 0.02, 0.03, 0.04  # faint voxels: they join their nearest object
    # each voxel's nearest core voxel, by brute force
    grid = np.stack(np.meshgrid(np.arange(16), np.arange(16), indexing="ij"), -1).reshape(-1, 2)
    core_sets = [np.argwhere(np.isin(np.arange(256).reshape(16, 16), np.arange(256).reshape(16, 16)[r, c]))
                 for r, c in cores]
    distance = np.stack([np.sqrt(((grid[:, None] - cs[None]) ** 2).sum(-1)).min(1) for cs in core_sets])
    region = distance.argmin(0)
    n = 200_000
    u = rng.uniform(size=(2, n))
    flat = prob.ravel()
    sample = sum((flat[region == r][None] > u[r][:, None]).sum(1) for r in range(2))
    offset, pmf = component_volume_pmf(prob)
    freq = np.bincount(sample - offset, minlength=pmf.size)[: pmf.size] / n
    assert np.abs(freq - pmf).max() < 0.005 and pmf.sum() == pytest.approx(1.0)
    assert (offset + np.arange(pmf.size)) @ pmf == pytest.approx(prob.sum())  # the mean is the soft sum


def test_a_near_binary_map_gives_a_point_interval() -> None:
    prob = np.zeros((20, 20))
    prob[5:12, 5:12] = 1.0 - 1e-4
    prob[0, 0] = 1e-4
    for distribution in (independent_volume_pmf(prob), component_volume_pmf(prob)):
        low, high = central_interval(distribution, 0.9)
        assert low == high == 49


def _brute_crps(offset: int, pmf: np.ndarray, y: int) -> tuple[float, float]:
    """CRPS two ways: the energy form E|X - y| - E|X - X'|/2 by enumeration, and the integral on a fine grid."""
    support = offset + np.arange(pmf.size)
    energy = pmf @ np.abs(support - y) - 0.5 * pmf @ np.abs(support[:, None] - support[None, :]) @ pmf
    x = np.linspace(min(support[0], y) - 2, max(support[-1], y) + 2, 400_001)
    cdf = np.concatenate([[0.0], np.cumsum(pmf)])[np.clip(np.floor(x).astype(int) - offset + 1, 0, pmf.size)]
    integral = float(np.sum((cdf - (x >= y)) ** 2) * (x[1] - x[0]))
    return float(energy), integral


def test_crps_against_brute_force() -> None:
    rng = np.random.default_rng(5)
    for _ in range(10):
        pmf = rng.dirichlet(np.ones(rng.integers(1, 12)))
        offset = int(rng.integers(0, 20))
        ys = [offset - 3, offset, offset + pmf.size // 2, offset + pmf.size + 4]
        got = crps((offset, pmf), ys)
        for y, value in zip(ys, got):
            energy, integral = _brute_crps(offset, pmf, y)
            assert value == pytest.approx(energy, abs=1e-12)
            assert value == pytest.approx(integral, abs=2e-4)


def test_central_interval_is_the_smallest_quantile_pair() -> None:
    rng = np.random.default_rng(6)
    for _ in range(30):
        pmf = rng.dirichlet(np.ones(rng.integers(2, 40)) * 0.5)
        offset = int(rng.integers(0, 10))
        coverage = float(rng.uniform(0.5, 0.99))
        low, high = central_interval((offset, pmf), coverage)
        cdf = np.cumsum(pmf)
        alpha = 1 - coverage
        assert cdf[low - offset] >= alpha / 2 - 1e-12 and (low == offset or cdf[low - offset - 1] < alpha / 2)
        assert cdf[high - offset] >= 1 - alpha / 2 - 1e-12 and (high == offset or cdf[high - offset - 1] < 1 - alpha / 2)
        assert pmf[low - offset: high - offset + 1].sum() >= coverage - 1e-12
