"""The chapter "Which volume to trust" at the smoke profile, recomputed with numpy and scipy from the run directories
it trained (``probabilities.npz``) and the data: each case counted once, the held-out R^2 and the verdict that rests on
it, the no-network ceiling, the soft-target controls, calibration against the marginals, the cross-fitted lines,
and the coverage and CRPS of the volume intervals.  The chapter is executed once per session by the ``book`` fixture.

The smoke profile trains two folds of the phantoms, and both folds' networks predict the same fresh test phantoms: the
recomputation keeps, as the chapter must, one map per case (the validation network's; a shared test case the
network dealt to it in turn: test cases by sorted id, networks by fold) and holds out a fold's cases together.
"""

from __future__ import annotations

from collections.abc import Iterator

import nbformat
import numpy as np
import pytest
from scipy.special import log_expit
from scipy.stats import poisson_binom

from volbias.data import load_task
from volbias.estimators.runs import which_volume_experiments

from reference_ece import ece_by_hand

pytestmark = pytest.mark.slow


@pytest.fixture
def wv(book, monkeypatch: pytest.MonkeyPatch):
    """The chapter's snapshot; recomputations read the same data mirror as the chapter."""
    monkeypatch.setenv("VOLBIAS_DATA_MIRROR", str(book.mirror.root))
    return book.step("which_volume")


def runs(result, task: str, loss: str, targets: str, noise: str) -> list[tuple[object, object]]:
    """(config, run directory) of the chapter's runs of one task (and phantom noise), loss and kind of target."""
    found = [(run.config, run.directory(experiment.directory(result.runs_dir)))
             for experiment in which_volume_experiments("smoke", 0) for run in experiment.runs
             if run.config.task == task and run.config.loss == loss
             and run.config.resolved_profile().targets == targets
             and run.config.task_options.get("noise", "-") == noise]
    assert found, f"no {task} runs of {loss} on {targets} targets planned"
    return found


def held_out(result, task: str, loss: str, targets: str, noise: str = "independent"
             ) -> Iterator[tuple[int, object, np.ndarray]]:
    """(fold, case, masked map) of every held-out case, once: the map of its validation network, else (a test case
    every network predicts) that of the network dealt to it in turn."""
    noise = "-" if task == "LIDC" else noise
    maps: dict[str, dict[int, tuple[str, object, np.ndarray]]] = {}
    for config, run_dir in runs(result, task, loss, targets, noise):
        data = load_task(config.task, **config.resolved_task_options())
        validation = set(data.folds[config.fold])
        cases = {case.id: case for case in [*data.cases, *data.test]}
        with np.load(run_dir / "probabilities.npz") as archive:
            for case_id in archive.files:
                case = cases[case_id]
                split = "validation" if case_id in validation else "test"
                maps.setdefault(case_id, {})[config.fold] = (
                    split, case, np.where(case.mask, np.clip(archive[case_id].astype(np.float64), 0, 1), 0.0))
    shared = sorted(case_id for case_id, by_fold in maps.items()
                    if len(by_fold) > 1 and all(split == "test" for split, _, _ in by_fold.values()))
    for case_id, by_fold in maps.items():
        own = [fold for fold, (split, _, _) in by_fold.items() if split == "validation"]
        fold = own[0] if own else sorted(by_fold)[shared.index(case_id) % len(by_fold)] if case_id in shared else \
            next(iter(by_fold))
        _, case, prob = by_fold[fold]
        yield fold, case, prob


def crossfit_r2(estimate: np.ndarray, reference: np.ndarray, groups: np.ndarray) -> float:
    """R^2 of the reference on the line fitted on the other groups (numpy polyfit), clipped at zero."""
    prediction = np.empty(reference.size)
    for g in np.unique(groups):
        slope, intercept = np.polyfit(estimate[groups != g], reference[groups != g], 1)
        prediction[groups == g] = np.maximum(0, intercept + slope * estimate[groups == g])
    return 1 - ((reference - prediction) ** 2).sum() / ((reference - reference.mean()) ** 2).sum()


LOSSES = [("ce", "rater", "ce"), ("sd", "rater", "sd"), ("dml", "soft", "dml"), ("ce", "soft", "cesoft"),
          ("sd", "soft", "sdsoft")]


