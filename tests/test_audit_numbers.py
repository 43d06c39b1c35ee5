"""Every number of an audit report checked against a direct numpy computation on small files with known volumes.

The probability maps are small (a few hundred voxels) and have at most 10 voxels with ``p > 0``, so the
expected Dice of every top-k mask is computed here exactly by enumerating all label configurations, and the
soft-Dice threshold tau* by trying every k.  Bootstrap CIs are compared with an independent numpy
percentile bootstrap (more resamples, hence a tolerance).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit, log_expit
from test_audit_files import write_nifti, write_nnunet

from volbias.audit import run_audit

SPACINGS = [(1.0, 1.0, 1.0), (0.5, 0.8, 2.0), (1.2, 1.2, 1.5), (2.0, 1.0, 1.0), (0.9, 0.9, 0.9),
            (1.0, 2.0, 3.0), (0.6, 0.6, 1.0)]
SHAPE = (16, 14, 12)
N_SUPPORT = 9
MARGIN, N_BINS = 5, 10


def _case(rng: np.random.Generator, n_raters: int = 1, scale: float = 1.0) -> tuple[np.ndarray, list[np.ndarray]]:
    """A sparse map (``N_SUPPORT`` voxels with distinct p in a small cluster) and its raters' masks.

    ``scale`` < 1 shrinks the probabilities, so the thresholded mask under-estimates the raters' volume.
    """
    prob = np.zeros(SHAPE)
    centre = rng.integers(4, 8, size=3)
    offsets = rng.choice(64, size=N_SUPPORT, replace=False)
    idx = np.stack(np.unravel_index(offsets, (4, 4, 4)), axis=1) + centre
    prob[tuple(idx.T)] = rng.uniform(0.03, 0.97, size=N_SUPPORT)
    raters = []
    for _ in range(n_raters):
        mask = rng.uniform(size=SHAPE) < prob
        mask[tuple(centre + rng.integers(-1, 5, size=3))] = True  # a voxel the map may miss
        raters.append(mask)
    return (scale * prob).astype(np.float32), raters


def _voxel_ml(spacing) -> float:
    return float(np.prod(spacing)) / 1000.0


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * np.logical_and(a, b).sum() / total


def _configurations(m: int) -> np.ndarray:
    return ((np.arange(2 ** m)[:, None] >> np.arange(m)) & 1).astype(bool)


def _expected_dice(mask: np.ndarray, p: np.ndarray) -> float:
    """E[Dice(mask, Y)], Y_i ~ Bernoulli(p_i) independent, by enumerating every Y on the voxels with p > 0."""
    support = p > 0
    ps, ms = p[support].astype(np.float64), mask[support]
    outside = int(mask.sum() - ms.sum())  # mask voxels with p = 0 are never foreground
    ys = _configurations(ps.size)
    weights = np.prod(np.where(ys, ps, 1 - ps), axis=1)
    k = ms.sum() + outside
    inter, ysum = (ys & ms).sum(axis=1), ys.sum(axis=1)
    dice = np.where(k + ysum == 0, 1.0, 2.0 * inter / np.maximum(k + ysum, 1))
    return float(np.sum(weights * dice))


def _topk_masks(p: np.ndarray) -> list[np.ndarray]:
    order = np.argsort(-p.ravel(), kind="stable")
    masks = []
    for k in range(int(np.count_nonzero(p)) + 1):
        mask = np.zeros(p.size, bool)
        mask[order[:k]] = True
        masks.append(mask.reshape(p.shape))
    return masks


def _dice_optimal(p: np.ndarray) -> np.ndarray:
    masks = _topk_masks(p)
    values = np.array([_expected_dice(m, p) for m in masks])
    return masks[int(np.flatnonzero(values >= values.max() - 1e-12)[0])]


def _tau_star(p: np.ndarray) -> float:
    values = np.sort(p.ravel().astype(np.float64))[::-1]
    values = values[values > 0]
    total = values.sum()
    scores = [2.0 * values[:k].sum() / (k + total) for k in range(1, values.size + 1)]
    return max(scores) / 2.0


def _region(p: np.ndarray, r: np.ndarray) -> np.ndarray:
    """The calibration region: the box of the voxels any rater marks, grown by MARGIN (from the reference alone)."""
    hits = np.argwhere(r > 0)
    region = np.zeros(p.shape, bool)
    if hits.size:
        low = np.maximum(hits.min(axis=0) - MARGIN, 0)
        high = np.minimum(hits.max(axis=0) + 1 + MARGIN, p.shape)
        region[tuple(slice(a, b) for a, b in zip(low, high))] = True
    return region


def _bins(p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Counts, summed p and summed y per equal-width bin (right edges included, as torch.bucketize)."""
    idx = np.clip(np.ceil(p * N_BINS).astype(int) - 1, 0, N_BINS - 1)
    return (np.bincount(idx, minlength=N_BINS), np.bincount(idx, p, minlength=N_BINS),
            np.bincount(idx, y, minlength=N_BINS))


