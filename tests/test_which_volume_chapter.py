"""Executes the chapter "Which volume to trust" at the smoke profile and checks its glued numbers
against recomputations from the written run directories (cases.csv, probabilities.npz) and the data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import log_expit

from volbias.bookbuild import execute_chapter, read_glued
from volbias.data import load_task
from volbias.estimators.experiment import which_volume_experiments

pytestmark = pytest.mark.slow

TASK_KEYS = {"syn": "synthetic", "lidc": "LIDC"}


@pytest.fixture(scope="module")
def chapter(tmp_path_factory: pytest.TempPathFactory, repo_root: Path, shared_data: Path) -> tuple[dict, Path]:
    """Glued values of the executed chapter and the runs root it trained into."""
    tmp = tmp_path_factory.mktemp("which_volume")
    runs = tmp / "runs"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VOLBIAS_RUNS_DIR", str(runs))
        patch.setenv("VOLBIAS_DATA_MIRROR", str(shared_data))
        out = execute_chapter(repo_root / "chapters" / "which_volume.ipynb", tmp / "which_volume.ipynb",
                              {"profile": "smoke"}, cwd=repo_root / "chapters")
    return read_glued(out), runs


@pytest.fixture(autouse=True)
def _data_mirror(monkeypatch: pytest.MonkeyPatch, shared_data: Path) -> None:
    """The recomputations below read the same local data mirror as the chapter."""
    monkeypatch.setenv("VOLBIAS_DATA_MIRROR", str(shared_data))


def _runs(runs: Path, task: str, loss: str) -> list:
    """(config, run directory) of the smoke runs of one task and loss."""
    return [(run.config, run.directory(experiment.directory(runs)))
            for experiment in which_volume_experiments("smoke", 0) for run in experiment.runs
            if run.config.task == task and run.config.loss == loss]


def _cases(config) -> dict:
    return {case.id: case for case in load_task(config.task, **config.resolved_task_options())}


@pytest.mark.parametrize("key", TASK_KEYS)
def test_ce_soft_volume_error_matches_cases_csv(chapter, key: str) -> None:
    glued, runs = chapter
    frame = pd.concat([pd.read_csv(d / "cases.csv") for _, d in _runs(runs, TASK_KEYS[key], "ce")])
    expected = float((frame.pred_volume_soft - frame.expected_volume).mean())
    # the chapter sums the float16 maps of probabilities.npz; cases.csv was written from float32 maps
    assert glued[f"wv_{key}_ce_soft_err"] == pytest.approx(expected, rel=1e-3, abs=0.5)
    assert glued[f"wv_{key}_n"] == len(frame)


@pytest.mark.parametrize("key", TASK_KEYS)
def test_sd_threshold_error_from_probability_maps(chapter, key: str) -> None:
    glued, runs = chapter
    errors = []
    for config, run_dir in _runs(runs, TASK_KEYS[key], "sd"):
        cases = _cases(config)
        with np.load(run_dir / "probabilities.npz") as maps:
            for case_id in maps.files:
                prob = maps[case_id].astype(np.float64) * cases[case_id].mask
                errors.append(np.count_nonzero(prob > 0.5) - cases[case_id].marginals.sum(dtype=np.float64))
    assert glued[f"wv_{key}_sd_thr_err"] == pytest.approx(np.mean(errors), rel=1e-9, abs=1e-6)


def test_fold0_temperature_minimises_nll_of_fold1(chapter) -> None:
    """Cross-fitting: fold 0's temperature is the NLL optimum on the held-out maps of fold 1."""
    glued, runs = chapter
    config, run_dir = next((c, d) for c, d in _runs(runs, "synthetic", "sd") if c.fold == 1)
    cases = _cases(config)
    logits, labels = [], []
    with np.load(run_dir / "probabilities.npz") as maps:
        for case_id in maps.files:
            case = cases[case_id]
            p = np.clip(maps[case_id].astype(np.float64)[case.mask], 1e-4, 1 - 1e-4)
            logits.append(np.log(p / (1 - p)))
            labels.append(case.label[case.mask].astype(np.float64))
    z, y = np.concatenate(logits), np.concatenate(labels)

    def nll(t: float) -> float:
        return float(-np.mean(y * log_expit(z / t) + (1 - y) * log_expit(-z / t)))

    fitted = glued["wv_syn_sd_temperature_fold0"]
    grid_best = min(nll(t) for t in np.exp(np.linspace(np.log(0.02), np.log(50.0), 400)))
    assert nll(fitted) <= grid_best + 1e-6


@pytest.mark.parametrize("key", TASK_KEYS)
def test_ranked_best_is_the_smallest_absolute_error(chapter, key: str) -> None:
    glued, _ = chapter
    others = [v for name, v in glued.items() if name.startswith(f"wv_{key}_") and name.endswith("_abs")
              and name != f"wv_{key}_best_abs"]
    assert others and glued[f"wv_{key}_best_abs"] <= min(others) + 1e-9
    for loss in ("ce", "sd"):
        assert 0.0 <= glued[f"wv_{key}_{loss}_ece"] <= 1.0
        assert 0.0 <= glued[f"wv_{key}_{loss}_dice"] <= 1.0
        assert glued[f"wv_{key}_{loss}_temperature"] > 0
