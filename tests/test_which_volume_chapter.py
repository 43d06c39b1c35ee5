"""The chapter "Which volume to trust" at the smoke profile: its soft-target controls, its calibration against
the marginals and its re-calibration lines, recomputed with numpy from the run directories it trained
(``probabilities.npz``) and the data. The chapter is executed once per session by the ``book`` fixture."""

from __future__ import annotations

from collections.abc import Iterator

import nbformat
import numpy as np
import pytest
from scipy.special import log_expit

from volbias.data import load_task
from volbias.estimators.runs import which_volume_experiments

from reference_ece import ece_by_hand

pytestmark = pytest.mark.slow


@pytest.fixture
def wv(book, monkeypatch: pytest.MonkeyPatch):
    """The chapter's snapshot; recomputations read the same data mirror as the chapter."""
    monkeypatch.setenv("VOLBIAS_DATA_MIRROR", str(book.mirror.root))
    return book.step("which_volume")


def runs(result, task: str, loss: str, targets: str) -> list[tuple[object, object]]:
    """(config, run directory) of the chapter's runs of one task, loss and kind of training target."""
    found = [(run.config, run.directory(experiment.directory(result.runs_dir)))
             for experiment in which_volume_experiments("smoke", 0) for run in experiment.runs
             if run.config.task == task and run.config.loss == loss
             and run.config.resolved_profile().targets == targets]
    assert found, f"no {task} runs of {loss} on {targets} targets planned"
    return found


def held_out(result, task: str, loss: str, targets: str) -> Iterator[tuple[int, object, np.ndarray]]:
    """(fold, case, masked probability map) of every held-out case of the runs."""
    for config, run_dir in runs(result, task, loss, targets):
        data = load_task(config.task, **config.resolved_task_options())
        cases = {case.id: case for case in [*data.cases, *data.test]}
        with np.load(run_dir / "probabilities.npz") as maps:
            for case_id in maps.files:
                case = cases[case_id]
                yield config.fold, case, np.where(case.mask, maps[case_id].astype(np.float64), 0.0)



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
    for loss, name in (("ce", "ce"), ("dml", "dml")):
        targets = "soft" if loss == "dml" else "rater"
        ece = [ece_by_hand(prob[case.mask], case.marginals[case.mask].astype(np.float64))
               for _, case, prob in held_out(wv, task, loss, targets)]
        # abs 1e-4: a probability exactly on a bin edge (float16 maps hold 0.5 exactly) may fall on either side
        assert wv.value(f"wv_{key}_{name}_ece") == pytest.approx(np.mean(ece), abs=1e-4), loss


def test_fold0_temperature_minimises_the_nll_against_the_marginals_of_fold1(wv) -> None:
    logits, targets = [], []
    for fold, case, prob in held_out(wv, "synthetic", "sd", "rater"):
        if fold == 1:
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
    for loss, targets in (("ce", "rater"), ("sd", "rater"), ("dml", "soft"), ("ce", "soft"), ("sd", "soft")):
        maps = list(held_out(wv, task, loss, targets))
        for fold in {f for f, _, _ in maps}:  # smoke trains two folds: each is re-calibrated on the other
            other = [(prob.sum(), case.marginals.sum(dtype=np.float64)) for f, case, prob in maps if f != fold]
            slopes.append(np.polyfit(*np.array(other).T, 1)[0])
    assert wv.value(f"wv_{key}_slope_min") == pytest.approx(min(slopes), rel=1e-6)
    assert wv.value(f"wv_{key}_slope_max") == pytest.approx(max(slopes), rel=1e-6)


def test_figures_are_numbered_and_tables_carry_the_unit(wv) -> None:
    cells = nbformat.read(wv.work_dir / "executed" / f"{wv.step.name}.ipynb", as_version=4).cells
    for name in ("fig-wv-errors", "fig-wv-recalibration", "fig-wv-calibration"):
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
        assert f">absolute volume error ({unit})</th>" in html
