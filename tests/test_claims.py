"""Verdicts of volbias.analysis.claims on hand-built case tables (no training).

Every interval the table reports is recomputed here with numpy's own sampler (a hand-written paired
bootstrap), and the verdict rules are checked against the intervals: equivalence for claim 3 and for the
phantoms against the theory, the paired |SD| - |CE| contrast for claim 2, Holm's correction for claim 1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from volbias.analysis import claims, phantom_theory, tables
from volbias.analysis.book_runs import synthetic_options
from volbias.data import make_phantoms
from volbias.theory import dice_optimal_mask

N_BOOT = 4000


def group_cases(group: str, ref: np.ndarray, sd_hard: np.ndarray, ce_soft: np.ndarray, task: str | None = None,
                dice_diff: np.ndarray | None = None, converged: dict[str, bool] | None = None,
                theory: np.ndarray | None = None) -> pd.DataFrame:
    """CE and SD rows of the same cases: SD's thresholded and CE's soft volumes as given, converged runs.

    SD's Dice is CE's plus ``dice_diff`` (default 0.01 everywhere)."""
    dice_diff = np.full(len(ref), 0.01) if dice_diff is None else dice_diff
    converged = converged or {}
    rows = []
    for loss in ("ce", "sd"):
        ok = converged.get(loss, True)
        for i, expected in enumerate(ref):
            rows.append({
                "task": task or group, "group": group, "loss": loss, "fold": 0, "seed": 0, "case_id": f"c{i:03d}",
                "dice": 0.7 + 0.1 * np.sin(i) + (dice_diff[i] if loss == "sd" and dice_diff is not None else 0.0),
                "true_volume": expected, "expected_volume": expected,
                "pred_volume_soft": ce_soft[i] if loss == "ce" else sd_hard[i],
                "pred_volume_hard": sd_hard[i] if loss == "sd" else ce_soft[i], "voxel_volume_ml": 1.0,
                "run_dir": f"/runs/{group}/{loss}", "setting": "noise=independent, sigma=3.6",
                "converged": ok, "convergence": ("converged: training loss changed 0.4 % over the last fifth"
                                                 if ok else "not converged: training loss still falling "
                                                            "(6.1 % over the last fifth)"),
                **({"task_options.noise": "independent"} if task == "synthetic" else {}),
                **({"theory_volume": theory[i]} if theory is not None else {}),
            })
    return pd.DataFrame(rows)


def spread(n: int, half: float) -> np.ndarray:
    """n deterministic values with mean 0 and standard deviation ``half``."""
    x = np.linspace(-1.0, 1.0, n)
    return half * x / x.std()


def bootstrap(statistic, arrays: list[np.ndarray], seed: int = 11) -> tuple[float, float]:
    """Percentile 95 % interval of ``statistic`` over cases resampled with numpy's sampler (all arrays together)."""
    idx = np.random.default_rng(seed).integers(0, arrays[0].size, (N_BOOT, arrays[0].size))
    values = statistic(*(a[idx] for a in arrays))
    return float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))