@pytest.mark.parametrize("key, task", [("syn", "synthetic"), ("lidc", "LIDC")])
def test_each_case_counts_once_and_the_verdict_rests_on_the_held_out_r2(wv, key: str, task: str) -> None:
    resolving = []
    for loss, targets, code in LOSSES:
        maps = list(held_out(wv, task, loss, targets))
        assert len({case.id for _, case, _ in maps}) == len(maps)
        if loss == "ce" and targets == "rater":
            assert wv.value(f"wv_{key}_n") == len(maps)  # every held-out case once, not once per network
        soft = np.array([prob.sum() for _, _, prob in maps])
        reference = np.array([case.marginals.sum(dtype=np.float64) for _, case, _ in maps])
        r2 = crossfit_r2(soft, reference, np.array([fold for fold, _, _ in maps]))
        assert wv.value(f"wv_{key}_{code}_r2") == pytest.approx(r2, rel=1e-6, abs=1e-9)
        if r2 >= wv.value("wv_r2_level"):
            resolving.append(loss if targets == "rater" or loss == "dml" else f"{loss} (soft)")
    assert wv.value(f"wv_{key}_resolving") == ", ".join(resolving)
    assert ("no loss's networks resolve" in wv.value(f"wv_{key}_verdict")) == (not resolving)
    # the headline ranks only where the networks resolve the cases, and says so where they do not
    where = {"syn": "on the phantoms", "lidc": "On LIDC"}[key]
    assert (f"{where} no loss's networks resolve" in wv.value("wv_headline")) == (not resolving)


def test_the_image_sum_is_the_ceiling(wv) -> None:
    maps = list(held_out(wv, "synthetic", "ce", "rater"))
    image_sum = np.array([case.image[0].sum(dtype=np.float64) for _, case, _ in maps])
    reference = np.array([case.marginals.sum(dtype=np.float64) for _, case, _ in maps])
    r2 = crossfit_r2(image_sum, reference, np.array([fold for fold, _, _ in maps]))
    assert wv.value("wv_syn_ceiling_r2") == pytest.approx(r2, rel=1e-6)
    assert wv.value("wv_syn_ceiling_abs") == pytest.approx(np.abs(image_sum - reference).mean(), rel=1e-6)


@pytest.mark.parametrize("key, task", [("syn", "synthetic"), ("lidc", "LIDC")])
def test_soft_target_controls_from_their_maps(wv, key: str, task: str) -> None:
    ce_soft = [(prob.sum() - case.marginals.sum(dtype=np.float64))
               for _, case, prob in held_out(wv, task, "ce", "soft")]
    sd_soft = [np.count_nonzero(prob > 0.5) - case.marginals.sum(dtype=np.float64)
               for _, case, prob in held_out(wv, task, "sd", "soft")]
    dml = [(prob.sum() - case.marginals.sum(dtype=np.float64)) for _, case, prob in held_out(wv, task, "dml", "soft")]
    assert wv.value(f"wv_{key}_cesoft_soft_err") == pytest.approx(np.mean(ce_soft), rel=1e-6, abs=1e-6)
    assert wv.value(f"wv_{key}_sdsoft_thr_err") == pytest.approx(np.mean(sd_soft), rel=1e-9, abs=1e-9)
    assert wv.value(f"wv_{key}_dml_soft_err") == pytest.approx(np.mean(dml), rel=1e-6, abs=1e-6)
    assert wv.value(f"wv_{key}_sdsoft_thr_direction") == ("over-estimated" if np.mean(sd_soft) > 0
                                                           else "under-estimated")
    assert wv.value(f"wv_{key}_losses") == "ce, sd, dml, ce (soft), sd (soft)"


@pytest.mark.parametrize("key, task", [("syn", "synthetic"), ("lidc", "LIDC")])
def test_calibration_error_is_measured_against_the_marginals(wv, key: str, task: str) -> None:
    for loss, targets in (("ce", "rater"), ("dml", "soft")):
        ece = [ece_by_hand(prob[case.mask], case.marginals[case.mask].astype(np.float64))
               for _, case, prob in held_out(wv, task, loss, targets)]
        # abs 1e-4: a probability exactly on a bin edge (float16 maps hold 0.5 exactly) may fall on either side
        assert wv.value(f"wv_{key}_{loss}_ece") == pytest.approx(np.mean(ece), abs=1e-4), loss


