"""Verdicts of volbias.analysis.claims and the rules of volbias.analysis.plan on hand-built case tables.

The fixtures give every loss a soft and a thresholded volume that differ, so a verdict that reads the wrong
column (CE's thresholded instead of its soft volume, SD's soft instead of its thresholded) changes; the
intervals of the two-level bootstrap are recomputed with a hand-written sampler.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from volbias.analysis import claims, phantom_theory, plan
from volbias.analysis.book_runs import synthetic_options
from volbias.analysis.resampling import TwoLevelBootstrap, relative_bias, weighted_mean
from volbias.data import make_phantoms
from volbias.metrics import dice
from volbias.theory import dice_optimal_mask
from volbias.training.evaluation import rater_dice

N_BOOT = 1000


def network_cases(group: str, task: str, ref: np.ndarray, *, sd_hard: np.ndarray, ce_soft: np.ndarray,
                  sd_soft: np.ndarray | None = None, ce_hard: np.ndarray | None = None, networks: int = 5,
                  dice_ce: np.ndarray | None = None, dice_sd: np.ndarray | None = None,
                  converged: dict[str, bool] | None = None, extra: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """CE and SD rows of the same cases, spread over ``networks`` folds (one network per fold and loss).

    Unless given, SD's soft volume is 30 % above its thresholded one and CE's thresholded 30 % below its soft
    one: reading the wrong column moves every volume verdict."""
    n = len(ref)
    sd_soft = sd_hard * 1.3 if sd_soft is None else sd_soft
    ce_hard = ce_soft * 0.7 if ce_hard is None else ce_hard
    dice_ce = np.full(n, 0.7) if dice_ce is None else dice_ce
    dice_sd = dice_ce + 0.02 if dice_sd is None else dice_sd
    converged = converged or {}
    rows = []
    for loss, soft, hard, d in (("ce", ce_soft, ce_hard, dice_ce), ("sd", sd_soft, sd_hard, dice_sd)):
        ok = converged.get(loss, True)
        for i in range(n):
            fold = i % networks
            rows.append({"task": task, "group": group, "loss": loss, "fold": fold, "seed": 0, "case_id": f"c{i:03d}",
                         "dice": d[i], "true_volume": ref[i], "expected_volume": ref[i], "pred_volume_soft": soft[i],
                         "pred_volume_hard": hard[i], "voxel_volume_ml": 1.0, "volume_unit": "ml",
                         "run_dir": f"/runs/{group}/{loss}/fold{fold}", "setting": "default", "converged": ok,
                         "convergence": "converged: fine" if ok else "not converged: training loss still falling",
                         **{k: v[i] for k, v in (extra or {}).items()}})
    return pd.DataFrame(rows)


def row(table: pd.DataFrame, claim: str, group: str) -> pd.Series:
    return table[(table["claim"] == claim) & (table["group"] == group)].iloc[0]


def jitter(n: int, scale: float, seed: int = 0) -> np.ndarray:
    return scale * np.random.default_rng(seed).standard_normal(n)


# --- the plan's rules, exactly at the margins --------------------------------------------------------------

def test_volume_rules_at_the_margin() -> None:
    tau = plan.VOLUME_MARGIN
    assert plan.inside_verdict(-tau, tau) == "yes"  # an interval ending on +-tau is inside the closed band
    assert plan.inside_verdict(-tau, np.nextafter(tau, 1)) == "inconclusive"
    assert plan.outside_verdict(tau, 0.3) == "inconclusive"  # touching the band is not wholly outside
    assert plan.outside_verdict(np.nextafter(tau, 1), 0.3) == "yes"
    assert plan.outside_verdict(-0.3, np.nextafter(-tau, -1)) == "yes"
    assert plan.outside_verdict(-tau, tau) == "no" and plan.inside_verdict(0.2, 0.3) == "no"
    assert plan.inside_verdict(np.nan, 0.01) == "inconclusive"


def test_dice_rule_at_the_margin() -> None:
    delta = plan.DICE_MARGIN
    assert plan.superiority_verdict(delta, 1e-9, 0.05) == "yes"
    assert plan.superiority_verdict(np.nextafter(delta, 0), 1e-9, 0.05) == "inconclusive"  # estimate too small
    assert plan.superiority_verdict(0.05, 0.0, 0.1) == "inconclusive"  # interval touches 0
    assert plan.superiority_verdict(0.0, -0.01, np.nextafter(delta, 0)) == "no"  # no relevant difference
    assert plan.superiority_verdict(0.0, -0.01, delta) == "inconclusive"
    assert plan.superiority_verdict(-0.1, -0.2, -0.05) == "no"  # CE higher


# --- the two-level bootstrap ---------------------------------------------------------------------------------

def test_resampling_weights_follow_units_then_clusters() -> None:
    units = np.repeat(["a", "b", "c"], [2, 3, 5])
    clusters = np.array(["a1", "a2", "b1", "b1", "b2", "c1", "c2", "c3", "c4", "c5"])
    boot = TwoLevelBootstrap(units, clusters, n_resamples=500, seed=1)
    w = boot.weights
    # the rows of one cluster share their weight; a unit drawn c times spreads c * (its clusters) draws
    assert np.all(w[:, 2] == w[:, 3])
    per_unit = np.stack([w[:, units == u].sum(1) for u in "abc"], axis=1)
    cluster_counts = {"a": 2, "b": 2, "c": 5}
    draws = per_unit.copy()
    draws[:, 1] = w[:, 2] + w[:, 4]  # unit b: clusters b1 (two rows) and b2 count once each
    assert np.all(draws.sum(1) > 0)
    for j, u in enumerate("abc"):
        assert np.allclose(draws[:, j] % cluster_counts[u], 0)  # a whole number of unit draws
    assert (draws[:, 0] / 2 + draws[:, 1] / 2 + draws[:, 2] / 5 == 3).all()  # three units drawn in all


def test_two_level_interval_matches_a_hand_written_sampler() -> None:
    """Five networks with their own offsets: the interval is as wide as the networks' spread makes it, as a
    plain nested loop over numpy's sampler finds."""
    rng = np.random.default_rng(3)
    offsets = rng.normal(0, 0.05, 5)
    units = np.repeat(np.arange(5), 30)
    values = offsets[units] + rng.normal(0, 0.02, units.size)
    boot = TwoLevelBootstrap(units, np.arange(units.size), n_resamples=4000, seed=5)
    got = boot.interval(weighted_mean(values))
    sampler = np.random.default_rng(7)
    means = []
    for _ in range(4000):
        picked = sampler.integers(0, 5, 5)
        drawn = np.concatenate([sampler.choice(values[units == u], 30) for u in picked])
        means.append(drawn.mean())
    low, high = np.quantile(means, [0.025, 0.975])
    assert got.method == "percentile" and got.estimate == pytest.approx(values.mean())
    assert got.low == pytest.approx(low, abs=0.006) and got.high == pytest.approx(high, abs=0.006)
    cases_only = TwoLevelBootstrap(np.zeros(units.size), np.arange(units.size), n_resamples=4000, seed=5)
    assert cases_only.interval(weighted_mean(values)).half_width < 0.5 * got.half_width  # one network: far narrower


