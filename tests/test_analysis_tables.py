"""Tests of volbias.analysis.tables against independent computations (numpy by hand, scipy, closed forms)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from volbias.analysis import tables


def make_cases(task: str = "synthetic", losses: tuple[str, ...] = ("ce", "sd"), n: int = 12,
               seed: int = 0, sd_scale: float = 1.3) -> pd.DataFrame:
    """A cases table with the contract's columns: SD over-segments by ``sd_scale``, CE is unbiased."""
    rng = np.random.default_rng(seed)
    expected = rng.uniform(50, 150, n)
    rows = []
    for loss in losses:
        scale = sd_scale if loss == "sd" else 1.0
        soft = expected * scale + rng.normal(0, 3, n)
        for i in range(n):
            rows.append({
                "task": task, "loss": loss, "fold": i % 5, "seed": 0, "case_id": f"case_{i}",
                "dice": float(rng.uniform(0.6, 0.9)) + (0.05 if loss == "sd" else 0.0),
                "true_volume": expected[i] + rng.normal(0, 2), "expected_volume": expected[i],
                "pred_volume_soft": soft[i], "pred_volume_hard": soft[i] + rng.normal(0, 2),
                "voxel_volume_ml": 1.0,
            })
    return pd.DataFrame(rows)


def test_add_volume_errors_by_hand() -> None:
    cases = make_cases(n=5)
    cases.loc[0, "expected_volume"] = 0.0
    out = tables.add_volume_errors(cases)
    for i in range(1, len(cases)):
        row = cases.iloc[i]
        assert out["err_soft"].iloc[i] == pytest.approx(row.pred_volume_soft - row.expected_volume)
        assert out["abs_err_hard"].iloc[i] == pytest.approx(abs(row.pred_volume_hard - row.expected_volume))
        assert out["rel_err_soft"].iloc[i] == pytest.approx(
            (row.pred_volume_soft - row.expected_volume) / row.expected_volume)
    assert np.isnan(out["rel_err_soft"].iloc[0])
    with pytest.raises(ValueError, match="reference"):
        tables.add_volume_errors(cases, reference="nope")


def test_bootstrap_ci_of_mean_matches_normal_closed_form() -> None:
    x = np.random.default_rng(1).normal(3.0, 2.0, 400)
    low, high = tables.bootstrap_ci(x, n_resamples=4000, seed=3)
    half = 1.959964 * x.std(ddof=1) / np.sqrt(x.size)
    assert low == pytest.approx(x.mean() - half, abs=0.15 * half)
    assert high == pytest.approx(x.mean() + half, abs=0.15 * half)
    assert all(np.isnan(tables.bootstrap_ci([1.0])))
    assert tables.bootstrap_ci([2.0, 2.0, 2.0]) == (2.0, 2.0)


def test_relative_bias_ci_matches_hand_written_paired_bootstrap() -> None:
    rng = np.random.default_rng(2)
    ref = rng.uniform(10, 100, 60)
    pred = 1.2 * ref + rng.normal(0, 5, 60)
    assert tables.relative_bias(pred, ref) == pytest.approx((pred - ref).sum() / ref.sum())
    low, high = tables.relative_bias_ci(pred, ref, n_resamples=4000, seed=0)
    idx = np.random.default_rng(9).integers(0, 60, (4000, 60))
    boot = (pred[idx] - ref[idx]).sum(1) / ref[idx].sum(1)
    assert low == pytest.approx(np.quantile(boot, 0.025), abs=0.01)
    assert high == pytest.approx(np.quantile(boot, 0.975), abs=0.01)


def test_summarize_matches_groupby() -> None:
    cases = pd.concat([make_cases("A"), make_cases("B", seed=1)], ignore_index=True)
    summary = tables.summarize(cases, metrics=("dice", "err_soft"), n_resamples=500)
    assert len(summary) == 2 * 2 * 2
    row = summary[(summary.task == "B") & (summary.loss == "sd") & (summary.metric == "err_soft")].iloc[0]
    sub = cases[(cases.task == "B") & (cases.loss == "sd")]
    err = sub.pred_volume_soft - sub.expected_volume
    assert row["mean"] == pytest.approx(err.mean())
    assert row["sd"] == pytest.approx(err.std(ddof=1))
    assert row["median"] == pytest.approx(err.median())
    assert row["ci_low"] < row["mean"] < row["ci_high"]
    assert row["n"] == len(sub)
    with pytest.raises(ValueError, match="nope"):
        tables.summarize(cases, metrics=("nope",))


def test_volume_bias_table_by_hand() -> None:
    cases = make_cases(n=30, sd_scale=1.5)
    table = tables.volume_bias_table(cases, n_resamples=500).set_index("loss")
    for loss in ("ce", "sd"):
        sub = cases[cases.loss == loss]
        expected = (sub.pred_volume_hard - sub.expected_volume).sum() / sub.expected_volume.sum()
        assert table.loc[loss, "bias_hard"] == pytest.approx(expected)
        assert table.loc[loss, "bias_hard_ci_low"] < expected < table.loc[loss, "bias_hard_ci_high"]
    assert table.loc["sd", "bias_soft"] == pytest.approx(0.5, abs=0.05)
    assert abs(table.loc["ce", "bias_soft"]) < 0.05


def test_paired_test_pairs_cases_and_matches_scipy() -> None:
    cases = make_cases(n=15)
    # shuffle rows and drop one SD case: pairing must follow (fold, seed, case_id), not row order
    shuffled = cases.sample(frac=1.0, random_state=0)
    shuffled = shuffled[~((shuffled.loss == "sd") & (shuffled.case_id == "case_3"))]
    result = tables.paired_test(shuffled, "dice").iloc[0]
    ce = cases[(cases.loss == "ce") & (cases.case_id != "case_3")].set_index("case_id").dice
    sd = cases[(cases.loss == "sd") & (cases.case_id != "case_3")].set_index("case_id").dice
    diff = (sd - ce.loc[sd.index]).to_numpy()
    ref = stats.wilcoxon(diff)
    assert result.n_pairs == 14
    assert result.mean_diff == pytest.approx(diff.mean())
    assert result.p_value == pytest.approx(ref.pvalue)
    assert result.wilcoxon_stat == pytest.approx(ref.statistic)
    assert result.diff_ci_low < diff.mean() < result.diff_ci_high


def test_paired_test_volume_metric_and_duplicates() -> None:
    cases = make_cases(n=10)
    result = tables.paired_test(cases, "abs_err_soft").iloc[0]
    assert result.mean_diff > 0  # SD over-segments by 30 %, CE is unbiased
    doubled = pd.concat([cases, cases.assign(task="synthetic")], ignore_index=True)
    with pytest.raises(ValueError, match="not unique"):
        tables.paired_test(doubled, "dice")
    equal = cases.copy()
    equal.loc[equal.loss == "sd", "dice"] = equal.loc[equal.loss == "ce", "dice"].to_numpy()
    assert np.isnan(tables.paired_test(equal, "dice").iloc[0].p_value)
