"""Tests of the volume estimators against hand-computed cases and brute force."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy.special import expit, log_expit, logit

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

from reference_ece import ece_by_hand



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
    assert ece_by_hand(scaled, labels) < 0.5 * ece_by_hand(overconfident, labels)
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
    # a line that crosses zero is clipped there: no negative volume
    falling = fit_linear_recalibration(np.array([1.0, 2.0, 3.0]), np.array([6.0, 4.0, 2.0]))  # 8 - 2 V
    np.testing.assert_allclose(falling.apply(np.array([1.0, 4.0, 5.0])), [6.0, 0.0, 0.0], atol=1e-12)


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


def _nll(maps, temperature: float) -> float:
    """Mean binary cross-entropy of sigmoid(logit(p) / T) against the voxel marginals (the calibration target
    where the data have them) over the masked voxels of ``maps`` (p clipped to [1e-4, 1 - 1e-4], the
    documented float16 guard)."""
    z = np.concatenate([logit(np.clip(m.prob[m.case.mask], 1e-4, 1 - 1e-4)) for m in maps]) / temperature
    y = np.concatenate([m.case.marginals[m.case.mask] for m in maps])
    return float(-np.mean(y * log_expit(z) + (1 - y) * log_expit(-z)))


def assert_nll_optimal(maps, temperature: float) -> None:
    """``temperature`` minimises the NLL of ``maps``: no temperature of a fine log grid does better."""
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 600))
    assert _nll(maps, temperature) <= min(_nll(maps, t) for t in grid) + 1e-7


def _sampled_top_k_dice(p: np.ndarray, n_draws: int = 20000, seed: int = 0) -> np.ndarray:
    """Monte Carlo E[Dice] of the k most probable voxels (index k - 1) against Y_i ~ Bernoulli(p_i)."""
    ranked = np.sort(p.ravel())[::-1]
    labels = np.random.default_rng(seed).random((n_draws, ranked.size)) < ranked
    k = np.arange(1, ranked.size + 1)
    return (2 * np.cumsum(labels, axis=1) / (k + labels.sum(1, keepdims=True))).mean(axis=0)


def test_compare_estimators_cross_fits_on_other_folds() -> None:
    from volbias.estimators.compare import ESTIMATORS, compare_estimators, ranked_summary

    rng = np.random.default_rng(4)
    maps = [_held_out(fold, k, rng, factor=1.0 + fold) for fold in range(3) for k in range(4)]
    table = compare_estimators(maps)
    assert len(table) == len(maps) * len(ESTIMATORS)
    assert set(table.estimator) == set(ESTIMATORS)
    for fold in range(3):
        train = [m for m in maps if m.fold != fold]
        rows = table[(table.fold == fold)]
        (temperature,) = set(rows.temperature)  # one temperature per held-out fold, fitted on the others
        assert_nll_optimal(train, temperature)
        slope, intercept = np.polyfit([m.prob.sum() for m in train], [m.case.expected_volume for m in train], 1)
        for m in (m for m in maps if m.fold == fold):
            got = rows[(rows.case_id == m.case.id)].set_index("estimator")
            p, label, mask = m.prob, m.case.label > 0.5, m.case.mask
            expected = m.case.marginals.sum(dtype=np.float64)
            assert got.loc["soft sum", "reference_volume"] == pytest.approx(expected, rel=1e-6)
            assert got.loc["soft sum", "err"] == pytest.approx(p.sum() - expected, rel=1e-6)
            assert got.loc["threshold 0.5", "volume"] == np.count_nonzero(p > 0.5)
            assert got.loc["threshold 0.5", "dice"] == pytest.approx(
                2 * ((p > 0.5) & label).sum() / ((p > 0.5).sum() + label.sum()))
            assert got.loc["re-calibrated", "volume"] == pytest.approx(intercept + slope * p.sum(), rel=1e-9)
            scaled = expit(logit(np.clip(p[mask], 1e-4, 1 - 1e-4)) / temperature)
            assert got.loc["temperature-scaled", "volume"] == pytest.approx(scaled.sum(), rel=1e-9)
            marginals = m.case.marginals[mask]  # calibration is measured against p, not one label draw
            assert got.loc["temperature-scaled", "ece"] == pytest.approx(ece_by_hand(scaled, marginals), abs=1e-6)
            assert got.loc["soft sum", "ece"] == pytest.approx(ece_by_hand(p[mask], marginals), abs=1e-6)
            # tau*: the top-k mask of the largest plug-in soft Dice 2 sum_top-k p / (k + sum p)
            ranked = np.sort(p[mask])[::-1]
            scores = 2 * np.cumsum(ranked) / (np.arange(1, ranked.size + 1) + ranked.sum())
            assert got.loc["tau* threshold", "volume"] == np.argmax(scores) + 1
            # Dice-optimal: the sampled expected Dice of its volume is the largest of all top-k masks
            sampled = _sampled_top_k_dice(p[mask], seed=fold)
            assert sampled[int(got.loc["Dice-optimal", "volume"]) - 1] == pytest.approx(sampled.max(), abs=4e-3)
            for name in ESTIMATORS:
                row = got.loc[name]
                assert row.err == pytest.approx(row.volume - expected, rel=1e-6, abs=1e-9)
                assert row.rel_err == pytest.approx((row.volume - expected) / expected, rel=1e-6, abs=1e-12)
                assert row.volume_unit == "pixels"  # a 2D case without a physical spacing counts pixels
                assert row.needs == ("needs labelled cases" if name in ("temperature-scaled", "re-calibrated")
                                     else "label-free")
                assert row.abs_err == pytest.approx(abs(row.volume - expected), rel=1e-6, abs=1e-9)
            assert np.isnan(got.loc["soft sum", "dice"])
    summary = ranked_summary(table)
    assert set(summary.estimator) == set(ESTIMATORS)
    best = summary.iloc[0]
    assert best["rank"] == 1
    means = table.groupby("estimator").abs_err.mean()
    assert best.abs_err == pytest.approx(means.min())
    assert best.estimator == means.idxmin()


def test_single_fold_experiment_cross_fits_on_splits_of_its_cases() -> None:
    from volbias.estimators.compare import compare_estimators

    rng = np.random.default_rng(5)
    maps = [_held_out(0, k, rng, factor=1.0 + 0.5 * k) for k in range(7)]
    table = compare_estimators(maps, n_splits=3)
    # one fold only: the cases, sorted by id, are dealt into 3 groups; each group is fitted on the others
    ids = sorted(m.case.id for m in maps)
    group_of = {case_id: i % 3 for i, case_id in enumerate(ids)}
    for group in range(3):
        held = [m for m in maps if group_of[m.case.id] == group]
        train = [m for m in maps if group_of[m.case.id] != group]
        rows = table[table.case_id.isin([m.case.id for m in held])]
        (temperature,) = set(rows.temperature)
        assert_nll_optimal(train, temperature)
        slope, intercept = np.polyfit([m.prob.sum() for m in train], [m.case.expected_volume for m in train], 1)
        assert rows.recal_slope.iloc[0] == pytest.approx(slope) and rows.recal_intercept.iloc[0] == pytest.approx(
            intercept)
    with pytest.raises(ValueError, match="too few cases outside group 0 to cross-fit"):
        compare_estimators(maps[:2], n_splits=5)  # each split would be fitted on a single case
    with pytest.raises(ValueError, match="no held-out maps"):
        compare_estimators([])


def _write_run(run_dir: Path, case_ids: list[str], maps: dict[str, np.ndarray] | None) -> Path:
    """A finished run directory in the contract's layout with the given cases and probability maps."""
    run_dir.mkdir(parents=True)
    rows = [{"task": "toy", "loss": "ce", "fold": 0, "seed": 0, "case_id": case_id, "dice": 0.5, "true_volume": 1.0,
             "expected_volume": 1.0, "pred_volume_soft": 1.0, "pred_volume_hard": 1.0, "voxel_volume_ml": 1.0}
            for case_id in case_ids]
    pd.DataFrame(rows).to_csv(run_dir / "cases.csv", index=False)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"task": "synthetic", "loss": "ce", "profile": "smoke"}))
    if maps is not None:
        np.savez(run_dir / "probabilities.npz", **{k: v.astype(np.float16) for k, v in maps.items()})
    (run_dir / "DONE").write_text("")
    return run_dir


