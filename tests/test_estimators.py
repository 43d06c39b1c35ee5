"""Tests of the volume estimators against hand-computed cases and brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.special import expit

from volbias.estimators import (
    apply_temperature,
    dice_optimal_volume,
    fit_linear_recalibration,
    fit_temperature,
    hard_volume,
    soft_volume,
    tau_star_volume,
    temperature_scaled_volume,
)
from volbias.metrics import expected_calibration_error


def _ece_by_hand(prob: np.ndarray, label: np.ndarray, n_bins: int = 10) -> float:
    """Equal-width-bin ECE of the foreground probability, written independently of volbias."""
    prob, label = prob.ravel(), label.ravel()
    total = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        sel = (prob >= lo) & ((prob < hi) if b < n_bins - 1 else (prob <= hi))
        if sel.any():
            total += sel.sum() * abs(prob[sel].mean() - label[sel].mean())
    return total / prob.size


def _expected_dice_brute(mask: np.ndarray, p: np.ndarray) -> float:
    """E[Dice(mask, Y)] with independent Y_i ~ Bernoulli(p_i), by enumerating every label."""
    total = 0.0
    for y in itertools.product([0, 1], repeat=p.size):
        y = np.array(y, bool)
        prob = np.prod(np.where(y, p, 1 - p))
        denom = mask.sum() + y.sum()
        total += prob * (1.0 if denom == 0 else 2 * (mask & y).sum() / denom)
    return total


def test_hard_and_soft_volume_hand_case() -> None:
    p = np.array([[0.9, 0.6], [0.3, 0.1]])
    assert hard_volume(p) == 2.0
    assert hard_volume(p, threshold=0.2) == 3.0
    assert soft_volume(p) == pytest.approx(1.9)
    assert soft_volume(p, spacing=(2.0, 4.0)) == pytest.approx(1.9 * 0.008)  # 8 mm^2 per pixel
    assert hard_volume(p, spacing=(5.0, 20.0)) == pytest.approx(0.2)


def test_tau_star_volume_hand_case() -> None:
    # soft Dice of the top-k masks against p = (0.9, 0.6, 0.3, 0.1), sum p = 1.9:
    # k=1: 1.8/2.9 = 0.621, k=2: 3.0/3.9 = 0.769, k=3: 3.6/4.9 = 0.735 -> k* = 2 (tau* = 0.385)
    p = np.array([0.9, 0.6, 0.3, 0.1])
    assert tau_star_volume(p) == 2.0
    assert tau_star_volume(p, spacing=(2.5,)) == pytest.approx(0.005)


def test_tau_star_volume_brute_force() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        p = rng.beta(0.5, 0.5, 30)
        order = np.sort(p)[::-1]
        scores = [2 * order[:k].sum() / (k + p.sum()) for k in range(0, p.size + 1)]
        assert tau_star_volume(p) == float(np.argmax(scores))


def test_dice_optimal_volume_hand_case() -> None:
    # p = (0.9, 0.5): E[Dice] of {1} = 0.45*2/3 + 0.45 = 0.75, of {1,2} = 0.45 + 0.3 + 0.05*2/3 = 0.783,
    # of {2} = 0.35, of {} = 0.05  ->  the Dice-optimal mask has two voxels, the 0.5-threshold only one.
    p = np.array([0.9, 0.5])
    assert dice_optimal_volume(p) == 2.0
    assert hard_volume(p) == 1.0


def test_dice_optimal_volume_brute_force() -> None:
    rng = np.random.default_rng(1)
    for _ in range(4):
        p = rng.uniform(0, 1, 7)
        best = max(
            (np.array(m, bool) for m in itertools.product([0, 1], repeat=p.size)),
            key=lambda m: _expected_dice_brute(m, p),
        )
        assert dice_optimal_volume(p) == float(best.sum())


def test_temperature_scaled_volume_hand_case() -> None:
    p = np.array([expit(2.0), 0.5, 0.0])
    mask = np.array([True, True, False])
    # sigmoid(2/2) + sigmoid(0/2); the voxel outside the mask contributes nothing
    assert temperature_scaled_volume(p, 2.0, mask) == pytest.approx(expit(1.0) + 0.5, rel=1e-9)
    assert temperature_scaled_volume(p, 1.0, mask) == pytest.approx(soft_volume(p), rel=1e-6)


def test_fit_temperature_recovers_overconfidence_and_lowers_ece() -> None:
    rng = np.random.default_rng(2)
    z = rng.normal(0, 1.2, (40, 32, 32))  # 3 z stays mostly inside the logit clip (|logit| < 9.2)
    labels = (rng.uniform(size=z.shape) < expit(z)).astype(np.float32)
    overconfident = expit(3.0 * z)  # true logits multiplied by 3
    cases = list(overconfident)
    temperature = fit_temperature(cases, list(labels))
    assert temperature == pytest.approx(3.0, rel=0.05)
    scaled = apply_temperature(overconfident, temperature)
    assert _ece_by_hand(scaled, labels) < 0.5 * _ece_by_hand(overconfident, labels)
    assert expected_calibration_error(scaled, labels) < expected_calibration_error(overconfident, labels)


def test_fit_temperature_uses_only_mask_voxels() -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(0, 2.0, (10, 20, 20))
    labels = (rng.uniform(size=z.shape) < expit(z)).astype(np.float32)
    mask = rng.uniform(size=z.shape) < 0.5
    prob = np.where(mask, expit(z / 2.0), 0.0)  # under-confident inside, zeros (stored masked) outside
    assert fit_temperature(list(prob), list(labels), list(mask)) == pytest.approx(0.5, rel=0.08)


def test_linear_recalibration_hand_case() -> None:
    # slope = sum(dx dy) / sum(dx^2) = (1 + 0 + 2) / 2 = 1.5, intercept = 3 - 1.5 * 2 = 0
    fit = fit_linear_recalibration(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 5.0]))
    assert fit.slope == pytest.approx(1.5)
    assert fit.intercept == pytest.approx(0.0, abs=1e-12)
    assert fit.apply(4.0) == pytest.approx(6.0)
    np.testing.assert_allclose(fit.apply(np.array([0.0, 2.0])), [0.0, 3.0], atol=1e-12)


@pytest.mark.parametrize(
    "call",
    [
        lambda: hard_volume(np.array([0.2, 1.3])),
        lambda: soft_volume(np.array([0.2]), spacing=(0.0,)),
        lambda: tau_star_volume(np.array([0.2, -0.1])),
        lambda: apply_temperature(np.array([0.2]), -1.0),
        lambda: fit_linear_recalibration(np.array([1.0, 1.0]), np.array([2.0, 3.0])),
        lambda: fit_temperature([np.zeros(3)], [np.zeros(4)]),
    ],
)
def test_bad_input_raises(call) -> None:
    with pytest.raises(ValueError):
        call()


def _held_out(fold: int, k: int, rng: np.random.Generator, factor: float):
    from volbias.data.case import Case
    from volbias.estimators.compare import HeldOutMap

    z = rng.normal(0, 1.0, (12, 12))
    marginals = expit(z).astype(np.float32)
    label = (rng.uniform(size=z.shape) < marginals).astype(np.float32)
    mask = np.ones(z.shape, bool)
    mask[0] = False
    case = Case(id=f"c{fold}-{k}", image=z[None].astype(np.float32), label=label * mask, mask=mask,
                spacing=(1.0, 1.0), spacing_known=False, marginals=marginals * mask)
    return HeldOutMap("toy", "default", "ce", 0, fold, case, np.where(mask, expit(factor * z), 0.0))


def test_compare_estimators_cross_fits_on_other_folds() -> None:
    from volbias.estimators.compare import ESTIMATORS, compare_estimators, ranked_summary

    rng = np.random.default_rng(4)
    maps = [_held_out(fold, k, rng, factor=1.0 + fold) for fold in range(3) for k in range(4)]
    table = compare_estimators(maps)
    assert len(table) == len(maps) * len(ESTIMATORS)
    for fold in range(3):
        train = [m for m in maps if m.fold != fold]
        expected_t = fit_temperature([m.prob for m in train], [m.case.label for m in train],
                                     [m.case.mask for m in train])
        soft = np.array([m.prob.sum() for m in train])
        recal = fit_linear_recalibration(soft, np.array([m.case.expected_volume for m in train]))
        rows = table[(table.fold == fold)]
        assert rows.temperature.to_numpy() == pytest.approx(expected_t)
        for m in (m for m in maps if m.fold == fold):
            got = rows[(rows.case_id == m.case.id)].set_index("estimator")
            assert got.loc["re-calibrated", "volume"] == pytest.approx(recal.apply(m.prob.sum()))
            assert got.loc["soft sum", "err"] == pytest.approx(m.prob.sum() - m.case.expected_volume)
            assert got.loc["threshold 0.5", "dice"] == pytest.approx(
                2 * ((m.prob > 0.5) & (m.case.label > 0.5)).sum() / ((m.prob > 0.5).sum() + m.case.label.sum()))
            assert got.loc["temperature-scaled", "volume"] == pytest.approx(
                temperature_scaled_volume(m.prob, expected_t, m.case.mask))
            assert np.isnan(got.loc["soft sum", "dice"])
    summary = ranked_summary(table)
    assert set(summary.estimator) == set(ESTIMATORS)
    best = summary.iloc[0]
    assert best["rank"] == 1
    means = table.groupby("estimator").abs_err.mean()
    assert best.abs_err == pytest.approx(means.min())
    assert best.estimator == means.idxmin()


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_which_volume_runs_share_other_chapters_runs(profile: str) -> None:
    from volbias.analysis.experiments import controlled_uncertainty, lidc
    from volbias.estimators.experiment import COMPARED_LOSSES, WHICH_VOLUME_GRIDS, which_volume_experiments

    experiments = which_volume_experiments(profile, seed=0)
    others = {e.name: {(r.config.to_yaml(), r.setting) for r in e.runs}
              for e in (controlled_uncertainty(profile, 0), lidc(profile, 0))}
    planned = []
    for experiment in experiments:
        for run in experiment.runs:
            key = (run.config.to_yaml(), run.setting)
            if experiment.name == "which_volume":
                assert all(key not in runs for runs in others.values())
            else:
                assert key in others[experiment.name]
            planned.append((run.config.task, run.config.loss, run.config.fold))
            # the Dice semimetric loss trains on the soft targets, every other loss on sampled raters
            assert run.config.resolved_profile().targets == ("soft" if run.config.loss == "dml" else "rater")
    grid = WHICH_VOLUME_GRIDS[profile]
    expected = {("synthetic", loss, fold) for loss in COMPARED_LOSSES for fold in grid["synthetic_folds"]}
    expected |= {("LIDC", loss, fold) for loss in grid["lidc_losses"] for fold in grid["lidc_folds"]}
    assert sorted(planned) == sorted(expected)


def test_which_volume_unknown_profile_raises() -> None:
    from volbias.estimators.experiment import which_volume_experiments

    with pytest.raises(ValueError, match="profile"):
        which_volume_experiments("laptop")