def rel_bias(pred: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return (pred - ref).sum(-1) / ref.sum(-1)


def row(table: pd.DataFrame, claim: str, group: str) -> pd.Series:
    return table[(table["claim"] == claim) & (table["group"] == group)].iloc[0]


@pytest.mark.parametrize("half_width, verdict", [(0.12, "inconclusive"), (0.01, "yes")])
def test_claim3_is_an_equivalence_test(half_width: float, verdict: str) -> None:
    """+2 % bias: a CI of +-12 % cannot show that the bias is small; a CI of +-1 % can."""
    n = 40
    ref = np.full(n, 100.0)
    # the bootstrap CI of a mean is about +-1.96 sd / sqrt(n); choose the per-case sd for the wanted width
    sd_hard = 102.0 + spread(n, half_width * 100.0 * np.sqrt(n) / 1.96)
    cases = group_cases("BR18", ref, sd_hard, ref.copy())
    table = claims.claims_table(cases, {"BR18": "low"}, group="group", n_resamples=N_BOOT)
    got = row(table, "3", "BR18")
    low, high = bootstrap(rel_bias, [sd_hard, ref])
    assert got.estimate == pytest.approx(0.02)
    assert (got.ci_low, got.ci_high) == pytest.approx((low, high), abs=0.15 * half_width)
    assert (high - low) / 2 == pytest.approx(half_width, rel=0.15)
    assert got.n == n and got.verdict == verdict


def test_claim3_no_when_the_interval_lies_outside_the_tolerance() -> None:
    ref = np.full(30, 100.0)
    cases = group_cases("BR18", ref, 120.0 + spread(30, 3.0), ref.copy())
    got = row(claims.claims_table(cases, {"BR18": "low"}, group="group"), "3", "BR18")
    assert got.ci_low > 0.05 and got.verdict == "no"


def high_group(sd_noise: float, ce_noise: float, sd_level: float = 109.0, ce_level: float = 105.0) -> pd.DataFrame:
    n = 30
    ref = np.full(n, 100.0)
    order = np.random.default_rng(5).permutation(n)  # CE's case errors are not aligned with SD's
    return group_cases("IS17", ref, sd_level + spread(n, sd_noise), ce_level + spread(n, ce_noise)[order])


def test_claim2_point_estimate_alone_is_inconclusive() -> None:
    """|SD| > |CE| as point estimates, SD's CI away from 0 and outside the tolerance, paired CI across 0."""
    cases = high_group(sd_noise=9.0, ce_noise=9.0)
    got = row(claims.claims_table(cases, {"IS17": "high"}, group="group", n_resamples=N_BOOT), "2", "IS17")
    sd = cases[cases.loss == "sd"].pred_volume_hard.to_numpy()
    ce = cases[cases.loss == "ce"].pred_volume_soft.to_numpy()
    ref = cases[cases.loss == "sd"].expected_volume.to_numpy()
    contrast = lambda a, b, r: np.abs(rel_bias(a, r)) - np.abs(rel_bias(b, r))  # noqa: E731
    low, high = bootstrap(contrast, [sd, ce, ref])
    assert got.estimate == pytest.approx(0.04) and got.estimate > 0
    assert (got.ci_low, got.ci_high) == pytest.approx((low, high), abs=0.006)
    assert got.ci_low < 0 < got.ci_high
    assert got.sd_bias_ci_low > 0.05  # SD's own interval excludes 0 and the tolerance band
    assert got.verdict == "inconclusive"


def test_claim2_yes_and_no() -> None:
    sharp = row(claims.claims_table(high_group(sd_noise=2.0, ce_noise=2.0), {"IS17": "high"}, group="group"),
                "2", "IS17")
    assert sharp.ci_low > 0 and sharp.verdict == "yes"
    # CE's soft volume is the more biased one: the contrast's interval lies below 0
    reversed_ = row(claims.claims_table(high_group(2.0, 2.0, sd_level=104.0, ce_level=112.0), {"IS17": "high"},
                                        group="group"), "2", "IS17")
    assert reversed_.ci_high < 0 and reversed_.verdict == "no"
    # SD's bias is significant but negligible (inside +-5 %): no volume bias worth the name
    small = row(claims.claims_table(high_group(1.0, 1.0, sd_level=103.0, ce_level=100.0), {"IS17": "high"},
                                    group="group"), "2", "IS17")
    assert small.sd_bias_ci_low > 0 and small.sd_bias_ci_high < 0.05 and small.verdict == "no"


def holm_by_hand(p: list[float]) -> list[float]:
    """Holm's adjusted p-values straight from the definition: max over the smaller ones of (m - j + 1) p_(j)."""
    m = len(p)
    ranked = sorted(range(m), key=lambda i: p[i])
    out = [0.0] * m
    for position, i in enumerate(ranked):
        out[i] = max(min(1.0, (m - j) * p[ranked[j]]) for j in range(position + 1))
    return out


def test_holm_textbook_example() -> None:
    # m = 4: 0.005 * 4 = 0.02, 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 = 0.04 -> raised to 0.06 (monotone)
    np.testing.assert_allclose(tables.holm_adjust([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])
    adjusted = tables.holm_adjust([0.2, np.nan, 0.6, 0.001])  # NaN is not part of the family (m = 3)
    np.testing.assert_allclose(adjusted[[0, 2, 3]], [0.4, 0.6, 0.003])
    assert np.isnan(adjusted[1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        tables.holm_adjust([0.5, 1.5])


def signed_ranks(n: int, negative: list[int], scale: float = 0.001) -> np.ndarray:
    """Dice differences 1..n (times ``scale``) with the given ranks negative: a known Wilcoxon statistic."""
    diff = np.arange(1.0, n + 1) * scale
    diff[[k - 1 for k in negative]] *= -1
    return diff


def test_claim1_uses_holm_corrected_p_values() -> None:
    ref = np.full(12, 100.0)
    # exact two-sided Wilcoxon p (n = 12): all positive 2/4096; ranks 1, 2, 3, 5 negative 0.027; 3-6 negative 0.11
    diffs = {"A": signed_ranks(12, []), "B": signed_ranks(12, [1, 2, 3, 5]), "C": -signed_ranks(12, []),
             "D": signed_ranks(12, [3, 4, 5, 6])}
    cases = pd.concat([group_cases(g, ref, ref * 1.01, ref.copy(), dice_diff=d) for g, d in diffs.items()])
    table = claims.claims_table(cases, dict.fromkeys(diffs, "low"), group="group")
    first = table[table.claim == "1"].set_index("group")
    assert first.p_value.to_dict() == pytest.approx({"A": 2 / 4096, "B": 0.02685546875, "C": 2 / 4096,
                                                     "D": 0.10986328125})
    np.testing.assert_allclose(first.p_holm, holm_by_hand(list(first.p_value)))
    # B is significant on its own p-value (0.027) but not after the correction (2 x 0.027 = 0.054)
    assert first.p_holm["B"] == pytest.approx(2 * 0.02685546875)
    assert first.verdict.to_dict() == {"A": "yes", "B": "inconclusive", "C": "no", "D": "inconclusive"}
    assert first.estimate["A"] == pytest.approx(0.0065)


def test_unconverged_run_makes_its_group_not_tested() -> None:
    ref = np.full(10, 100.0)
    cases = pd.concat([
        group_cases("IS17", ref, ref * 1.4, ref.copy(), converged={"sd": False}),
        group_cases("BR18", ref, ref * 1.0, ref.copy()),
    ])
    table = claims.claims_table(cases, {"IS17": "high", "BR18": "low"}, group="group")
    gated = table[table.group == "IS17"]
    assert set(gated.verdict) == {"not tested"} and len(gated) == 2
    assert gated.note.str.contains("SD fold 0 seed 0 (noise=independent, sigma=3.6): not converged: "
                                   "training loss still falling", regex=False).all()
    assert not gated.note.str.contains("CE fold").any()
    assert np.isfinite(gated.ci_low).all()  # the intervals are still reported
    assert "not tested" not in set(table[table.group == "BR18"].verdict)
    unrecorded = cases.drop(columns=["converged", "convergence"])
    assert claims.unconverged_runs(unrecorded[unrecorded.group == "BR18"]) == [
        "CE fold 0 seed 0 (noise=independent, sigma=3.6): no convergence record",
        "SD fold 0 seed 0 (noise=independent, sigma=3.6): no convergence record"]


def test_phantom_groups_are_scored_against_the_theory() -> None:
    n = 24
    ref = np.linspace(40, 80, n)
    theory = ref * 1.30
    agree = group_cases("phantoms", ref, theory + spread(n, 0.5), ref.copy(), task="synthetic", theory=theory)
    got = row(claims.claims_table(agree, {"phantoms": "high"}, group="group"), "theory", "phantoms")
    assert set(claims.claims_table(agree, {"phantoms": "high"}, group="group").claim) == {"1", "theory"}
    assert got.theory_bias == pytest.approx(0.30)
    assert got.estimate == pytest.approx(((theory + spread(n, 0.5)) - theory).sum() / ref.sum())
    assert got.verdict == "yes"
    # measured bias three times the theory's: wholly outside the tolerance around the prediction
    far = group_cases("phantoms", ref, ref * 1.9 + spread(n, 0.5), ref.copy(), task="synthetic", theory=theory)
    assert row(claims.claims_table(far, {"phantoms": "high"}, group="group"), "theory", "phantoms").verdict == "no"
    missing = agree.drop(columns="theory_volume")
    assert row(claims.claims_table(missing, {"phantoms": "high"}, group="group"), "theory",
               "phantoms").verdict == "not tested"


def test_attach_theory_volumes_regenerates_the_phantoms(tmp_path) -> None:
    options = {**synthetic_options(radius=3.0, sigma=2.4, noise="independent", seed=4), "n_cases": 3, "size": 24}
    options.pop("n_test", None)  # the config below asks for fresh test phantoms; make_phantoms draws them apart
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"task": "synthetic", "loss": "sd", "fold": 0, "seed": 0,
                                                         "profile": "smoke", "task_options": {**options, "n_test": 2}}))
    phantoms = make_phantoms(**options)
    fresh = make_phantoms(**{**options, "n_cases": 2}, stream="test")  # the run's fresh test phantoms
    cases = pd.DataFrame({"task": ["synthetic"] * 3 + ["LIDC"], "run_dir": [str(run_dir)] * 3 + ["x"],
                          "case_id": [phantoms[0].id, phantoms[2].id, fresh[1].id, "n1"]})
    out = phantom_theory.attach_theory_volumes(cases)
    for i, phantom in enumerate((phantoms[0], phantoms[2], fresh[1])):
        assert out.theory_volume[i] == dice_optimal_mask(phantom.marginals.astype(float)).sum()
    assert np.isnan(out.theory_volume[3])
    with pytest.raises(ValueError, match="not among the phantoms"):
        phantom_theory.attach_theory_volumes(cases.assign(case_id=["nope", "nope", "nope", "n1"]))


def test_exploratory_groups_get_statistics_but_no_verdict() -> None:
    ref = np.full(10, 100.0)
    names = ["book (cpu): LIDC, all nodules", "book (cpu): LIDC, 4 raters agree"]
    cases = pd.concat([group_cases(g, ref, ref * 1.2, ref.copy(), task="LIDC") for g in names])
    levels = {names[0]: "high", names[1]: "low"}
    reasons = claims.exploratory_groups(levels)
    assert list(reasons) == [names[1]] and "selected on the labels" in reasons[names[1]]
    confirmatory = {g: v for g, v in levels.items() if g not in reasons}
    table = claims.claims_table(cases, confirmatory, group="group")
    assert set(table.group) == {names[0]}
    explore = claims.exploratory_table(cases, levels, reasons, group="group")
    assert set(explore.group) == {names[1]} and "verdict" not in explore.columns
    assert "p_uncorrected" in explore.columns and "p_holm" not in explore.columns
    assert row(explore, "3", names[1]).estimate == pytest.approx(0.2)
    with pytest.raises(ValueError, match="'low' or 'high'"):
        claims.claims_table(cases, {names[0]: "medium"}, group="group")


def test_claim_groups_leave_out_sensitivity_runs() -> None:
    ref = np.full(4, 50.0)
    core = group_cases("x", ref, ref * 1.1, ref.copy(), task="LIDC")
    batch = core[core.loss == "sd"].assign(**{"loss_options.reduction": "batch", "pred_volume_hard": 80.0})
    grouped, levels = claims.claim_groups(pd.concat([core, batch], ignore_index=True))
    assert levels == {"LIDC, all nodules": "high"}
    assert len(grouped) == len(core) and (grouped.pred_volume_hard < 60.0).all()
    table = claims.claims_table(grouped, levels, group="group")  # one SD run per case: pairs are unique
    assert row(table, "2", "LIDC, all nodules").estimate == pytest.approx(0.1)


def test_runs_with_fresh_test_cases_are_judged_on_them_alone() -> None:
    """A phantom run scored on validation and test phantoms enters the verdicts with its test rows only."""
    n_val, n_test = 6, 20
    ref = np.full(n_val + n_test, 100.0)
    sd_hard = np.r_[np.full(n_val, 160.0), 101.0 + spread(n_test, 0.5)]  # validation rows far off, test close
    cases = group_cases("x", ref, sd_hard, ref.copy(), task="synthetic")
    cases["split"] = np.tile(["validation"] * n_val + ["test"] * n_test, 2)
    cases["task_options.sigma"], cases["task_options.radius"] = 3.6, 4.0
    grouped, levels = claims.claim_groups(cases)
    assert levels == {"synthetic, independent noise, sigma/R = 0.9": "high"}
    assert (grouped.split == "test").all() and len(grouped) == 2 * n_test
    table = claims.claims_table(grouped.assign(theory_volume=100.0), levels, group="group")
    got = row(table, "theory", "synthetic, independent noise, sigma/R = 0.9")
    assert got.n == n_test and got.sd_bias == pytest.approx(0.01)
    # a run without test rows keeps its validation rows; runs without a run_dir are told apart by their keys
    stored = group_cases("BR18-sample", ref[:n_val], ref[:n_val] * 1.02, ref[:n_val].copy(), task="BR18-sample",
                         converged={"sd": False}).assign(split="validation", run_dir=np.nan)
    assert len(claims.verdict_cases(pd.concat([cases, stored]))) == 2 * n_test + 2 * n_val
    assert claims.unconverged_runs(stored) == [
        "SD fold 0 seed 0 (noise=independent, sigma=3.6): not converged: training loss still falling "
        "(6.1 % over the last fifth)"]
