"""The verdict rules on hand-made case tables, the temperature-scaled volume at T = 1, tau* on large maps, the
best-estimator set, parallel workers, and the audit package's import graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_audit_files import write_nifti

from volbias.audit import run_audit
from volbias.audit.calibration import case_reliability
from volbias.audit.estimators import estimator_summary, temperature_scaled_volume
from volbias.audit.measures import CaseMeasures, measure_case, soft_dice_threshold_of_map
from volbias.audit.summary import overall_numbers
from volbias.audit.verdict import best_estimators_sentence, verdict
from volbias.theory import soft_dice_threshold



def _measures(n: int) -> list[CaseMeasures]:
    """Cases without calibration voxels: only their rows matter to the rules tested here."""
    empty = np.zeros(0)
    return [CaseMeasures({}, empty.astype(np.float32), empty.astype(np.uint8), 1, case_reliability(empty, empty),
                         np.zeros(20, int), 0.0, (0, 0), (1.0, 1.0, 1.0)) for _ in range(n)]


def _table(n: int, soft_factor: float, hard_factor: float, noise: float, seed: int = 0) -> pd.DataFrame:
    """``n`` cases with reference volumes 10 to 30 ml, soft and thresholded volumes scaled by the factors, with
    multiplicative noise of relative size ``noise``."""
    rng = np.random.default_rng(seed)
    ref = np.linspace(10, 30, n)
    soft = ref * soft_factor * (1 + noise * rng.uniform(-1, 1, n))
    hard = ref * hard_factor * (1 + noise * rng.uniform(-1, 1, n))
    return pd.DataFrame({"case_id": [f"c{k:02d}" for k in range(n)], "dice": 0.8, "expected_dice_hard": 0.8,
                         "ref_volume_ml": ref, "soft_volume_ml": soft, "hard_volume_ml": hard,
                         "tau_star_volume_ml": ref, "dice_optimal_volume_ml": ref, "tau_star": 0.4})


def _verdict(cases: pd.DataFrame, tolerance: float = 0.05) -> tuple[dict, list[str]]:
    numbers = overall_numbers(cases, _measures(len(cases)))
    return numbers, verdict(numbers, 0.5, tolerance=tolerance)


def test_nineteen_cases_give_no_verdict() -> None:
    numbers, sentences = _verdict(_table(19, 1.02, 1.3, 0.002))
    assert sentences == ["Not enough cases to judge: 19 cases audited; a verdict needs at least 20. The numbers below "
                         "are shown without a verdict."]
    assert numbers["relative_bias"]["hard"]["value"] > 0.25  # the numbers are there, only the verdict is not


def test_two_percent_bias_inside_the_tolerance_reads_as_equivalent() -> None:
    cases = _table(20, 1.02, 1.10, 0.002)
    numbers, sentences = _verdict(cases)
    soft = numbers["relative_bias"]["soft"]
    ref, vol = cases["ref_volume_ml"].to_numpy(), cases["soft_volume_ml"].to_numpy()
    pooled = (vol - ref).sum() / ref.sum()
    assert soft["value"] == pytest.approx(pooled) and pooled == pytest.approx(0.02, abs=0.002)
    assert -0.05 < soft["ci_low"] < pooled < soft["ci_high"] < 0.05
    q25, median, q75 = np.percentile((vol - ref) / ref, [25, 50, 75])
    assert sentences[1] == (f"The soft volumes are equivalent to the reference within ±5%: bias {pooled:+.1%} (95% CI "
                            f"{soft['ci_low']:+.1%} to {soft['ci_high']:+.1%}; per case: median {median:+.1%}, "
                            f"interquartile range {q25:+.1%} to {q75:+.1%}).")
    hard = numbers["relative_bias"]["hard"]
    assert hard["ci_low"] > 0.05
    assert sentences[0].startswith(f"The thresholded (p > 0.5) volumes over-estimate the reference by "
                                   f"{hard['value']:.1%}")
    assert sentences[0].endswith("beyond the tolerance of ±5%.")


def test_a_narrower_tolerance_turns_the_same_bias_into_an_unclear_one() -> None:
    numbers, sentences = _verdict(_table(20, 1.02, 1.10, 0.05), tolerance=0.01)
    soft = numbers["relative_bias"]["soft"]
    assert soft["ci_low"] < 0.01 < soft["ci_high"]
    assert sentences[1].endswith("the interval reaches beyond ±1%, so the cases cannot tell whether the bias is "
                                 "within the tolerance.")


def test_the_better_volume_is_named_with_its_own_error() -> None:
    """The thresholded volume closer: its mean absolute error comes first, the soft volume's second."""
    cases = _table(24, 1.3, 1.01, 0.01)
    numbers, sentences = _verdict(cases)
    ref = cases["ref_volume_ml"].to_numpy()
    soft = np.abs(cases["soft_volume_ml"].to_numpy() - ref).mean()
    hard = np.abs(cases["hard_volume_ml"].to_numpy() - ref).mean()
    assert (f"The thresholded volume is the better estimate here: mean absolute error {hard:.3g} ml against "
            f"{soft:.3g} ml for the soft volume.") in sentences


