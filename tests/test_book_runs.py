"""Tests of the experiment definitions, the run bookkeeping, the claim groups and the phantom theory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from volbias.analysis import claims, book_runs, phantom_theory
from volbias.data import make_phantoms
from volbias.theory.boundary_shift import shift_dice_optimal_mask
from volbias.theory.expected_dice import expected_dice


def test_synthetic_settings_follow_the_grid() -> None:
    for profile, grid in book_runs.SYNTHETIC_GRIDS.items():
        settings = book_runs.synthetic_settings(profile)
        sweep = settings[settings.sweep == "uncertainty"]
        assert len(sweep) == len(grid["noise"]) * len(grid["relative_sigma"])
        np.testing.assert_allclose(sweep.sigma / sweep.radius, sweep.relative_sigma, atol=1e-4)
        size = settings[settings.sweep == "size"]
        assert (size.sigma == grid["size_sigma"]).all() and sorted(size.radius) == sorted(grid["size_radius"])
        assert settings.setting.is_unique
        for options in settings.task_options:  # every phantom fits its image (the loader's own check)
            make_phantoms(**{**{k: v for k, v in options.items() if k != "n_test"}, "n_cases": 1})
    with pytest.raises(ValueError, match="profile='laptop'"):
        book_runs.synthetic_settings("laptop")


def test_experiments_plan_distinct_directories() -> None:
    for profile in ("smoke", "cpu", "gpu"):
        for experiment in (book_runs.controlled_uncertainty(profile), book_runs.lidc(profile),
                           book_runs.brain_tumour(profile), book_runs.stroke(profile)):
            dirs = [run.directory(Path("/r")) for run in experiment.runs]
            assert len(set(dirs)) == len(dirs), (profile, experiment.name)
            assert all(run.config.profile == profile for run in experiment.runs)
    assert {r.config.task for r in book_runs.brain_tumour("gpu").runs} == {"BR18"}
    assert {r.config.task for r in book_runs.brain_tumour("cpu").runs} == {"BR18-sample"}
    fallback = book_runs.results_fallback("cpu")
    rel = {round(r.config.task_options["sigma"] / r.config.task_options["radius"], 3) for r in fallback.runs}
    seeds = book_runs.SYNTHETIC_GRIDS["cpu"]["seeds"]
    assert rel == {0.1, 0.9} and len(fallback.runs) == 2 * 2 * len(seeds)  # two settings x CE, SD x seeds
    assert {r.config.seed for r in fallback.runs} == set(seeds)
    assert all(r.config.task_options["seed"] == r.config.seed for r in fallback.runs)
    with pytest.raises(ValueError, match="not stroke tasks"):
        book_runs.stroke("cpu", tasks=("BR18",))


def test_isles_tasks_and_runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ISLES2018_Training").mkdir()
    assert book_runs.isles_tasks(tmp_path) == ["IS18"]
    monkeypatch.delenv(book_runs.ISLES_ENV, raising=False)
    assert book_runs.isles_tasks(None) == []
    monkeypatch.setenv(book_runs.ISLES_ENV, str(tmp_path))
    assert book_runs.isles_tasks(None) == ["IS18"]
    monkeypatch.setenv(book_runs.RUNS_ENV, str(tmp_path / "runs"))
    assert book_runs.default_runs_dir() == tmp_path / "runs"


def test_run_experiment_trains_missing_runs_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from volbias.training import RunResult, cell_jobs

    trained = []

    def fake_run(config, out_dir):
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True)
        (out_dir / "config.yaml").write_text(config.to_yaml())
        pd.DataFrame([{"task": config.task, "loss": config.loss, "fold": config.fold, "seed": config.seed,
                       "case_id": "c0", "dice": 0.5, "true_volume": 10.0, "expected_volume": 10.0,
                       "pred_volume_soft": 11.0, "pred_volume_hard": 12.0, "voxel_volume_ml": 1.0}]
                     ).to_csv(out_dir / "cases.csv", index=False)
        (out_dir / "DONE").write_text("")
        trained.append(config.loss)
        return RunResult(out_dir, config, trained=False)

    monkeypatch.setattr(cell_jobs, "run", fake_run)  # the debug launcher trains in this process
    experiment = book_runs.controlled_uncertainty("smoke")
    cases = book_runs.run_experiment(experiment, tmp_path, progress=False, launcher="debug")
    assert len(trained) == len(experiment.runs) == len(cases)
    assert set(cases.setting_name) == set(book_runs.synthetic_settings("smoke").setting)
    book_runs.run_experiment(experiment, tmp_path, progress=False, launcher="debug")
    assert len(trained) == len(experiment.runs)  # finished runs are reused
    again = book_runs.runs_of(tmp_path, ["controlled_uncertainty", "lidc"], "smoke")
    assert len(again) == len(cases)
    with pytest.raises(FileNotFoundError, match="no finished runs"):
        book_runs.experiment_cases(book_runs.lidc("smoke"), tmp_path)


def test_claim_groups() -> None:
    rows = []
    for task, opts, case in [("synthetic", {"sigma": 0.4, "radius": 4.0, "noise": "independent"}, "a"),
                             ("synthetic", {"sigma": 3.6, "radius": 4.0, "noise": "independent"}, "a"),
                             ("synthetic", {"sigma": 2.0, "radius": 4.0, "noise": "independent"}, "a"),
                             ("BR18-sample", {}, "b"), ("IS17", {}, "c"), ("LIDC", {}, "d"), ("LIDC", {}, "e")]:
        rows.append({"task": task, "case_id": case, **{f"task_options.{k}": v for k, v in opts.items()}})
    grouped, levels = claims.claim_groups(pd.DataFrame(rows), lidc_agree=["e"])
    assert levels == {"synthetic, independent noise, sigma/R = 0.9": "high",
                      "synthetic, independent noise, sigma/R = 0.1": "low", "BR18-sample": "low",
                      "IS17": "high", "LIDC, all nodules": "high", "LIDC, 4 raters agree": "low"}
    assert len(grouped) == 2 + 1 + 1 + 2 + 1  # the middle phantom setting is left out; LIDC "e" twice
    assert claims.slug("book (cpu): LIDC, 4 raters agree") == "book_cpu_lidc_4_raters_agree"


def test_theory_volumes_independent_is_best_top_k_by_monte_carlo() -> None:
    case = make_phantoms(radius=3.0, sigma=2.0, size=24, n_cases=1, n_blobs=1, seed=3)[0]
    row = phantom_theory.theory_volumes([case]).iloc[0]
    p = case.marginals.astype(float)
    assert row.expected_volume == pytest.approx(p.sum())
    assert row.ce_threshold == np.count_nonzero(p > 0.5)
    k = int(row.dice_optimal)
    order = np.argsort(-p.ravel(), kind="stable")

    def top(n: int) -> np.ndarray:
        mask = np.zeros(p.size, bool)
        mask[order[:n]] = True
        return mask.reshape(p.shape)

    rng = np.random.default_rng(0)
    labels = rng.random((4000, *p.shape)) < p
    def mc(mask: np.ndarray) -> float:
        inter = (labels & mask).sum((1, 2))
        return float(np.mean(2 * inter / (mask.sum() + labels.sum((1, 2)))))
    best = mc(top(k))
    for other in (k - 8, k + 8, int(row.ce_threshold)):
        assert best >= mc(top(other)) - 0.002
    assert expected_dice(top(k), p) == pytest.approx(best, abs=0.01)


def test_shift_volume_matches_exact_single_blob() -> None:
    """One blob: the masks that threshold p are the nested disks, so the theory's optimum is the exact one."""
    case = make_phantoms(radius=4.0, sigma=2.0, size=30, n_cases=1, n_blobs=1, noise="shift", seed=1)[0]
    grid = np.stack(np.meshgrid(np.arange(30.0), np.arange(30.0), indexing="ij"))
    d = np.sqrt(((grid - np.reshape(case.meta["centres"][0], (2, 1, 1))) ** 2).sum(0))
    exact = shift_dice_optimal_mask(d, case.meta["radii"][0], 2.0).sum()
    row = phantom_theory.theory_volumes([case]).iloc[0]
    assert row.dice_optimal == exact
    with pytest.raises(ValueError, match="not a synthetic phantom"):
        phantom_theory.theory_volumes([case.__class__(id="x", image=case.image, label=case.label, mask=case.mask,
                                                      spacing=case.spacing)])