def _ece(p: np.ndarray, y: np.ndarray) -> float:
    if p.size == 0:
        return float("nan")
    n, sp, sy = _bins(p, y)
    filled = n > 0
    return float(np.sum(np.abs(sp[filled] - sy[filled])) / n.sum())


def _bootstrap_ci(statistic, arrays, seed: int = 1, n: int = 20000) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    size = len(arrays[0])
    draws = rng.integers(size, size=(n, size))
    values = statistic(*(np.asarray(a)[draws] for a in arrays))
    return tuple(np.percentile(values, [2.5, 97.5]))


def _close_ci(ci: tuple[float, float], expected: tuple[float, float]) -> None:
    width = max(expected[1] - expected[0], 1e-12)
    assert ci[0] == pytest.approx(expected[0], abs=0.15 * width)
    assert ci[1] == pytest.approx(expected[1], abs=0.15 * width)


@pytest.fixture(scope="module")
def single_rater(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Seven NIfTI cases, one rater each; the report and the arrays it was computed from."""
    root = tmp_path_factory.mktemp("audit")
    rng = np.random.default_rng(7)
    cases = {}
    for i, spacing in enumerate(SPACINGS):
        prob, (mask,) = _case(rng)
        name = f"case{i:02d}"
        write_nifti(root / "pred" / f"{name}.nii.gz", prob, spacing)
        write_nifti(root / "ref" / f"{name}.nii.gz", mask.astype(np.uint8), spacing)
        cases[name] = (prob.astype(np.float64), mask.astype(np.float64), spacing)
    result = run_audit(root / "pred", root / "ref", root / "out", progress=False)
    return {"cases": cases, "result": result, "out": root / "out"}


def _expected_rows(cases: dict, threshold: float = 0.5) -> pd.DataFrame:
    rows = []
    for name, (p, r, spacing) in cases.items():
        ml = _voxel_ml(spacing)
        ref_mask, hard = r > 0.5, p > threshold
        tau = _tau_star(p)
        optimal = _dice_optimal(p)
        region = _region(p, r)
        above = p > 0.05
        rows.append({
            "case_id": name, "dice": _dice(hard, ref_mask), "ref_volume_ml": r.sum() * ml,
            "soft_volume_ml": p.sum() * ml, "hard_volume_ml": hard.sum() * ml, "tau_star": tau,
            "tau_star_volume_ml": (p > tau).sum() * ml, "tau_star_dice": _dice(p > tau, ref_mask),
            "dice_optimal_volume_ml": optimal.sum() * ml, "dice_optimal_dice": _dice(optimal, ref_mask),
            "expected_dice_hard": _expected_dice(hard, p), "expected_dice_optimal": _expected_dice(optimal, p),
            "ece": _ece(p[region], r[region]), "calibration_voxels": int(region.sum()),
            "intermediate_share": (above & (p < 0.95)).sum() / above.sum(), "voxel_volume_ml": ml,
        })
    frame = pd.DataFrame(rows)
    for kind in ("soft", "hard"):
        frame[f"{kind}_error_ml"] = frame[f"{kind}_volume_ml"] - frame["ref_volume_ml"]
        frame[f"{kind}_relative_error"] = frame[f"{kind}_error_ml"] / frame["ref_volume_ml"]
    return frame


def test_cases_csv_matches_direct_computation(single_rater: dict) -> None:
    written = pd.read_csv(single_rater["out"] / "cases.csv", dtype={"case_id": str})
    expected = _expected_rows(single_rater["cases"])
    assert list(written.columns[:5]) == ["case_id", "dice", "ref_volume_ml", "soft_volume_ml", "hard_volume_ml"]
    assert written["case_id"].tolist() == expected["case_id"].tolist()
    for column in expected.columns.drop("case_id"):
        np.testing.assert_allclose(written[column].to_numpy(float), expected[column].to_numpy(float),
                                   rtol=1e-6, atol=1e-9, err_msg=column)
    assert (written["n_raters"] == 1).all()


def test_summary_json_matches_direct_computation(single_rater: dict) -> None:
    summary = json.loads((single_rater["out"] / "summary.json").read_text())
    e = _expected_rows(single_rater["cases"])
    ref = e["ref_volume_ml"].to_numpy()
    assert summary["n_cases"] == len(e)
    assert summary["dice"]["mean"] == pytest.approx(e["dice"].mean())
    _close_ci((summary["dice"]["ci_low"], summary["dice"]["ci_high"]),
              _bootstrap_ci(lambda d: d.mean(axis=1), [e["dice"].to_numpy()]))
    assert summary["expected_dice_hard"]["mean"] == pytest.approx(e["expected_dice_hard"].mean())
    assert summary["mean_volume_ml"]["reference"] == pytest.approx(ref.mean())
    kinds = {"hard": "hard_volume_ml", "soft": "soft_volume_ml", "tau_star": "tau_star_volume_ml",
             "dice_optimal": "dice_optimal_volume_ml"}
    for kind, column in kinds.items():
        v = e[column].to_numpy()
        bias = summary["relative_bias"][kind]
        assert summary["mean_volume_ml"][kind] == pytest.approx(v.mean())
        assert bias["value"] == pytest.approx((v - ref).sum() / ref.sum())
        _close_ci((bias["ci_low"], bias["ci_high"]),
                  _bootstrap_ci(lambda a, b: (a - b).sum(axis=1) / b.sum(axis=1), [v, ref]))
        assert summary["mean_error_ml"][kind]["mean"] == pytest.approx((v - ref).mean())
        assert summary["mean_abs_error_ml"][kind]["mean"] == pytest.approx(np.abs(v - ref).mean())
    diff = np.abs(e["soft_error_ml"]) - np.abs(e["hard_error_ml"])
    assert summary["abs_error_soft_minus_hard_ml"]["mean"] == pytest.approx(diff.mean())
    for kind in ("soft", "hard"):
        d = e[f"{kind}_error_ml"].to_numpy()
        ba = summary["bland_altman"][kind]
        assert ba["bias"] == pytest.approx(d.mean())
        assert ba["sd"] == pytest.approx(d.std(ddof=1))
        assert ba["loa_low"] == pytest.approx(d.mean() - 1.96 * d.std(ddof=1))
        assert ba["loa_high"] == pytest.approx(d.mean() + 1.96 * d.std(ddof=1))
    regions = [_region(p, r) for p, r, _ in single_rater["cases"].values()]
    pooled_p = np.concatenate([p[g] for (p, _, _), g in zip(single_rater["cases"].values(), regions)])
    pooled_r = np.concatenate([r[g] for (_, r, _), g in zip(single_rater["cases"].values(), regions)])
    assert summary["calibration"]["ece"] == pytest.approx(_ece(pooled_p, pooled_r), rel=1e-5)
    assert summary["calibration"]["voxels"] == pooled_p.size
    all_p = np.concatenate([p.ravel() for p, _, _ in single_rater["cases"].values()])
    assert summary["calibration"]["intermediate_share"] == pytest.approx(
        np.sum((all_p > 0.05) & (all_p < 0.95)) / np.sum(all_p > 0.05))
    assert summary["tau_star"]["mean"] == pytest.approx(e["tau_star"].mean())
    assert summary["tau_star"]["min"] == pytest.approx(e["tau_star"].min())
    assert summary["cases"]["audited"] == list(single_rater["cases"])
    assert summary["inputs"]["threshold"] == 0.5


def _groups(names: list[str]) -> dict[str, int]:
    return {name: rank % 5 for rank, name in enumerate(sorted(names))}


def test_fitted_estimators_are_cross_fitted(single_rater: dict) -> None:
    """Each case's temperature minimises the NLL of the other groups' calibration voxels, its line fits their
    volumes by least squares, and the corrected volumes follow from them."""
    table = pd.read_csv(single_rater["out"] / "estimators.csv", dtype={"case_id": str})
    cases = single_rater["cases"]
    expected = _expected_rows(cases).set_index("case_id")
    groups = _groups(list(cases))
    for name, (p, r, spacing) in cases.items():
        rows = table[table.case_id == name].set_index("estimator")
        train = [n for n in cases if groups[n] != groups[name]]
        logits, labels = [], []
        for n in train:
            tp, tr, _ = cases[n]
            g = _region(tp, tr)
            q = np.clip(tp[g], 1e-4, 1 - 1e-4)
            logits.append(np.log(q / (1 - q)))
            labels.append(tr[g])
        z, y = np.concatenate(logits), np.concatenate(labels)

        def nll(t: float) -> float:
            return float(-np.mean(y * log_expit(z / t) + (1 - y) * log_expit(-z / t)))

        temperature = rows.loc["temperature-scaled", "temperature"]
        assert nll(temperature) <= min(nll(t) for t in np.exp(np.linspace(np.log(0.02), np.log(50), 400))) + 1e-6
        g = _region(p, r)
        with np.errstate(divide="ignore"):  # logit(0) = -inf: a voxel of p = 0 stays 0
            scaled = expit((np.log(p[g]) - np.log1p(-p[g])) / temperature)
        volume = (p[~g].sum() + scaled.sum()) * _voxel_ml(spacing)  # scaled where fitted, as is elsewhere
        assert rows.loc["temperature-scaled", "volume"] == pytest.approx(volume, rel=1e-6)  # float32 header spacing
        assert rows.loc["temperature-scaled", "ece"] == pytest.approx(_ece(scaled, r[g]), rel=1e-6)
        slope, intercept = np.polyfit(expected.loc[train, "soft_volume_ml"], expected.loc[train, "ref_volume_ml"], 1)
        assert rows.loc["re-calibrated", "recal_slope"] == pytest.approx(slope)
        assert rows.loc["re-calibrated", "volume"] == pytest.approx(intercept + slope * expected.loc[name, "soft_volume_ml"])
        for estimator, column in [("threshold 0.5", "hard_volume_ml"), ("soft sum", "soft_volume_ml"),
                                  ("tau* threshold", "tau_star_volume_ml"), ("Dice-optimal", "dice_optimal_volume_ml")]:
            assert rows.loc[estimator, "volume"] == pytest.approx(expected.loc[name, column])
            assert rows.loc[estimator, "err"] == pytest.approx(expected.loc[name, column] - expected.loc[name, "ref_volume_ml"])


def test_estimator_ranking_matches_mean_absolute_errors(single_rater: dict) -> None:
    table = pd.read_csv(single_rater["out"] / "estimators.csv")
    summary = json.loads((single_rater["out"] / "summary.json").read_text())
    means = table.groupby("estimator")["abs_err"].mean()
    ranked = [row["estimator"] for row in summary["estimators"]]
    assert ranked == list(means.sort_values(kind="stable").index)
    for row in summary["estimators"]:
        assert row["abs_err"] == pytest.approx(means[row["estimator"]])
        assert row["err"] == pytest.approx(table.loc[table.estimator == row["estimator"], "err"].mean())


def test_report_shows_the_numbers_and_figures(single_rater: dict) -> None:
    out = single_rater["out"]
    report = (out / "report.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    for figure in ("volumes", "calibration", "estimators"):
        assert (out / "figures" / f"{figure}.png").stat().st_size > 1000
        assert f"figures/{figure}.png" in report
    bias = summary["relative_bias"]["hard"]
    assert f"{bias['value']:+.1%} [{bias['ci_low']:+.1%}, {bias['ci_high']:+.1%}]" in report
    for sentence in summary["verdict"]:
        assert f"- {sentence}" in report


@pytest.fixture(scope="module")
def biased_model(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """24 nnU-Net-style cases whose maps are the raters' marginals shrunk by 0.6, three raters each, with
    multi-class references (foreground label 2) and a threshold of 0.3."""
    root = tmp_path_factory.mktemp("biased")
    rng = np.random.default_rng(3)
    cases = {}
    for i in range(24):
        spacing = SPACINGS[i % len(SPACINGS)]
        prob, raters = _case(rng, n_raters=3, scale=0.6)
        name = f"b{i:02d}"
        write_nnunet(root / "pred", name, prob, spacing)
        for k, mask in enumerate(raters):
            labels = np.where(mask, 2, (rng.uniform(size=SHAPE) < 0.1).astype(np.uint8))  # label 1 is another class
            write_nifti(root / f"rater{k}" / f"{name}.nii.gz", labels.astype(np.uint8), spacing)
        stored = prob.astype(np.float16).astype(np.float64)
        cases[name] = (stored, np.mean(raters, axis=0), spacing)
    result = run_audit(root / "pred", root / "rater0", root / "out", raters=[root / "rater1", root / "rater2"],
                       labels=[2], threshold=0.3, progress=False)
    return {"cases": cases, "result": result, "out": root / "out"}


def test_raters_nnunet_and_threshold_numbers(biased_model: dict) -> None:
    written = pd.read_csv(biased_model["out"] / "cases.csv", dtype={"case_id": str})
    expected = _expected_rows(biased_model["cases"], threshold=0.3)
    for column in expected.columns.drop("case_id"):
        np.testing.assert_allclose(written[column].to_numpy(float), expected[column].to_numpy(float),
                                   rtol=1e-6, atol=1e-9, err_msg=column)
    assert (written["n_raters"] == 3).all()
    summary = json.loads((biased_model["out"] / "summary.json").read_text())
    assert summary["inputs"]["labels"] == [2] and summary["inputs"]["format"] == "nnunet"
    assert len(summary["inputs"]["references"]) == 3


def test_verdict_names_the_bias_of_a_shrunk_model(biased_model: dict) -> None:
    """Maps shrunk by 0.6 under-estimate the raters' volume beyond a 5% tolerance; the verdict says so with the
    report's numbers and the per-case spread recomputed here."""
    summary = json.loads((biased_model["out"] / "summary.json").read_text())
    e = _expected_rows(biased_model["cases"], threshold=0.3)
    rel = (e["soft_volume_ml"] - e["ref_volume_ml"]) / e["ref_volume_ml"]
    q25, median, q75 = np.percentile(rel, [25, 50, 75])
    soft = summary["relative_bias"]["soft"]
    assert soft["per_case"]["median"] == pytest.approx(median)
    assert soft["ci_high"] < -0.05  # the data are built so
    assert summary["equivalence"]["soft"] == "under"
    assert (f"The soft volumes under-estimate the reference by {-soft['value']:.1%} (95% CI {soft['ci_low']:+.1%} to "
            f"{soft['ci_high']:+.1%}; per case: median {median:+.1%}, interquartile range {q25:+.1%} to {q75:+.1%}), "
            "beyond the tolerance of ±5%.") in summary["verdict"]
    hard = summary["relative_bias"]["hard"]
    sentence = summary["verdict"][0]
    assert sentence.startswith("The thresholded (p > 0.3) volumes")
    if -0.05 <= hard["ci_low"] and hard["ci_high"] <= 0.05:
        assert "are equivalent to the reference within ±5%" in sentence
    elif hard["ci_low"] > 0.05:
        assert "over-estimate" in sentence and "beyond the tolerance" in sentence
    elif hard["ci_high"] < -0.05:
        assert "under-estimate" in sentence and "beyond the tolerance" in sentence
    else:
        assert "cannot tell" in sentence
    diff = summary["abs_error_soft_minus_hard_ml"]
    mae = summary["mean_abs_error_ml"]
    better = next(s for s in summary["verdict"] if "better estimate" in s or "Neither" in s)
    if diff["ci_high"] < 0:
        assert better == (f"The soft volume is the better estimate here: mean absolute error "
                          f"{mae['soft']['mean']:.3g} ml against {mae['hard']['mean']:.3g} ml for the thresholded "
                          "volume.")
    elif diff["ci_low"] > 0:
        assert better == (f"The thresholded volume is the better estimate here: mean absolute error "
                          f"{mae['hard']['mean']:.3g} ml against {mae['soft']['mean']:.3g} ml for the soft volume.")
    else:
        assert better.startswith("Neither")


def test_too_few_cases_give_no_verdict(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for i in range(2):
        prob, (mask,) = _case(rng)
        write_nifti(tmp_path / "pred" / f"c{i}.nii", prob)
        write_nifti(tmp_path / "ref" / f"c{i}.nii", mask.astype(np.uint8))
    result = run_audit(tmp_path / "pred", tmp_path / "ref", tmp_path / "out", progress=False)
    assert result.verdict == ["Not enough cases to judge: 2 cases audited; a verdict needs at least 20. The numbers "
                              "below are shown without a verdict."]
    assert len(result.cases) == 2
    assert set(result.estimators.estimator) == {"threshold 0.5", "soft sum", "tau* threshold", "Dice-optimal"}


def test_four_raters_reference_is_the_strict_majority(tmp_path: Path) -> None:
    """With four raters a voxel marked by two of them (r = 0.5) is background for the Dice, as p = 0.5 is for
    the map; the report states the rule."""
    rng = np.random.default_rng(11)
    cases = {}
    for i in range(5):
        prob, raters = _case(rng, n_raters=4)
        raters[1] = raters[0].copy()  # every voxel of rater 0 gets at least two votes
        raters[2] = raters[3] = np.zeros(SHAPE, bool)
        raters[2][tuple(np.argwhere(raters[0])[0])] = True  # and one of them three
        name = f"four{i}"
        write_nifti(tmp_path / "pred" / f"{name}.nii.gz", prob)
        for k, mask in enumerate(raters):
            write_nifti(tmp_path / f"rater{k}" / f"{name}.nii.gz", mask.astype(np.uint8))
        cases[name] = (prob.astype(np.float64), np.mean(raters, axis=0), (1.0, 1.0, 1.0))
    run_audit(tmp_path / "pred", tmp_path / "rater0", tmp_path / "out",
              raters=[tmp_path / f"rater{k}" for k in (1, 2, 3)], progress=False)
    written = pd.read_csv(tmp_path / "out" / "cases.csv", dtype={"case_id": str})
    expected = _expected_rows(cases)
    np.testing.assert_allclose(written["dice"], expected["dice"], rtol=1e-9)
    np.testing.assert_allclose(written["ref_volume_ml"], expected["ref_volume_ml"], rtol=1e-9)
    tie_rule = [_dice(p > 0.5, r >= 0.5) for p, r, _ in cases.values()]
    assert not np.allclose(written["dice"], tie_rule)  # the data are built so that the rules differ
    assert "strict majority r > 0.5 (at least 3 of the 4 raters" in (tmp_path / "out" / "report.md").read_text()
