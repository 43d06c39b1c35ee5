"""The Results chapter at the smoke profile: its verdict table shows the intervals and the corrected
p-values behind every verdict, its figures render, its convergence gate follows the runs' records and its
calibration numbers are measured against the marginals. Executed once per session by the ``book`` fixture."""

from __future__ import annotations

import io

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml

from volbias.analysis import book_runs
from volbias.data import load_task
from volbias.training import RunConfig

pytestmark = pytest.mark.slow


@pytest.fixture
def results(book, monkeypatch: pytest.MonkeyPatch):
    """The Results chapter after the experiment chapters; recomputations read the chapters' data mirror."""
    monkeypatch.setenv("VOLBIAS_DATA_MIRROR", str(book.mirror.root))
    return book.step("results")


def executed(result) -> nbformat.NotebookNode:
    return nbformat.read(result.work_dir / "executed" / f"{result.step.name}.ipynb", as_version=4)


def outputs(cell) -> list[dict]:
    return cell.get("outputs", []) if cell.cell_type == "code" else []


@pytest.mark.parametrize("step", ["results", "results_alone"])
def test_verdict_table_shows_intervals_and_corrected_p_values(book, step: str) -> None:
    result = book.step(step)
    cells = executed(result).cells
    (shown,) = [c for c in cells if c.cell_type == "code" and "present.table(shown_verdict" in c.source]
    html = "".join(o["data"].get("text/html", "") for o in outputs(shown) if "data" in o)
    for header in ("interval used", "estimate [95 % CI]", "p", "p (Holm)", "verdict", "not tested because"):
        assert f">{header}</th>" in html, header
    groups = result.value("claim1_n_groups")
    assert groups >= 1 and html.count(">Dice SD - CE<") == groups
    assert html.count(" [") >= groups  # every claim-1 row shows an interval
    table = pd.read_json(io.StringIO(result.value("results_claims_table")), orient="records")
    assert len(table) == html.count("<tr>") - 1  # the glued table is the one shown, row for row
    first = table[table.claim.astype(str) == "1"]
    tested = first.p_value.notna()
    # Holm over the claim-1 rows, recomputed from the raw p-values of the glued table
    p = first.p_value[tested].to_numpy(float)
    order = np.argsort(p)
    holm = np.minimum(1, np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order]))
    np.testing.assert_allclose(first.p_holm[tested].to_numpy(float)[order], holm)


@pytest.mark.parametrize("step", ["results", "results_alone"])
def test_figures_render(book, step: str) -> None:
    cells = executed(book.step(step)).cells
    names = ("fig-results-volumes", "fig-results-probabilities", "fig-results-reliability")
    for name in names:
        (glued,) = [c for c in cells if c.cell_type == "code" and f'plots.glue_figure("{name}"' in c.source]
        images = [o for o in outputs(glued) if o.get("metadata", {}).get("scrapbook", {}).get("name") == name]
        assert len(images) == 1 and any(k.endswith("image/png") for k in images[0]["data"]), name
        assert any(c.cell_type == "markdown" and f":::{{glue:figure}} {name}\n:name: {name}" in c.source
                   for c in cells), name
    assert book.step(step).value("results_n_reliability") >= 1


def test_stored_cpu_runs_are_their_own_group(results) -> None:
    """The stored five-fold BR18-sample CPU runs (budget 1.0) enter as a labelled group of their own."""
    stored = pd.read_csv(book_runs.STORED_CONVERGENCE / "cases.csv", dtype={"case_id": str})
    stored = stored[stored.budget == 1.0]
    table = pd.read_json(io.StringIO(results.value("results_claims_table")), orient="records")
    rows = table[table.group == "stored CPU runs, 5 folds: BR18-sample"]
    assert set(rows.claim.astype(str)) == {"1", "3"}
    assert (rows.n == (stored.loss == "sd").sum()).all()
    sd = stored[stored.loss == "sd"]
    bias = (sd.pred_volume_hard - sd.expected_volume).sum() / sd.expected_volume.sum()
    assert rows[rows.claim.astype(str) == "3"].estimate.iloc[0] == pytest.approx(bias)


def test_unconverged_runs_make_their_group_not_tested(results) -> None:
    """The phantoms of the most uncertain independent-noise setting: verdicts follow the runs' own records."""
    base = "controlled_uncertainty/smoke/independent-r4-sigma3.6/synthetic"
    flags = [bool(results.cases(d).converged.astype(str).eq("True").all()) for d in results.runs_under(base)
             if d.parent.name in ("ce", "sd")]
    assert len(flags) == 2
    key = "book_smoke_synthetic_independent_noise_sigma_r_0_9"
    for claim in ("claim1", "theory"):
        assert (results.value(f"{claim}_{key}") == "not tested") is (not all(flags)), claim


def test_phantom_verdicts_read_the_fresh_test_phantoms(results) -> None:
    base = "controlled_uncertainty/smoke/independent-r4-sigma3.6/synthetic"
    (sd_run,) = [d for d in results.runs_under(base) if d.parent.name == "sd"]
    n_test = int((results.cases(sd_run).split == "test").sum())
    table = pd.read_json(io.StringIO(results.value("results_claims_table")), orient="records")
    row = table[(table.claim.astype(str) == "theory")
                & (table.group == "book (smoke): synthetic, independent noise, sigma/R = 0.9")]
    assert n_test > 0 and row.n.tolist() == [n_test]


def test_reliability_against_the_exact_marginals(results) -> None:
    base = "controlled_uncertainty/smoke/independent-r4-sigma3.6/synthetic"
    for run_dir in results.runs_under(base):
        loss = run_dir.parent.name
        if loss not in ("ce", "sd"):
            continue
        config = RunConfig.from_dict(yaml.safe_load((run_dir / "config.yaml").read_text()))
        task = load_task("synthetic", **config.resolved_task_options())
        cases = {c.id: c for c in [*task.cases, *task.test]}
        probs, targets = [], []
        with np.load(run_dir / "probabilities.npz") as maps:
            for case_id in maps.files:
                probs.append(maps[case_id].astype(np.float64)[cases[case_id].mask])
                targets.append(cases[case_id].marginals[cases[case_id].mask].astype(np.float64))
        p, m = np.concatenate(probs), np.concatenate(targets)
        edges = np.linspace(0, 1, 11)
        which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, 9)
        ece = sum(abs(p[which == b].mean() - m[which == b].mean()) * (which == b).sum()
                  for b in range(10) if (which == b).any()) / p.size
        assert results.value(f"results_ece_phantoms_{loss}") == pytest.approx(ece, abs=1e-4), loss