def test_load_held_out_maps_clips_masks_and_names_every_problem(tmp_path: Path) -> None:
    from volbias.estimators.compare import load_held_out_maps

    case = _held_out(0, 0, np.random.default_rng(6), factor=1.0).case
    prob = np.full(case.label.shape, 0.25)
    prob[1, 1], prob[2, 2], prob[0, 0] = 1.5, -0.5, 0.75  # out of range, and (0, 0) lies outside the mask
    (held,) = load_held_out_maps(_write_run(tmp_path / "ok", [case.id], {case.id: prob}), {case.id: case})
    assert (held.case.id, held.fold, held.loss, held.setting) == (case.id, 0, "ce", "default")
    expected = np.where(case.mask, np.clip(prob.astype(np.float16).astype(np.float64), 0, 1), 0.0)
    np.testing.assert_array_equal(held.prob, expected)
    assert held.prob[1, 1] == 1.0 and held.prob[2, 2] == 0.0 and held.prob[0, 0] == 0.0

    no_maps = _write_run(tmp_path / "no-maps", [case.id], None)
    with pytest.raises(FileNotFoundError, match=r"probabilities\.npz: run has no probability maps"):
        load_held_out_maps(no_maps, {case.id: case})
    unknown = _write_run(tmp_path / "unknown", ["other"], {"other": prob})
    with pytest.raises(KeyError, match="case 'other' of task 'toy' was not loaded"):
        load_held_out_maps(unknown, {case.id: case})
    missing = _write_run(tmp_path / "missing", [case.id], {"other": prob})
    with pytest.raises(KeyError, match=rf"no map for case '{case.id}'"):
        load_held_out_maps(missing, {case.id: case})
    wrong = _write_run(tmp_path / "wrong", [case.id], {case.id: prob[:5]})
    with pytest.raises(ValueError, match=rf"map of {case.id} has shape \(5, 12\)"):
        load_held_out_maps(wrong, {case.id: case})