def test_bca_with_one_case_per_unit_matches_scipy() -> None:
    values = np.random.default_rng(2).lognormal(0, 0.6, 40)
    boot = TwoLevelBootstrap(np.arange(40), np.arange(40), n_resamples=6000, seed=1)
    got = boot.interval(weighted_mean(values))
    ref = stats.bootstrap((values,), np.mean, n_resamples=6000, method="BCa", rng=np.random.default_rng(2))
    assert got.method == "BCa"
    assert got.low == pytest.approx(ref.confidence_interval.low, abs=0.02)
    assert got.high == pytest.approx(ref.confidence_interval.high, abs=0.02)


# --- claims tables ---------------------------------------------------------------------------------------

def test_each_loss_is_read_by_its_own_volume() -> None:
    """High uncertainty: SD's thresholded volume +30 % (its soft sum unbiased), CE's soft sum unbiased (its
    thresholded volume -30 %): claim 2 is "yes", and "SD more biased than CE" too."""
    n = 60
    ref = 100.0 + jitter(n, 10.0)
    sd_hard = ref * 1.3 + jitter(n, 1.0, 1)
    cases = network_cases("IS17", "IS17", ref, sd_hard=sd_hard, sd_soft=ref.copy(), ce_soft=ref + jitter(n, 1.0, 2),
                          ce_hard=ref * 0.7)
    table = claims.claims_table(cases, {"IS17": "high"}, group="group", n_resamples=N_BOOT)
    assert row(table, "2", "IS17").verdict == "yes"
    assert row(table, "2", "IS17").estimate == pytest.approx(relative_bias(sd_hard, ref)(np.ones((1, n)))[0])
    assert row(table, "2 vs CE", "IS17").verdict == "yes"
    low = network_cases("BR18", "BR18", ref, sd_hard=ref + jitter(n, 1.0, 3), sd_soft=ref * 1.3,
                        ce_soft=ref + jitter(n, 1.0, 4), ce_hard=ref * 1.3)
    table = claims.claims_table(low, {"BR18": "low"}, group="group", n_resamples=N_BOOT)
    assert row(table, "3", "BR18").verdict == "yes" and row(table, "3 vs CE", "BR18").verdict == "no"


