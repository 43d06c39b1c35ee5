"""How sure is a volume: the distribution of a case's volume under a probability map, its interval, coverage, CRPS.

A map gives voxel marginals ``s_i``; the volume of a label draw is ``V = sum_i Y_i``.  The marginals fix its
mean, ``sum_i s_i`` (the soft sum), not its spread, which depends on how the voxel labels are coupled.  Two
couplings bracket the usual cases:

- ``"independent"``: independent ``Y_i ~ Bernoulli(s_i)``; ``V`` is Poisson-binomial with variance
  ``sum_i s_i (1 - s_i)`` (exact pmf: :func:`volbias.theory.poisson_binomial_pmf`).  This is the phantoms'
  independent label noise.
- ``"components"``: the map's objects are the connected components of ``{s >= 1/2}`` (of ``{s >= max s}``
  where the map stays below 1/2); every voxel joins its nearest object, and the voxels of one object's
  region share one uniform ``U_c``, ``Y_i = 1{U_c < s_i}`` (the comonotone coupling: the largest variance of
  a sum that the marginals allow); regions are independent of each other.  A region's volume is
  ``#{i in c : s_i > U_c}``, so ``P(V_c >= k) = s_(k)``, its k-th largest value: for a single object the
  interval runs from the map thresholded at ``1 - alpha/2`` to the map thresholded at ``alpha/2``.  This is
  exactly the phantoms' shift noise for a single blob, where one random radius decides every voxel.

Under either coupling a near-binary map (soft Dice's) has almost no spread: ``s_i (1 - s_i) ~ 0`` and
``s_(k)`` jumps from 1 to 0, so its interval shrinks to a point whatever the labels' true variability.

The interval of coverage ``1 - alpha`` is ``[q(alpha/2), q(1 - alpha/2)]`` of the discrete distribution; its
probability under the model (``model_coverage``) is at least ``1 - alpha``.  The continuous ranked
probability score of a predicted distribution ``F`` and an observed volume ``y`` is
``CRPS = int (F(x) - 1{x >= y})^2 dx`` [gneiting2007], which for integer-valued ``V`` and ``y`` is the sum
``sum_k (F(k) - 1{k >= y})^2``, exact; it is in the volume's unit (counts times the voxel volume).  scipy has
no CRPS (properscoring's works on samples), so it is written here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import ndimage

from volbias.data.case import Case
from volbias.estimators.crossfit import case_cluster, one_map_per_case
from volbias.estimators.maps import HeldOutMap
from volbias.estimators.temperature import apply_temperature
from volbias.theory import poisson_binomial_pmf

Pmf = tuple[int, np.ndarray]
"""``(offset, pmf)``: ``P(V = offset + j) = pmf[j]``."""

def independent_volume_pmf(prob: np.ndarray) -> Pmf:
    """The volume's distribution (in voxels) under independent voxel labels: Poisson-binomial."""
    return poisson_binomial_pmf(np.asarray(prob, dtype=np.float64))


def _component_pmf(values: np.ndarray) -> np.ndarray:
    """pmf of ``#{i : s_i > U}``, ``U`` uniform: ``P(V = k) = s_(k) - s_(k+1)`` (``s_(0) = 1``, ``s_(n+1) = 0``)."""
    ordered = np.concatenate([[1.0], np.sort(values)[::-1], [0.0]])
    return -np.diff(ordered)


def object_regions(prob: np.ndarray) -> tuple[np.ndarray, int]:
    """Label of the nearest object (1..n) of every voxel, and n; objects are the connected components (full
    connectivity) of ``{s >= min(1/2, max s)}``."""
    prob = np.asarray(prob, dtype=np.float64)
    objects, n = ndimage.label(prob >= min(0.5, float(prob.max())), structure=np.ones((3,) * prob.ndim, dtype=bool))
    nearest = ndimage.distance_transform_edt(objects == 0, return_distances=False, return_indices=True)
    return objects[tuple(nearest)], n


def component_volume_pmf(prob: np.ndarray) -> Pmf:
    """The volume's distribution (in voxels) with one shared uniform draw per object region (:func:`object_regions`),
    regions independent of each other."""
    prob = np.asarray(prob, dtype=np.float64)
    regions, n = object_regions(prob)
    order = np.argsort(regions, axis=None, kind="stable")
    bounds = np.searchsorted(regions.ravel()[order], np.arange(1, n + 2))
    flat = prob.ravel()[order]
    pmf = np.ones(1)
    for c in range(n):
        values = flat[bounds[c]:bounds[c + 1]]
        pmf = np.convolve(pmf, _component_pmf(values[values > 0]))
    return 0, pmf


def central_interval(distribution: Pmf, coverage: float) -> tuple[int, int]:
    """``(q(alpha/2), q(1 - alpha/2))`` with ``alpha = 1 - coverage``: the smallest volumes whose cdf reaches them."""
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must lie in (0, 1), got {coverage}")
    offset, pmf = distribution
    cdf = np.cumsum(pmf) / pmf.sum()
    alpha = 1 - coverage
    low = int(np.searchsorted(cdf, alpha / 2 - 1e-12))
    high = int(np.searchsorted(cdf, 1 - alpha / 2 - 1e-12))
    return offset + low, offset + min(high, pmf.size - 1)