def _same_but_loss(a: dict, b: dict) -> bool:
    """Two run configurations that differ at most in loss, fold and training targets."""
    strip = lambda c: {**c, "loss": None, "fold": None,  # noqa: E731
                       "training": {k: v for k, v in c["training"].items() if k != "targets"}}
    return strip(a) == strip(b)


@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_which_volume_runs_share_other_chapters_runs(profile: str) -> None:
    from volbias.analysis.book_runs import controlled_uncertainty, lidc
    from volbias.estimators.runs import (
        SHIFT_LOSSES, SOFT_CONTROLS, WHICH_VOLUME_GRIDS, synthetic_seeds, which_volume_experiments,
    )

    experiments = which_volume_experiments(profile, seed=0)
    seeds = synthetic_seeds(profile, 0)
    assert seeds == list(range(WHICH_VOLUME_GRIDS[profile]["synthetic_seeds"]))
    others = {e.name: {(r.config.to_yaml(), r.setting) for r in e.runs}
              for e in (controlled_uncertainty(profile, seeds), lidc(profile, 0))}
    planned, directories = [], []
    for experiment in experiments:
        for run in experiment.runs:
            key = (run.config.to_yaml(), run.setting)
            if experiment.name == "which_volume":
                assert all(key not in runs for runs in others.values())
            else:
                assert key in others[experiment.name]
            targets = run.config.resolved_profile().targets
            noise = run.config.task_options.get("noise", "-")
            planned.append((run.config.task, noise, run.config.loss, run.config.seed, run.config.fold, targets))
            directories.append(run.directory(experiment.directory(Path("/runs"))))
            # the configuration is one of the other chapter's except for the loss, the fold and the targets
            source = others["lidc" if run.config.task == "LIDC" else "controlled_uncertainty"]
            assert any(_same_but_loss(yaml.safe_load(text), run.config.to_dict()) for text, _ in source)
            if run.config.task == "synthetic":  # the most uncertain setting of its noise model
                assert run.config.task_options["sigma"] == max(
                    yaml.safe_load(text)["task_options"]["sigma"] for text, _ in source
                    if yaml.safe_load(text)["task_options"]["noise"] == noise)
    grid = WHICH_VOLUME_GRIDS[profile]
    expected = set()
    later = seeds[:grid["later_seeds"]]  # DML, the later losses and the controls: the first seeds only
    for task, noise, losses, folds, task_seeds in (
            ("synthetic", "independent", grid["synthetic_losses"], grid["synthetic_folds"], seeds),
            ("synthetic", "shift", SHIFT_LOSSES, grid["synthetic_folds"][:1], seeds[:1]),
            ("LIDC", "-", grid["lidc_losses"], grid["lidc_folds"], [0])):
        for seed in task_seeds:
            kept = [loss for loss in losses if loss in ("ce", "sd") or task != "synthetic" or seed in later]
            expected |= {(task, noise, loss, seed, fold, "soft" if loss == "dml" else "rater")
                         for loss in kept for fold in folds}
            if "dml" in kept and grid["soft_controls"]:  # the soft-target controls of DML
                expected |= {(task, noise, loss, seed, fold, "soft") for loss in SOFT_CONTROLS for fold in folds}
    assert sorted(planned) == sorted(expected)
    assert len(set(directories)) == len(directories)  # a soft-target control never reuses a hard-target run
    own = [run for e in experiments if e.name == "which_volume" for run in e.runs]
    if profile == "cpu":  # the CPU build trains one run of its own (DML, first seed); the rest is shared
        assert [(r.config.loss, r.config.seed) for r in own] == [("dml", seeds[0])]