def test_every_yes_and_no_agrees_with_the_interval_in_its_row() -> None:
    rng = np.random.default_rng(11)
    frames, levels = [], {}
    for g in range(8):
        n = 40
        ref = 80.0 + jitter(n, 15.0, g)
        bias = rng.uniform(-0.15, 0.15)
        frames.append(network_cases(f"g{g}", "BR18", ref, sd_hard=ref * (1 + bias) + jitter(n, 3.0, g + 20),
                                    ce_soft=ref * (1 + rng.uniform(-0.1, 0.1)) + jitter(n, 3.0, g + 40),
                                    dice_ce=0.7 + jitter(n, 0.02, g), dice_sd=0.7 + rng.uniform(-0.03, 0.05)
                                    + jitter(n, 0.02, g + 60)))
        levels[f"g{g}"] = "high" if g % 2 else "low"
    table = claims.claims_table(pd.concat(frames), levels, group="group", n_resamples=N_BOOT)
    rules = {"1": lambda r: plan.superiority_verdict(r.estimate, r.ci_low, r.ci_high),
             "2": lambda r: plan.outside_verdict(r.ci_low, r.ci_high),
             "2 vs CE": lambda r: plan.superiority_verdict(r.estimate, r.ci_low, r.ci_high, plan.VOLUME_MARGIN),
             "3": lambda r: plan.inside_verdict(r.ci_low, r.ci_high),
             "3 vs CE": lambda r: plan.outside_verdict(r.ci_low, r.ci_high)}
    assert set(table.verdict) > {"yes", "no"}
    for _, r in table.iterrows():
        assert r.verdict == rules[r.claim](r), r
        assert r.ci_low <= r.estimate <= r.ci_high
        assert r.half_width == pytest.approx((r.ci_high - r.ci_low) / 2)
        if r.verdict == "yes" and r.claim in ("2", "3 vs CE"):
            assert r.ci_low > plan.VOLUME_MARGIN or r.ci_high < -plan.VOLUME_MARGIN
        if r.verdict == "yes" and r.claim == "3":
            assert -plan.VOLUME_MARGIN <= r.ci_low and r.ci_high <= plan.VOLUME_MARGIN


