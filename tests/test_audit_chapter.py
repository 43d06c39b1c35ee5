"""The chapter "Audit your own model" at the smoke profile: its glued numbers recomputed with numpy from the
brain-tumour runs it audits (``cases.csv``, ``probabilities.npz``) and the data, from the phantoms it audits
with known truth and from its reorientation example, its NIfTI export and its figures. The chapter is executed
once per session by the ``book`` fixture (step "audit")."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from test_audit_numbers import MARGIN, _ece, _region, _tau_star

from volbias.analysis import book_runs
from volbias.data import load_task, make_phantoms
from volbias.training.run_files import run_convergence

pytestmark = pytest.mark.slow


@pytest.fixture
def audit(book, monkeypatch: pytest.MonkeyPatch):
    """The chapter's snapshot; recomputations read the same data mirror as the chapter."""
    monkeypatch.setenv("VOLBIAS_DATA_MIRROR", str(book.mirror.root))
    return book.step("audit")


def _runs(result) -> pd.DataFrame:
    """One row per case of the smoke brain-tumour runs the chapter trained, with the run's directory."""
    experiment = book_runs.brain_tumour("smoke", seed=0, folds=[0])
    tables = []
    for run in experiment.runs:
        run_dir = run.directory(experiment.directory(result.runs_dir))
        tables.append(pd.read_csv(run_dir / "cases.csv", dtype={"case_id": str}).assign(run_dir=str(run_dir)))
    return pd.concat(tables, ignore_index=True)


def _maps(result, loss: str) -> list[tuple[str, np.ndarray, np.ndarray, float]]:
    """(case id, map, reference, voxel ml) of every validation case of the runs of ``loss``."""
    experiment = book_runs.brain_tumour("smoke", seed=0, folds=[0])
    data = {c.id: c for c in load_task("BR18-sample", **experiment.runs[0].config.resolved_task_options())}
    runs = _runs(result)
    out = []
    for run_dir, group in runs[(runs.loss == loss) & (runs.split == "validation")].groupby("run_dir"):
        with np.load(Path(run_dir) / "probabilities.npz") as archive:
            for case_id in group.case_id:
                case = data[case_id]
                p = np.where(case.mask, np.clip(archive[case_id].astype(np.float64), 0, 1), 0.0)
                out.append((case_id, p, (case.label > 0.5).astype(np.float64), float(np.prod(case.spacing)) / 1000))
    return out


def test_every_case_of_the_validation_fold_is_audited(audit) -> None:
    experiment = book_runs.brain_tumour("smoke", seed=0, folds=[0])
    data = load_task("BR18-sample", **experiment.runs[0].config.resolved_task_options())
    for loss in ("ce", "sd"):
        assert sorted(case_id for case_id, *_ in _maps(audit, loss)) == sorted(data.folds[0])
    assert audit.value("audit_n_cases") == len(data.folds[0])
    assert audit.value("audit_task") == "BR18-sample"