def test_which_volume_unknown_profile_raises() -> None:
    from volbias.estimators.runs import which_volume_experiments

    with pytest.raises(ValueError, match="profile"):
        which_volume_experiments("laptop")


def test_ranked_summary_pairs_each_entry_with_the_best() -> None:
    from volbias.estimators.compare import ESTIMATORS, compare_estimators, ranked_summary

    rng = np.random.default_rng(8)
    maps = [_held_out(fold, k, rng, factor=1.0 + 0.7 * fold) for fold in range(3) for k in range(5)]
    table = compare_estimators(maps)
    summary = ranked_summary(table, seed=3)
    best = summary.iloc[0]
    for _, entry in summary.iterrows():
        mine = table[table.estimator == entry.estimator].set_index("case_id").abs_err
        top = table[table.estimator == best.estimator].set_index("case_id").abs_err
        diff = (mine - top.loc[mine.index]).to_numpy()
        assert entry.vs_best == pytest.approx(diff.mean(), abs=1e-12)
        idx = np.random.default_rng(0).integers(0, diff.size, (4000, diff.size))
        boot = diff[idx].mean(1)
        if np.ptp(diff) > 0:
            width = np.quantile(boot, 0.975) - np.quantile(boot, 0.025)
            assert entry.vs_best_low == pytest.approx(np.quantile(boot, 0.025), abs=0.1 * width)
            assert entry.vs_best_high == pytest.approx(np.quantile(boot, 0.975), abs=0.1 * width)
    assert summary.vs_best.iloc[0] == 0.0 and (summary.vs_best >= -1e-12).all()
    assert len(summary) == len(ESTIMATORS)


def test_recalibration_fits_and_their_plot() -> None:
    import matplotlib.pyplot as plt

    from volbias.estimators.compare import compare_estimators, recalibration_fits
    from volbias.estimators.plots import plot_recalibration

    rng = np.random.default_rng(9)
    maps = [_held_out(fold, k, rng, factor=1.0 + fold) for fold in range(3) for k in range(4)]
    table = compare_estimators(maps)
    fits = recalibration_fits(table)
    assert sorted(fits.fit_group) == [0, 1, 2] and (fits.n_fit == 8).all()
    for _, fit in fits.iterrows():
        train = [m for m in maps if m.fold != fit.fit_group]
        slope, intercept = np.polyfit([m.prob.sum() for m in train], [m.case.expected_volume for m in train], 1)
        assert (fit.slope, fit.intercept) == pytest.approx((slope, intercept))
    fig, ax = plt.subplots()
    plot_recalibration(table, "toy", ["ce"], ax, unit="pixels")
    lines = [line for line in ax.get_lines() if line.get_label() != "identity"]
    assert len(lines) == len(fits)
    for line in lines:  # each drawn line is one fitted line, clipped at zero
        x, y = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
        assert any(np.allclose(y, np.maximum(0, fit.intercept + fit.slope * x)) for fit in fits.itertuples())
    assert ax.get_xlabel() == "soft-sum volume (pixels)"
    plt.close(fig)


def test_soft_target_runs_are_labelled(tmp_path: Path) -> None:
    from volbias.estimators.compare import load_held_out_maps, run_loss_name

    assert run_loss_name("ce", "soft") == "ce (soft)" and run_loss_name("dml", "soft") == "dml"
    assert run_loss_name("sd", "rater") == "sd"
    case = _held_out(0, 0, np.random.default_rng(10), factor=1.0).case
    run = _write_run(tmp_path / "soft", [case.id], {case.id: np.full(case.label.shape, 0.5)})
    config = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**config, "training": {"targets": "soft"}}))
    (held,) = load_held_out_maps(run, {case.id: case})
    assert held.loss == "ce (soft)"


@pytest.mark.filterwarnings("ignore:The set_bad function:PendingDeprecationWarning")  # inside seaborn
def test_error_heatmap_shows_the_book_labels_and_the_means() -> None:
    import matplotlib.pyplot as plt

    from volbias.estimators.compare import ESTIMATORS
    from volbias.estimators.plots import plot_error_heatmap

    summary = pd.DataFrame([{"task": "toy", "loss": loss, "estimator": name, "err": 10.0 * i + j, "abs_err": 1.0}
                            for i, loss in enumerate(["ce", "sd (soft)"]) for j, name in enumerate(ESTIMATORS)])
    fig, ax = plt.subplots()
    plot_error_heatmap(summary, "toy", "err", ["ce", "sd (soft)"], ax, unit="pixels")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["CE", "SD (soft)"]
    annotations = sorted(float(t.get_text()) for t in ax.texts)
    assert annotations == sorted(summary.err)
    plt.close(fig)