def test_claim1_intervals_are_adjusted_for_their_number() -> None:
    ref = np.full(30, 100.0)
    cases = pd.concat([network_cases(g, "BR18", ref, sd_hard=ref + jitter(30, 1.0, i), ce_soft=ref,
                                     dice_ce=0.7 + jitter(30, 0.02, i), dice_sd=0.7 + jitter(30, 0.02, i + 9))
                       for i, g in enumerate("abcd")])
    table = claims.claims_table(cases, dict.fromkeys("abcd", "low"), group="group", n_resamples=N_BOOT)
    assert set(table.loc[table.claim == "1", "interval"]) == {"percentile 98.75%"}
    assert set(table.loc[table.claim == "3", "interval"]) == {"percentile 95%"}


def test_small_groups_are_underpowered() -> None:
    """Two folds of two cases each, and one network per loss with many cases: both too small to judge."""
    ref = np.full(4, 100.0)
    tiny = network_cases("BR18-sample", "BR18-sample", ref, sd_hard=ref * 1.5, ce_soft=ref * 1.5, networks=2)
    ref = 100.0 + jitter(200, 10.0)
    single = network_cases("LIDC", "LIDC", ref, sd_hard=ref * 1.5, ce_soft=ref, networks=1)
    table = claims.claims_table(pd.concat([tiny, single]), {"BR18-sample": "low", "LIDC": "high"}, group="group",
                                n_resamples=N_BOOT)
    assert set(table.verdict) == {"underpowered"}
    assert set(table.networks) == {"2 / 2", "1 / 1"}
    assert row(table, "2", "LIDC").ci_low > plan.VOLUME_MARGIN  # the interval alone would have said "yes"
    assert "underpowered" in row(table, "3", "BR18-sample").note


def test_lidc_claim1_reads_the_dice_against_a_random_rater() -> None:
    """CE predicts empty maps on the nodules whose majority is empty (majority Dice 1, SD's 0 there); against a
    randomly chosen rater both losses score alike, and that is what claim 1 reads."""
    n = 100
    empty_majority = np.arange(n) % 2 == 0
    ref = np.where(empty_majority, 5.0, 60.0)
    rater = 0.5 + jitter(n, 0.05, 9)
    cases = network_cases("LIDC", "LIDC", ref, sd_hard=ref * 1.2, ce_soft=ref, dice_ce=np.where(empty_majority, 1.0, 0.7),
                          dice_sd=np.where(empty_majority, 0.0, 0.72),
                          extra={"dice_raters": rater})
    cases.loc[cases.loss == "sd", "dice_raters"] += 0.001
    table = claims.claims_table(cases, {"LIDC": "high"}, group="group", n_resamples=N_BOOT)
    got = row(table, "1", "LIDC")
    assert got.estimate == pytest.approx(0.001) and "random" in got.dice
    assert got.verdict == "no" and "no relevant difference" in got["our result"]
    majority = cases.drop(columns="dice_raters")
    assert row(claims.claims_table(majority, {"LIDC": "high"}, group="group", n_resamples=N_BOOT), "1",
               "LIDC").estimate == pytest.approx(-0.49)


def test_rater_dice_is_the_mean_over_raters() -> None:
    a = np.zeros((8, 8), bool)
    a[2:6, 2:6] = True
    b = np.zeros((8, 8), bool)
    b[3:7, 3:7] = True
    raters = np.stack([a, a, b]).astype(np.float32)
    assert rater_dice(a, raters) == pytest.approx((2 + dice(a, b)) / 3)
    assert rater_dice(np.zeros_like(a), np.zeros((2, 8, 8), np.float32)) == 1.0  # empty against empty


def test_unconverged_runs_are_not_tested_unless_the_gate_is_off() -> None:
    ref = 100.0 + jitter(40, 5.0)
    cases = network_cases("BR18", "BR18", ref, sd_hard=ref, ce_soft=ref, converged={"sd": False})
    gated = claims.claims_table(cases, {"BR18": "low"}, group="group", n_resamples=N_BOOT)
    assert set(gated.verdict) == {"not tested"}
    assert "SD fold 0 seed 0: not converged: training loss still falling" in row(gated, "3", "BR18").note
    open_ = claims.claims_table(cases, {"BR18": "low"}, group="group", n_resamples=N_BOOT, gate=False)
    assert row(open_, "3", "BR18").verdict == "yes"