def test_fold0_temperature_minimises_the_nll_of_the_other_folds_cases(wv) -> None:
    logits, targets = [], []
    for fold, case, prob in held_out(wv, "synthetic", "sd", "rater"):
        if fold == 1:  # the cases held out with fold 1's network: fold 0's fit set
            p = np.clip(prob[case.mask], 1e-4, 1 - 1e-4)
            logits.append(np.log(p / (1 - p)))
            targets.append(case.marginals[case.mask].astype(np.float64))
    z, y = np.concatenate(logits), np.concatenate(targets)

    def nll(t: float) -> float:
        return float(-np.mean(y * log_expit(z / t) + (1 - y) * log_expit(-z / t)))

    fitted = wv.value("wv_syn_sd_temperature_fold0")
    assert nll(fitted) <= min(nll(t) for t in np.exp(np.linspace(np.log(0.02), np.log(50.0), 400))) + 1e-6


@pytest.mark.parametrize("key, task", [("syn", "synthetic"), ("lidc", "LIDC")])
def test_recalibration_slopes_are_the_cross_fitted_least_squares_lines(wv, key: str, task: str) -> None:
    slopes = []
    for loss, targets, _ in LOSSES:
        maps = list(held_out(wv, task, loss, targets))
        for fold in {f for f, _, _ in maps}:  # smoke trains two folds: each is re-calibrated on the other's cases
            other = [(prob.sum(), case.marginals.sum(dtype=np.float64)) for f, case, prob in maps if f != fold]
            slopes.append(np.polyfit(*np.array(other).T, 1)[0])
    assert wv.value(f"wv_{key}_slope_min") == pytest.approx(min(slopes), rel=1e-6)
    assert wv.value(f"wv_{key}_slope_max") == pytest.approx(max(slopes), rel=1e-6)


def _interval(prob: np.ndarray, coverage: float) -> tuple[int, int, np.ndarray]:
    """The central interval of the Poisson-binomial volume (scipy's pmf) and that pmf."""
    pmf = poisson_binom.pmf(np.arange(prob.size + 1), prob.ravel())
    cdf = np.cumsum(pmf)
    alpha = 1 - coverage
    return (int(np.searchsorted(cdf, alpha / 2 - 1e-12)), int(np.searchsorted(cdf, 1 - alpha / 2 - 1e-12)), pmf)


@pytest.mark.parametrize("key, task, loss", [("syn", "synthetic", "ce"), ("lidc", "LIDC", "sd")])
def test_independent_volume_intervals_coverage_and_crps(wv, key: str, task: str, loss: str) -> None:
    coverage = wv.value("wv_coverage") / 100
    inside, scores = [], []
    for _, case, prob in held_out(wv, task, loss, "rater"):
        low, high, pmf = _interval(prob[case.mask], coverage)
        draws = (case.raters[:, case.mask] > 0.5).sum(axis=1)
        inside.append(np.mean((draws >= low) & (draws <= high)))
        k = np.arange(pmf.size)  # CRPS in its energy form E|X - y| - E|X - X'| / 2
        spread = 0.5 * pmf @ np.abs(k[:, None] - k[None, :]) @ pmf
        scores.append(np.mean([pmf @ np.abs(k - y) - spread for y in draws]))
    assert wv.value(f"wv_{key}_{loss}_cov_ind") == pytest.approx(np.mean(inside), abs=1e-9)
    assert wv.value(f"wv_{key}_{loss}_crps_ind") == pytest.approx(np.mean(scores), rel=1e-6)


def test_figures_are_numbered_and_tables_carry_the_unit(wv) -> None:
    cells = nbformat.read(wv.work_dir / "executed" / f"{wv.step.name}.ipynb", as_version=4).cells
    for name in ("fig-wv-errors", "fig-wv-recalibration", "fig-wv-calibration", "fig-wv-intervals"):
        (glued,) = [c for c in cells if c.cell_type == "code" and f'plots.glue_figure("{name}"' in c.source]
        images = [o for o in glued.get("outputs", [])
                  if o.get("metadata", {}).get("scrapbook", {}).get("name") == name]
        assert len(images) == 1 and any(k.endswith("image/png") for k in images[0]["data"]), name
        assert any(c.cell_type == "markdown" and f":::{{glue:figure}} {name}\n:name: {name}" in c.source
                   for c in cells), name
        assert any(c.cell_type == "markdown" and f"{{numref}}`{name}`" in c.source for c in cells), name
    html = "".join(o.get("data", {}).get("text/html", "") for c in cells if c.cell_type == "code"
                   for o in c.get("outputs", []))
    for unit in (wv.value("wv_syn_unit"), wv.value("wv_lidc_unit")):
        assert f">|error| ({unit})</th>" in html and f">CRPS, ind. ({unit})</th>" in html