@pytest.mark.parametrize("loss", ["ce", "sd"])
def test_glued_numbers_match_the_runs(audit, loss: str) -> None:
    cases = _maps(audit, loss)
    ref = np.array([r.sum() * ml for _, _, r, ml in cases])
    soft = np.array([p.sum() * ml for _, p, _, ml in cases])
    hard = np.array([(p > 0.5).sum() * ml for _, p, _, ml in cases])
    assert audit.value(f"audit_{loss}_bias_soft") == pytest.approx((soft - ref).sum() / ref.sum(), rel=1e-6)
    assert audit.value(f"audit_{loss}_bias_hard") == pytest.approx((hard - ref).sum() / ref.sum(), rel=1e-6)
    dice = [2 * np.sum((p > 0.5) & (r > 0.5)) / ((p > 0.5).sum() + (r > 0.5).sum()) for _, p, r, _ in cases]
    assert audit.value(f"audit_{loss}_dice") == pytest.approx(np.mean(dice))
    taus, tau_volumes = [], []
    for _, p, _, ml in cases:
        values = np.sort(p[p > 0])[::-1]
        tau = np.max(2 * np.cumsum(values) / (np.arange(1, values.size + 1) + values.sum())) / 2
        taus.append(tau)
        tau_volumes.append((p > tau).sum() * ml)
    assert audit.value(f"audit_{loss}_tau_star") == pytest.approx(np.mean(taus))
    assert audit.value(f"audit_{loss}_bias_tau_star") == pytest.approx(
        (np.sum(tau_volumes) - ref.sum()) / ref.sum(), rel=1e-6)
    regions = [_region(p, r) for _, p, r, _ in cases]
    pooled_ece = _ece(np.concatenate([p[g] for (_, p, _, _), g in zip(cases, regions)]),
                      np.concatenate([r[g] for (_, _, r, _), g in zip(cases, regions)]))
    assert audit.value(f"audit_{loss}_ece") == pytest.approx(pooled_ece, rel=1e-5)
    all_p = np.concatenate([p.ravel() for _, p, _, _ in cases])
    assert audit.value(f"audit_{loss}_intermediate_share") == pytest.approx(
        np.sum((all_p > 0.05) & (all_p < 0.95)) / np.sum(all_p > 0.05))
    if len(cases) < 20:
        assert audit.value(f"audit_{loss}_verdict").startswith(
            f"Not enough cases to judge: {len(cases)} cases audited; a verdict needs at least 20.")


def test_calibration_constants_in_the_text_are_those_of_the_computation(audit) -> None:
    """The prose glues the calibration region's margin and probability floor; the ECE above was recomputed
    with the region built from the test's own constants, so both must agree."""
    assert audit.value("audit_margin") == MARGIN


def test_convergence_of_the_runs_and_the_binary_note(audit) -> None:
    runs = _runs(audit).drop_duplicates("run_dir")
    runs = runs.assign(converged=[run_convergence(d).converged for d in runs.run_dir])  # the rule, from the logs
    assert audit.value("audit_n_runs") == len(runs)
    assert audit.value("audit_n_converged") == int(runs.converged.sum())
    note = audit.value("audit_binary_note")
    if not runs.converged.all():
        assert note.startswith("The networks of this build are not all converged")
    elif audit.value("audit_sd_intermediate_share") < audit.value("audit_ce_intermediate_share"):
        assert note.startswith("SD's map is the more nearly binary one")
    else:
        assert note.startswith("Here SD's map is not the more nearly binary one")


def test_nifti_export_keeps_maps_labels_and_spacing(audit) -> None:
    experiment = book_runs.brain_tumour("smoke", seed=0, folds=[0])
    data = {c.id: c for c in load_task("BR18-sample", **experiment.runs[0].config.resolved_task_options())}
    nifti = audit.runs_dir / "audit" / "smoke" / "nifti"
    for loss in ("ce", "sd"):
        for case_id, p, r, _ in _maps(audit, loss):
            pred = nib.load(nifti / loss / f"{case_id}.nii.gz")
            ref = nib.load(nifti / "reference" / f"{case_id}.nii.gz")
            np.testing.assert_allclose(np.asarray(pred.dataobj, dtype=np.float64), p, rtol=0, atol=1e-7)
            np.testing.assert_array_equal(np.asarray(ref.dataobj), r.astype(np.uint8))
            assert pred.header.get_zooms() == pytest.approx(data[case_id].spacing)
            assert ref.header.get_zooms() == pytest.approx(data[case_id].spacing)