def test_a_bias_that_moves_with_twice_the_steps_is_not_stable() -> None:
    ref = 100.0 + jitter(40, 5.0)
    once = network_cases("BR18", "BR18", ref, sd_hard=ref * 1.01, ce_soft=ref)
    steady = network_cases("BR18", "BR18", ref, sd_hard=ref * 1.02, ce_soft=ref * 0.99)
    moved = network_cases("BR18", "BR18", ref, sd_hard=ref * 1.04, ce_soft=ref)
    for doubled, expected in ((steady, "stable (twice the steps: SD +1.0%, CE -1.0%)"),
                              (moved, "not stable (twice the steps: SD +3.0%, CE +0.0%)")):
        table = claims.claims_table(once, {"BR18": "low"}, group="group", n_resamples=N_BOOT, doubled=doubled)
        assert row(table, "3", "BR18").stability == expected


def test_phantom_groups_get_a_theory_row_with_its_rivals() -> None:
    n = 50
    ref = 100.0 + jitter(n, 10.0)
    theory = ref * 1.2
    cases = network_cases("phantoms", "synthetic", ref, sd_hard=theory + jitter(n, 1.0, 5), ce_soft=ref,
                          extra={"theory_volume": theory, "theory_ce_threshold": ref * 0.7})
    table = claims.claims_table(cases, {"phantoms": "high"}, group="group", n_resamples=N_BOOT)
    assert list(table.claim) == ["1", "2", "2 vs CE", "theory"]
    got = row(table, "theory", "phantoms")
    assert got.verdict == "yes" and got.theory_bias == pytest.approx(0.2)
    assert got.rivals == "E[V] (0 %) excluded; CE at 0.5 (-30.0%) excluded"
    far = network_cases("phantoms", "synthetic", ref, sd_hard=ref + jitter(n, 1.0, 6), ce_soft=ref,
                        extra={"theory_volume": theory, "theory_ce_threshold": ref * 0.7})
    got = row(claims.claims_table(far, {"phantoms": "high"}, group="group", n_resamples=N_BOOT), "theory", "phantoms")
    assert got.verdict == "no" and got.rivals.startswith("E[V] (0 %) not excluded")


def test_exploratory_groups_get_statistics_but_no_verdict() -> None:
    ref = 100.0 + jitter(30, 5.0)
    names = ["book (cpu): LIDC, all nodules", "book (cpu): LIDC, 4 raters agree"]
    cases = pd.concat([network_cases(g, "LIDC", ref, sd_hard=ref * 1.2, ce_soft=ref) for g in names])
    levels = {names[0]: "high", names[1]: "low"}
    reasons = claims.exploratory_groups(levels)
    assert list(reasons) == [names[1]] and "selected on the labels" in reasons[names[1]]
    table = claims.claims_table(cases, {g: v for g, v in levels.items() if g not in reasons}, group="group",
                                n_resamples=N_BOOT)
    assert set(table.group) == {names[0]}
    explore = claims.exploratory_table(cases, levels, reasons, group="group", n_resamples=N_BOOT)
    assert set(explore.group) == {names[1]} and "verdict" not in explore.columns
    assert row(explore, "3", names[1]).estimate == pytest.approx(0.2)
    with pytest.raises(ValueError, match="'low' or 'high'"):
        claims.claims_table(cases, {names[0]: "medium"}, group="group")


def test_short_labels() -> None:
    assert claims.short_label("book (cpu): synthetic, independent noise, sigma/R = 0.9") == \
        "book (cpu): phantoms, indep., σ/R 0.9"


# --- grouping ------------------------------------------------------------------------------------------------

