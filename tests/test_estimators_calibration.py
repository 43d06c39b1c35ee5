"""Volume-level calibration rows, the phantoms' no-network ceiling, the two-stage ranking and the theory lines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from volbias.estimators.volume_calibration import calibration_over_seeds, crossfit_r2, volume_calibration


def _table(estimate: np.ndarray, reference: np.ndarray, groups: np.ndarray, seed: int = 0,
           estimator: str = "soft sum") -> pd.DataFrame:
    return pd.DataFrame({"task": "toy", "setting": "default", "loss": "ce", "seed": seed, "estimator": estimator,
                         "volume": estimate, "reference_volume": reference, "fit_group": groups})


def test_calibration_rows_on_an_exact_line() -> None:
    estimate = np.arange(1.0, 11.0)
    reference = 2.0 + 3.0 * estimate  # slope 3, intercept 2, the estimate resolves every case
    (row,) = volume_calibration(_table(estimate, reference, np.arange(10) % 3)).to_dict("records")
    assert (row["slope"], row["intercept"]) == (pytest.approx(3.0), pytest.approx(2.0))
    assert row["r2_heldout"] == pytest.approx(1.0)  # a line fitted on any other cases is the same line
    assert row["spread"] == pytest.approx(1 / 3) and row["corr"] == pytest.approx(1.0)
    # as it stands the estimate is far off: 1 - sum (ref - est)^2 / sum (ref - mean)^2, by hand
    sst = ((reference - reference.mean()) ** 2).sum()
    assert row["r2"] == pytest.approx(1 - ((2 + 2 * estimate) ** 2).sum() / sst)
    assert row["n"] == 10


def test_calibration_rows_on_a_noisy_table_against_numpy() -> None:
    rng = np.random.default_rng(0)
    estimate = rng.uniform(50, 150, 40)
    reference = 10.0 + 0.8 * estimate + rng.normal(0, 12, 40)
    groups = np.arange(40) % 4
    (row,) = volume_calibration(_table(estimate, reference, groups)).to_dict("records")
    slope, intercept = np.polyfit(estimate, reference, 1)
    assert (row["slope"], row["intercept"]) == (pytest.approx(slope), pytest.approx(intercept))
    # held-out R^2 by hand: each group predicted by the line of the other three
    prediction = np.empty(40)
    for g in range(4):
        b, a = np.polyfit(estimate[groups != g], reference[groups != g], 1)
        prediction[groups == g] = a + b * estimate[groups == g]
    sse, sst = ((reference - prediction) ** 2).sum(), ((reference - reference.mean()) ** 2).sum()
    assert row["r2_heldout"] == pytest.approx(1 - sse / sst)
    in_sample = np.corrcoef(estimate, reference)[0, 1] ** 2
    assert row["r2_heldout"] < in_sample  # held out, a line explains less than on its own cases
    assert row["spread"] == pytest.approx(estimate.std(ddof=1) / reference.std(ddof=1))
    # the shrinkage of a least-squares line: its errors correlate with the reference at -sqrt(1 - R^2)
    fitted = intercept + slope * estimate
    assert np.corrcoef(fitted - reference, reference)[0, 1] == pytest.approx(-np.sqrt(1 - in_sample))
    assert np.std(fitted, ddof=1) / np.std(reference, ddof=1) == pytest.approx(np.sqrt(in_sample))


def test_a_constant_estimate_explains_nothing_and_lines_are_clipped_at_zero() -> None:
    reference = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    groups = np.arange(6) % 2
    # a constant estimate: each group is predicted by the mean of the other, R^2 = 1 - sse / sst
    expected = 1 - (((reference[groups == 0] - 4.0) ** 2).sum() + ((reference[groups == 1] - 3.0) ** 2).sum()) / 17.5
    assert crossfit_r2(np.zeros(6), reference, groups) == pytest.approx(expected)
    # a falling line predicts negative volumes for large estimates; they are clipped to 0
    estimate = np.array([1.0, 1.0, 2.0, 2.0, 9.0, 9.0])
    ref = np.array([6.0, 6.0, 4.0, 4.0, 0.5, 0.5])
    got = crossfit_r2(estimate, ref, np.array([0, 1, 0, 1, 0, 1]))
    clipped = []
    for g in (0, 1):
        mask = np.array([0, 1, 0, 1, 0, 1]) == g
        b, a = np.polyfit(estimate[~mask], ref[~mask], 1)
        clipped.append(np.maximum(0, a + b * estimate[mask]))
    prediction = np.empty(6)
    prediction[[0, 2, 4]], prediction[[1, 3, 5]] = clipped
    assert got == pytest.approx(1 - ((ref - prediction) ** 2).sum() / ((ref - ref.mean()) ** 2).sum())


def test_calibration_over_seeds_gives_the_seed_spread() -> None:
    rng = np.random.default_rng(1)
    tables = []
    for seed in range(3):
        estimate = rng.uniform(0, 10, 20)
        tables.append(_table(estimate, estimate * (1 + seed) + rng.normal(0, 1, 20), np.arange(20) % 2, seed))
    per_seed = volume_calibration(pd.concat(tables))
    (row,) = calibration_over_seeds(per_seed).to_dict("records")
    assert row["slope"] == pytest.approx(per_seed.slope.mean())
    assert (row["slope_min"], row["slope_max"]) == (per_seed.slope.min(), per_seed.slope.max())
    assert row["n_seeds"] == 3 and row["n"] == 60


def test_the_image_sum_is_an_unbiased_volume_with_the_noise_of_the_image() -> None:
    from volbias.data.synthetic import make_phantoms
    from volbias.estimators.ceiling import CEILING_LOSS, ceiling_rows, image_sum_volume
    from volbias.estimators.maps import HeldOutMap

    cases = make_phantoms(dims=2, size=54, radius=4.0, sigma=3.6, n_cases=200, n_raters=1, seed=3)
    err = np.array([image_sum_volume(c) - c.expected_volume for c in cases])
    sd = 0.1 * 54  # image noise 0.1 on 54 x 54 independent pixels
    assert abs(err.mean()) < 3 * sd / np.sqrt(err.size)
    assert err.std(ddof=1) == pytest.approx(sd, rel=0.15)
    # the ceiling rows: one per phantom of the comparison, in its layout, with R^2 near 1 on these phantoms;
    # a second seed draws other phantoms under the same case ids, and each row reads its own seed's image
    other = make_phantoms(dims=2, size=54, radius=4.0, sigma=3.6, n_cases=200, n_raters=1, seed=5)
    maps = [HeldOutMap("synthetic", "s", loss, seed, 0, c, c.marginals.astype(float))
            for loss in ("ce", "sd") for seed, group in ((0, cases), (1, other)) for c in group]
    comparison = pd.DataFrame([{"task": "synthetic", "setting": "s", "loss": m.loss, "seed": m.seed, "fold": 0,
                                "case_id": m.case.id, "estimator": "soft sum", "reference_volume": m.case.expected_volume,
                                "fit_group": int(m.case.id[-3:]) % 5, "volume": 0.0} for m in maps])
    rows = ceiling_rows(comparison, maps)
    assert len(rows) == 2 * len(cases) and set(rows.loss) == {CEILING_LOSS}
    np.testing.assert_allclose(rows[rows.seed == 0].err, err, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(rows[rows.seed == 1].err, [image_sum_volume(c) - c.expected_volume for c in other],
                               rtol=1e-9, atol=1e-9)
    rows = rows[rows.seed == 0]
    (calibration,) = volume_calibration(rows).to_dict("records")
    ref = np.array([c.expected_volume for c in cases])
    assert calibration["r2"] == pytest.approx(1 - (err**2).sum() / ((ref - ref.mean()) ** 2).sum())
    assert calibration["r2"] > 0.95


def _ranking_frame(means: dict[str, float], n_replicates: int, n_cases: int, rng: np.random.Generator,
                   between: float = 0.0, within: float = 1.0) -> pd.DataFrame:
    rows = []
    for r in range(n_replicates):
        shift = rng.normal(0, between)
        for k in range(n_cases):
            noise = rng.normal(0, within)
            for entry, mean in means.items():
                rows.append({"entry": entry, "replicate": f"r{r}", "cluster": f"c{k}", "case_id": f"r{r}-c{k}",
                             "value": mean + shift + noise + rng.normal(0, 0.1)})
    return pd.DataFrame(rows)


def test_one_replicate_reduces_to_the_ordinary_bootstrap() -> None:
    from volbias.estimators.ranking import resampled_means

    rng = np.random.default_rng(2)
    frame = _ranking_frame({"a": 1.0}, 1, 60, rng)
    (row,) = resampled_means(frame, "value", ["entry"], n_boot=4000, seed=1).to_dict("records")
    values = frame["value"].to_numpy()
    ci = stats.bootstrap((values,), np.mean, method="percentile", n_resamples=4000, rng=np.random.default_rng(5))
    width = ci.confidence_interval.high - ci.confidence_interval.low
    assert row["mean"] == pytest.approx(values.mean())
    assert row["low"] == pytest.approx(ci.confidence_interval.low, abs=0.1 * width)
    assert row["high"] == pytest.approx(ci.confidence_interval.high, abs=0.1 * width)
    assert row["n"] == 60 and row["n_replicates"] == 1


def test_the_two_level_intervals_widen_with_the_spread_between_networks() -> None:
    from volbias.estimators.ranking import resampled_means

    rng = np.random.default_rng(3)
    calm = resampled_means(_ranking_frame({"a": 1.0}, 4, 30, rng, between=0.0), "value", ["entry"], n_boot=2000)
    spread = resampled_means(_ranking_frame({"a": 1.0}, 4, 30, rng, between=2.0), "value", ["entry"], n_boot=2000)
    # networks are the outer unit: a spread between them widens the interval far beyond the cases' alone
    assert (spread.high - spread.low).iloc[0] > 3 * (calm.high - calm.low).iloc[0]
    assert spread.n_replicates.iloc[0] == 4 and spread.n.iloc[0] == 120


def test_p_best_finds_a_clear_winner_and_splits_ties() -> None:
    from volbias.estimators.ranking import resampled_means

    rng = np.random.default_rng(5)
    clear = resampled_means(_ranking_frame({"a": 1.0, "b": 3.0, "c": 5.0}, 3, 40, rng, between=0.5), "value",
                            ["entry"], n_boot=500).set_index("entry")
    assert clear.loc["a", "p_best"] == 1.0 and clear.p_best.sum() == pytest.approx(1.0)
    frame = _ranking_frame({"a": 1.0}, 2, 20, rng)
    twins = pd.concat([frame, frame.assign(entry="b")])  # identical values: every draw is a tie
    tie = resampled_means(twins, "value", ["entry"], n_boot=200).set_index("entry")
    assert tie.p_best.tolist() == [0.5, 0.5]
    with pytest.raises(ValueError, match="same networks and cases"):
        resampled_means(pd.concat([frame, frame.iloc[:-1].assign(entry="b")]), "value", ["entry"], n_boot=10)
    unpaired = resampled_means(pd.concat([frame, frame.iloc[:-1].assign(entry="b")]), "value", ["entry"],
                               n_boot=50, paired=False)
    assert unpaired.p_best.isna().all() and unpaired.n.tolist() == [40, 39]


def test_the_theory_lines_on_phantoms() -> None:
    from volbias.data.synthetic import make_phantoms
    from volbias.estimators.later_theory import optimum_bias, optimum_volumes
    from volbias.theory import soft_dice_threshold

    cases = make_phantoms(dims=2, size=54, radius=4.0, sigma=3.6, n_cases=6, n_raters=1, seed=4)
    volumes = optimum_volumes(cases)
    for case in cases:
        rows = volumes[volumes.case_id == case.id].set_index("loss")
        p = case.marginals.astype(float)
        assert rows.loc["ce", "soft"] == pytest.approx(p.sum(), rel=1e-6)
        assert rows.loc["sd", "soft"] == rows.loc["sd", "threshold"] == np.count_nonzero(p > soft_dice_threshold(p))
        # focal keeps the 0.5-threshold mask of p and inflates the soft sum
        assert rows.loc["focal", "threshold"] == np.count_nonzero(p > 0.5)
        assert rows.loc["focal", "soft"] > p.sum()
    bias = optimum_bias(volumes).set_index("loss")
    assert bias.loc["ce", "soft"] == pytest.approx(0.0, abs=1e-6)
    assert bias.loc["dsc++", "soft"] > 0 and bias.loc["tversky", "threshold"] > bias.loc["sd", "threshold"]
    with pytest.raises(ValueError, match="no optimum known"):
        optimum_volumes(cases, ["ce+sd"])