def test_estimators_not_separated_from_the_best() -> None:
    """Two estimators within noise of each other and a third far off: the first two form the best set, each
    marked by whether it needs labelled cases."""
    rng = np.random.default_rng(2)
    rows = []
    for k in range(30):
        for name, error in (("soft sum", rng.normal(0, 1)), ("temperature-scaled", rng.normal(0, 1)),
                            ("threshold 0.5", 6 + rng.normal(0, 1))):
            rows.append({"task": "audit", "loss": "model", "fold": 0, "seed": 0, "case_id": f"c{k}",
                         "estimator": name, "volume": 20 + error, "reference_volume": 20.0, "err": error,
                         "abs_err": abs(error), "dice": np.nan, "ece": np.nan})
    summary = estimator_summary(pd.DataFrame(rows)).set_index("estimator")
    assert summary.loc["soft sum", "among_best"] and summary.loc["temperature-scaled", "among_best"]
    assert not summary.loc["threshold 0.5", "among_best"]
    assert summary["needs_labels"].to_dict() == {"soft sum": False, "temperature-scaled": True, "threshold 0.5": False}
    sentence = best_estimators_sentence(summary.reset_index())
    assert "temperature-scaled (" in sentence and "needs labelled cases of this population" in sentence
    assert "soft sum (" in sentence and "needs no labelled cases" in sentence and "threshold 0.5" not in sentence


def _map(rng: np.random.Generator, shape=(30, 24, 12)) -> tuple[np.ndarray, np.ndarray]:
    """A map with exact zeros, exact ones, tiny values far away and a soft boundary; a reference inside it."""
    p = np.zeros(shape, np.float32)
    p[8:20, 6:16, 3:9] = rng.uniform(0.05, 1.0, size=(12, 10, 6))
    p[10:14, 8:12, 4:7] = 1.0
    p[25:, 20:, :] = 1e-6  # background far from the reference, outside the calibration region
    votes = (rng.uniform(size=shape) < p).astype(np.uint8)
    votes[25:] = 0
    return p, votes


def test_temperature_one_gives_the_soft_volume_exactly() -> None:
    p, votes = _map(np.random.default_rng(4))
    m = measure_case("a", p, votes, 1, (0.7, 0.8, 2.0))
    assert m.outside_soft > 0  # the far background lies outside the region and is kept as it is
    assert temperature_scaled_volume(m, 1.0) == pytest.approx(m.row["soft_volume_ml"], rel=1e-12)
    ml = 0.7 * 0.8 * 2.0 / 1000
    q = p.astype(np.float64)
    region = np.zeros(p.shape, bool)
    region[3:25, 1:21, 0:12] = True  # the reference's box [8, 20) x [6, 16) x [3, 9) grown by 5 voxels
    assert m.region_prob.size == region.sum()
    with np.errstate(divide="ignore"):
        z = np.log(q[region]) - np.log1p(-q[region])
    scaled = q[~region].sum() + (1 / (1 + np.exp(-z / 2.0))).sum()
    assert temperature_scaled_volume(m, 2.0) == pytest.approx(scaled * ml, rel=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_tau_star_of_a_large_map_equals_the_theory_function(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = rng.beta(0.3, 0.6, size=(40, 30, 20)).astype(np.float32)
    p[rng.uniform(size=p.shape) < 0.3] = 0.0
    p[:5] = np.round(p[:5] * 4) / 4  # ties
    if seed == 5:
        p *= 0.4  # no voxel above 0.5
    assert soft_dice_threshold_of_map(p) == pytest.approx(soft_dice_threshold(p.astype(np.float64)), rel=1e-12)
    assert soft_dice_threshold_of_map(np.zeros((3, 3, 3), np.float32)) == soft_dice_threshold(np.zeros((3, 3, 3)))


def test_two_workers_give_the_same_report(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    for k in range(4):
        p, votes = _map(rng, shape=(20, 18, 10))
        write_nifti(tmp_path / "pred" / f"c{k}.nii.gz", p, (0.9, 0.9, 2.0))
        write_nifti(tmp_path / "ref" / f"c{k}.nii.gz", votes, (0.9, 0.9, 2.0))
    one = run_audit(tmp_path / "pred", tmp_path / "ref", tmp_path / "one", progress=False)
    two = run_audit(tmp_path / "pred", tmp_path / "ref", tmp_path / "two", workers=2, progress=False)
    pd.testing.assert_frame_equal(one.cases, two.cases)
    pd.testing.assert_frame_equal(one.estimators, two.estimators)
    assert (tmp_path / "one" / "cases.csv").read_bytes() == (tmp_path / "two" / "cases.csv").read_bytes()