def test_claim_groups_leave_out_sensitivity_runs() -> None:
    ref = np.full(4, 50.0)
    core = network_cases("x", "LIDC", ref, sd_hard=ref * 1.1, ce_soft=ref)
    batch = core[core.loss == "sd"].assign(**{"loss_options.reduction": "batch", "pred_volume_hard": 80.0})
    grouped, levels = claims.claim_groups(pd.concat([core, batch], ignore_index=True))
    assert levels == {"LIDC, all nodules": "high"}
    assert len(grouped) == len(core) and (grouped.pred_volume_hard < 60.0).all()


def test_runs_with_fresh_test_cases_are_judged_on_them_alone() -> None:
    """A phantom run scored on validation and test phantoms enters the verdicts with its test rows only."""
    n_val, n_test = 6, 20
    ref = np.full(n_val + n_test, 100.0)
    sd_hard = np.r_[np.full(n_val, 160.0), np.full(n_test, 101.0)]  # validation rows far off, test close
    cases = network_cases("x", "synthetic", ref, sd_hard=sd_hard, ce_soft=ref, networks=1)
    cases["split"] = np.tile(["validation"] * n_val + ["test"] * n_test, 2)
    cases["task_options.sigma"], cases["task_options.radius"] = 3.6, 4.0
    cases["task_options.noise"] = "independent"
    grouped, levels = claims.claim_groups(cases)
    assert levels == {"synthetic, independent noise, sigma/R = 0.9": "high"}
    assert (grouped.split == "test").all() and len(grouped) == 2 * n_test
    # a run without test rows keeps its validation rows; runs without a run_dir are told apart by their keys
    stored = network_cases("BR18-sample", "BR18-sample", ref[:n_val], sd_hard=ref[:n_val] * 1.02, ce_soft=ref[:n_val],
                           networks=1, converged={"sd": False}).assign(split="validation", run_dir=np.nan,
                                                                       setting="noise=independent, sigma=3.6")
    assert len(claims.verdict_cases(pd.concat([cases, stored]))) == 2 * n_test + 2 * n_val
    assert claims.unconverged_runs(stored) == [
        "SD fold 0 seed 0 (noise=independent, sigma=3.6): not converged: training loss still falling"]


def test_attach_theory_volumes_regenerates_the_phantoms_and_caches_them(tmp_path) -> None:
    options = {**synthetic_options(radius=3.0, sigma=2.4, noise="independent", seed=4), "n_cases": 3, "size": 24}
    options.pop("n_test", None)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"task": "synthetic", "loss": "sd", "fold": 0, "seed": 0,
                                                         "profile": "smoke", "task_options": {**options, "n_test": 2}}))
    phantoms = make_phantoms(**options)
    fresh = make_phantoms(**{**options, "n_cases": 2}, stream="test")  # the run's fresh test phantoms
    cases = pd.DataFrame({"task": ["synthetic"] * 3 + ["LIDC"], "run_dir": [str(run_dir)] * 3 + ["x"],
                          "case_id": [phantoms[0].id, phantoms[2].id, fresh[1].id, "n1"]})
    cache = tmp_path / "cache"
    out = phantom_theory.attach_theory_volumes(cases, caches=[cache])
    for i, phantom in enumerate((phantoms[0], phantoms[2], fresh[1])):
        assert out.theory_volume[i] == dice_optimal_mask(phantom.marginals.astype(float)).sum()
        assert out.theory_ce_threshold[i] == np.count_nonzero(phantom.marginals > 0.5)
    assert np.isnan(out.theory_volume[3])
    assert len(list(cache.glob("*.csv"))) == 1
    again = phantom_theory.attach_theory_volumes(cases, caches=[cache])  # read back, not recomputed
    pd.testing.assert_frame_equal(again, out)
    with pytest.raises(ValueError, match="not among the phantoms"):
        phantom_theory.attach_theory_volumes(cases.assign(case_id=["nope", "nope", "nope", "n1"]))