def test_reports_are_written_where_the_chapter_says(audit) -> None:
    for loss in ("ce", "sd"):
        report = audit.runs_dir / audit.value(f"audit_{loss}_report").removeprefix("<runs>/")
        assert report.is_file() and "## Verdict" in report.read_text()
        summary = json.loads((report.parent / "summary.json").read_text())
        assert summary["relative_bias"]["soft"]["value"] == pytest.approx(audit.value(f"audit_{loss}_bias_soft"))
        cases = pd.read_csv(report.parent / "cases.csv", dtype={"case_id": str})
        assert sorted(cases.case_id) == sorted(case_id for case_id, *_ in _maps(audit, loss))


def test_figures_are_glued_as_images(audit) -> None:
    executed = json.loads((audit.work_dir / "executed" / "audit.ipynb").read_text())
    figures = {}
    for cell in executed["cells"]:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name", "")
            if name.startswith("fig-"):
                figures[name] = output["data"]
    assert set(figures) == {f"fig-audit-{kind}-{loss}" for kind in ("volumes", "calibration") for loss in ("ce", "sd")} \
        | {"fig-audit-phantoms", "fig-audit-orientation"}
    for name, data in figures.items():
        assert "application/papermill.record/image/png" in data, name


def _phantoms(audit) -> list:
    """The phantoms the chapter audits (smoke profile, seed 0), drawn again."""
    return make_phantoms(dims=3, n_cases=audit.value("audit_phantom_n_cases"), n_raters=4, noise="independent",
                         sigma=1.5, seed=0)


def test_phantom_verdicts_follow_the_known_truth(audit) -> None:
    """The soft-volume biases of the calibrated map and of the soft-Dice optimum (p > tau*, tau* found here by
    trying every top-k cut), against the raters' mean and against the exact expected volume."""
    phantoms = _phantoms(audit)
    assert len(phantoms) >= 20 and audit.value("audit_phantom_n_raters") == 4
    expected = np.array([c.marginals.astype(np.float64).sum() for c in phantoms])
    raters = np.array([c.raters.astype(np.float64).mean(axis=0).sum() for c in phantoms])
    calibrated = np.array([c.marginals.astype(np.float32).astype(np.float64).sum() for c in phantoms])
    optimum = np.array([float((c.marginals.astype(np.float64) > _tau_star(c.marginals.astype(np.float64))).sum())
                        for c in phantoms])
    for key, soft in (("ce", calibrated), ("sd", optimum)):
        assert audit.value(f"audit_phantom_{key}_bias") == pytest.approx((soft - raters).sum() / raters.sum(), rel=1e-4)
        assert audit.value(f"audit_phantom_{key}_true_bias") == pytest.approx(
            (soft - expected).sum() / expected.sum(), abs=1e-6)
    ce, sd = audit.value("audit_phantom_ce_verdict"), audit.value("audit_phantom_sd_verdict")
    assert not ce.startswith("Not enough cases") and not sd.startswith("Not enough cases")
    assert "The soft volumes are equivalent to the reference within ±5%" in ce
    assert audit.value("audit_phantom_ce_status") == "equivalent to the reference within ±5%"
    assert "The maps are binary (--allow-binary)" in sd


def test_orientation_example(audit) -> None:
    """Read as stored, the RAS map and the LPS reference give the naive Dice; flipped, the right one, which the
    audit reports."""
    phantoms = _phantoms(audit)[: audit.value("audit_orient_n_cases")]

    def dice(a, b):
        return 2 * np.sum(a & b) / (a.sum() + b.sum())

    naive, right = [], []
    for case in phantoms:
        hard = case.marginals > 0.5
        majority = case.raters.mean(axis=0) > 0.5
        naive.append(dice(hard, majority[::-1, ::-1, :]))
        right.append(dice(hard, majority))
    assert audit.value("audit_orient_naive_dice") == pytest.approx(np.mean(naive))
    assert audit.value("audit_orient_dice") == pytest.approx(np.mean(right))
    assert audit.value("audit_orient_naive_dice") < audit.value("audit_orient_dice") - 0.2
    assert audit.value("audit_orient_note").endswith(
        "map stored in RAS axis order, reference in LPS: map reoriented onto the reference grid")