def crps(distribution: Pmf, observed: Sequence[int] | np.ndarray) -> np.ndarray:
    """CRPS of the integer-valued distribution against each observed integer volume (in voxels)."""
    offset, pmf = distribution
    y = np.asarray(observed, dtype=np.int64)
    first, last = min(offset, int(y.min())), max(offset + pmf.size - 1, int(y.max()))
    cdf = np.zeros(last - first + 1)
    cdf[offset - first: offset - first + pmf.size] = np.cumsum(pmf) / pmf.sum()
    cdf[offset - first + pmf.size:] = 1.0
    k = np.arange(first, last + 1)
    return ((cdf[None, :] - (k[None, :] >= y[:, None])) ** 2).sum(axis=1)


def _moments(distribution: Pmf) -> tuple[float, float]:
    offset, pmf = distribution
    k = offset + np.arange(pmf.size)
    mean = float((k * pmf).sum() / pmf.sum())
    return mean, float(np.sqrt(max(((k - mean) ** 2 * pmf).sum() / pmf.sum(), 0.0)))


COUPLINGS: tuple[str, ...] = ("independent", "components")


def interval_row(prob: np.ndarray, draws: np.ndarray, coupling: str, coverage: float) -> dict[str, float]:
    """Interval, spread, coverage of the observed ``draws`` (volumes in voxels) and mean CRPS, in voxels."""
    if coupling not in COUPLINGS:
        raise ValueError(f"coupling={coupling!r}: expected one of {', '.join(COUPLINGS)}")
    distribution = component_volume_pmf(prob) if coupling == "components" else independent_volume_pmf(prob)
    low, high = central_interval(distribution, coverage)
    offset, pmf = distribution
    mean, sd = _moments(distribution)
    draws = np.asarray(draws, dtype=np.int64)
    inside = (draws >= low) & (draws <= high)
    return {"mean": mean, "sd": sd, "low": float(low), "high": float(high), "width": float(high - low),
            "model_coverage": float(pmf[low - offset: high - offset + 1].sum() / pmf.sum()),
            "coverage": float(inside.mean()) if draws.size else float("nan"),
            "crps": float(crps(distribution, draws).mean()) if draws.size else float("nan"),
            "n_draws": int(draws.size)}


_VOLUME_COLUMNS = ("mean", "sd", "low", "high", "width", "crps")

MARGINALS = "marginals"
"""The loss and map name of the intervals read from a case's own voxel marginals (no network): the best a map
can do."""


def _case_rows(case: Case, probs: dict[str, np.ndarray], base: dict[str, object],
               coverage: float) -> list[dict[str, object]]:
    """Rows of :func:`interval_row` for each named map of one case and each coupling, volumes in the case's unit."""
    draws = np.zeros(0, dtype=np.int64) if case.raters is None else (case.raters[:, case.mask] > 0.5).sum(axis=1)
    base = {**base, "case_id": case.id, "cluster": case_cluster(case), "volume_unit": case.volume_unit,
            "reference_volume": case.expected_volume,
            "draw_sd": float(draws.std(ddof=1)) * case.voxel_volume_ml if draws.size > 1 else float("nan")}
    rows = []
    for name, prob in probs.items():
        for coupling in COUPLINGS:
            row = interval_row(prob, draws, coupling, coverage)
            row.update({c: row[c] * case.voxel_volume_ml for c in _VOLUME_COLUMNS})
            rows.append({**base, "map": name, "coupling": coupling, **row})
    return rows


def volume_intervals(maps: Sequence[HeldOutMap], comparison: pd.DataFrame, coverage: float = 0.9) -> pd.DataFrame:
    """Per held-out case (one map per case, as in the comparison), map and coupling: the volume interval and
    how it fares against the case's label draws (``case.raters``: the phantoms' draws, LIDC's raters).

    Maps: ``"network"`` (as predicted) and ``"temperature-scaled"`` (with the case's cross-fitted temperature
    from ``comparison``, the book's calibrated map).  Couplings: :data:`COUPLINGS`.  Volumes, widths and CRPS
    are in the case's volume unit.
    """
    temperatures = comparison[comparison["estimator"] == "temperature-scaled"].set_index(
        ["task", "setting", "loss", "seed", "case_id"])["temperature"]
    rows = []
    for m in one_map_per_case(maps):
        scaled = apply_temperature(m.prob, float(temperatures.loc[(*m.experiment, m.case.id)]), m.case.mask)
        base = {"task": m.task, "setting": m.setting, "loss": m.loss, "seed": m.seed, "fold": m.fold,
                "replicate": f"seed {m.seed}, fold {m.fold}"}
        rows += _case_rows(m.case, {"network": m.prob, "temperature-scaled": scaled}, base, coverage)
    return pd.DataFrame(rows)


def marginal_intervals(maps: Sequence[HeldOutMap], coverage: float = 0.9) -> pd.DataFrame:
    """The rows of :func:`volume_intervals` for the held-out cases' own marginals (loss and map :data:`MARGINALS`),
    once per task, setting, seed and case, with the network of the first loss's kept map."""
    rows, seen = [], set()
    for m in one_map_per_case(maps):
        key = (m.task, m.setting, m.seed, m.case.id)
        if key in seen or m.case.marginals is None:
            continue
        seen.add(key)
        base = {"task": m.task, "setting": m.setting, "loss": MARGINALS, "seed": m.seed, "fold": m.fold,
                "replicate": f"seed {m.seed}, fold {m.fold}"}
        prob = np.where(m.case.mask, m.case.marginals.astype(np.float64), 0.0)
        rows += _case_rows(m.case, {MARGINALS: prob}, base, coverage)
    return pd.DataFrame(rows)
