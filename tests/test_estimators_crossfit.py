"""Leak-free cross-fitting: networks that predict the same shared cases, and patients with several nodules."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, log_expit, logit

from volbias.data.case import Case
from volbias.estimators.compare import ESTIMATORS, compare_estimators
from volbias.estimators.crossfit import crossfit_sets, held_out_groups, one_map_per_case
from volbias.estimators.maps import HeldOutMap


def _case(case_id: str, rng: np.random.Generator, patient: str | None = None) -> Case:
    z = rng.normal(rng.normal(-1.0, 0.8), 1.0, (10, 10))
    marginals = expit(z).astype(np.float32)
    label = (rng.uniform(size=z.shape) < marginals).astype(np.float32)
    return Case(id=case_id, image=z[None].astype(np.float32), label=label, mask=np.ones(z.shape, bool),
                spacing=(1.0, 1.0), spacing_known=False, marginals=marginals,
                meta={} if patient is None else {"patient": patient})


def _map(case: Case, fold: int, split: str, factor: float, loss: str = "ce") -> HeldOutMap:
    """A network's map of ``case``: the true logits times ``factor`` (each network its own miscalibration)."""
    return HeldOutMap("toy", "default", loss, 0, fold, case, expit(factor * logit(case.marginals.astype(float))), split)


def _two_folds_sharing_test_cases(loss: str = "ce") -> tuple[list[HeldOutMap], list[Case], list[Case]]:
    rng = np.random.default_rng(0)
    validation = [[_case(f"val{fold}-{k}", rng) for k in range(4)] for fold in range(2)]
    test = [_case(f"test-{k}", rng) for k in range(7)]
    maps = []
    for fold in range(2):  # each network predicts its own validation fold and every shared test case
        maps += [_map(c, fold, "validation", 1.5 + fold, loss) for c in validation[fold]]
        maps += [_map(c, fold, "test", 1.5 + fold, loss) for c in test]
    return maps, [c for fold in validation for c in fold], test


def _nll(maps: list[HeldOutMap], temperature: float) -> float:
    z = np.concatenate([logit(np.clip(m.prob.ravel(), 1e-4, 1 - 1e-4)) for m in maps]) / temperature
    y = np.concatenate([m.case.marginals.ravel().astype(float) for m in maps])
    return float(-np.mean(y * log_expit(z) + (1 - y) * log_expit(-z)))


def test_no_fit_set_holds_a_map_of_its_own_groups_cases() -> None:
    maps, validation, test = _two_folds_sharing_test_cases()
    kept = one_map_per_case(maps)
    assert sorted(m.case.id for m in kept) == sorted(c.id for c in [*validation, *test])  # each case once
    for m in kept:  # validation cases keep their own network; shared test cases one network each
        if m.case.id.startswith("val"):
            assert m.split == "validation" and m.case.id.startswith(f"val{m.fold}")
    test_folds = [m.fold for m in kept if m.split == "test"]
    assert abs(test_folds.count(0) - test_folds.count(1)) <= 1  # dealt in turn
    sets = crossfit_sets(kept, n_splits=5)
    assert len(sets) == 2
    held = [m.case.id for cf in sets for m in cf.held_out]
    assert sorted(held) == sorted(c.id for c in [*validation, *test])  # every case held out exactly once
    for cf in sets:
        own = {m.case.id for m in cf.held_out}
        # no map of any case of the group, from whichever network, is in its fit set
        assert not own & {m.case.id for m in cf.fit}
        assert not any(fitted is m for fitted in cf.fit for m in maps if m.case.id in own)
        assert {m.case.id for m in cf.fit} == {m.case.id for m in kept} - own


def test_the_comparison_counts_each_case_once_and_fits_on_other_cases_only() -> None:
    maps, validation, test = _two_folds_sharing_test_cases()
    table = compare_estimators(maps, n_splits=5)
    per_case = table.groupby(["case_id", "estimator"]).size()
    assert (per_case == 1).all() and len(per_case) == len(ESTIMATORS) * (len(validation) + len(test))
    kept = {m.case.id: m for m in one_map_per_case(maps)}
    for group, rows in table.groupby("fit_group"):
        own = set(rows.case_id)
        fit = [m for case_id, m in kept.items() if case_id not in own]
        assert (rows.n_fit == len(fit)).all()
        # the temperature minimises the NLL of the other cases' maps (a fine grid does no better) ...
        (temperature,) = set(rows.temperature)
        grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 800))
        assert _nll(fit, temperature) <= min(_nll(fit, t) for t in grid) + 1e-7
        # ... and the line is least squares on their soft volumes, never on a map of an own case
        slope, intercept = np.polyfit([m.prob.sum() for m in fit], [m.case.expected_volume for m in fit], 1)
        assert rows.recal_slope.iloc[0] == pytest.approx(slope) and rows.recal_intercept.iloc[0] == pytest.approx(
            intercept)
    # the same cases get the same network under every loss, so that losses can be compared case by case
    other, _, _ = _two_folds_sharing_test_cases(loss="sd")
    again = compare_estimators([*maps, *other], n_splits=5)
    folds = again[again.estimator == "soft sum"].pivot(index="case_id", columns="loss", values="fold")
    assert (folds["ce"] == folds["sd"]).all()


def test_a_patient_is_never_split_between_held_out_groups() -> None:
    rng = np.random.default_rng(1)
    cases = [_case(f"p{p}_n{k}", rng, patient=f"p{p}") for p in range(7) for k in range(1 + p % 3)]
    maps = [_map(c, 0, "validation", 2.0) for c in cases]
    groups = held_out_groups(maps, n_splits=3)
    by_patient: dict[str, set[int]] = {}
    for m, g in zip(maps, groups):
        by_patient.setdefault(m.case.meta["patient"], set()).add(int(g))
    assert all(len(g) == 1 for g in by_patient.values()) and len(set(groups)) == 3
    for cf in crossfit_sets(maps, n_splits=3):
        patients = {m.case.meta["patient"] for m in cf.held_out}
        assert not patients & {m.case.meta["patient"] for m in cf.fit}  # no nodule of a held-out patient
    table = compare_estimators(maps, n_splits=3)
    assert set(table.cluster) == {f"p{p}" for p in range(7)}


def test_a_case_in_two_validation_folds_is_an_error() -> None:
    rng = np.random.default_rng(2)
    case = _case("c", rng)
    with pytest.raises(ValueError, match="validation fold of two networks"):
        one_map_per_case([_map(case, 0, "validation", 1.0), _map(case, 1, "validation", 1.0)])
