"""The Results chapter at the smoke profile: it opens with the analysis plan, every verdict follows the plan's
rule from the interval in its row, its estimates are recomputed from the runs, the live runs agree with their
stored twins, its figures render and it glues what the landing page pastes. Executed once per session by the
``book`` fixture."""

from __future__ import annotations

import io
from html import escape as html_escape

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml

from book_runner import REFERENCE
from volbias.analysis import plan
from volbias.data import load_task
from volbias.training import RunConfig

pytestmark = pytest.mark.slow

FIGURES = ("fig-results-networks", "fig-results-volumes", "fig-results-probabilities", "fig-results-reliability",
           "fig-results-verdicts", "fig-headline")
HIGH_PHANTOMS = "controlled_uncertainty/smoke/independent-r4-sigma3.6/synthetic"


@pytest.fixture
def results(book, monkeypatch: pytest.MonkeyPatch):
    """The Results chapter after the experiment chapters; recomputations read the chapters' data mirror."""
    monkeypatch.setenv("VOLBIAS_DATA_MIRROR", str(book.mirror.root))
    return book.step("results")


def executed(result) -> nbformat.NotebookNode:
    return nbformat.read(result.work_dir / "executed" / f"{result.step.name}.ipynb", as_version=4)


def outputs(cell) -> list[dict]:
    return cell.get("outputs", []) if cell.cell_type == "code" else []


def verdicts(result) -> pd.DataFrame:
    table = pd.read_json(io.StringIO(result.value("results_claims_table")), orient="records")
    return table.assign(claim=table.claim.astype(str))


def test_the_chapter_opens_with_the_plan(results) -> None:
    cells = executed(results).cells
    first = next(c for c in cells if c.cell_type == "code" and any("text/html" in o.get("data", {})
                                                                      for o in outputs(c)))
    html = "".join(o["data"]["text/html"] for o in outputs(first) if "text/html" in o.get("data", {}))
    assert "The analysis plan" in html
    for item in plan.PLAN:
        assert html_escape(item.rule.split(";")[0], quote=False) in html
    assert results.value("results_tau") == f"{plan.VOLUME_MARGIN:.0%}"


@pytest.mark.parametrize("step", ["results", "results_alone"])
def test_every_verdict_follows_the_plan_from_its_interval(book, step: str) -> None:
    table = verdicts(book.step(step))
    assert len(table) and set(table.verdict) <= set(plan.VERDICTS)
    rules = {"1": lambda r: plan.superiority_verdict(r.estimate, r.ci_low, r.ci_high),
             "2": lambda r: plan.outside_verdict(r.ci_low, r.ci_high),
             "2 vs CE": lambda r: plan.superiority_verdict(r.estimate, r.ci_low, r.ci_high, plan.VOLUME_MARGIN),
             "3": lambda r: plan.inside_verdict(r.ci_low, r.ci_high),
             "3 vs CE": lambda r: plan.outside_verdict(r.ci_low, r.ci_high),
             "theory": lambda r: plan.inside_verdict(r.ci_low, r.ci_high)}
    for _, row in table.iterrows():
        networks = min(int(n) for n in row.networks.split(" / "))
        if row.note.startswith("not tested"):
            assert row.verdict == "not tested"
        elif networks < plan.MIN_NETWORKS or row.n < plan.MIN_CASES:
            assert row.verdict == "underpowered" and row.note.startswith("underpowered")
        else:
            assert row.verdict == rules[row.claim](row), row.to_dict()
    claim1 = table[table.claim == "1"]
    level = 1 - (1 - plan.CONFIDENCE) / len(claim1)
    assert all(text.endswith(f"{100 * level:.2f}".rstrip("0").rstrip(".") + "%") for text in claim1.interval)


def test_smoke_runs_are_not_tested_and_the_gate_says_what_it_changes(results) -> None:
    """Three epochs never pass the convergence rule: every row of the book's groups is "not tested", and the
    table without the rule differs exactly in the rows whose verdict is something else there."""
    table = verdicts(results)
    assert (table.verdict == "not tested").all()
    assert results.value("results_n_verdicts") == len(table)
    assert 0 < results.value("results_n_gate_changes") <= len(table)


def test_estimates_are_recomputed_from_the_runs(results) -> None:
    table = verdicts(results).set_index(["claim", "group"])
    base = "brain_tumour/smoke/BR18-sample/BR18-sample"
    frames = {d.parent.name: results.cases(d) for d in results.runs_under(base)}
    ce, sd = frames["ce"].set_index("case_id"), frames["sd"].set_index("case_id")
    for source in ("book (smoke)", "reference (cpu)"):
        group = f"{source}: BR18-sample"
        bias = (sd.pred_volume_hard - sd.expected_volume).sum() / sd.expected_volume.sum()
        assert table.loc[("3", group), "estimate"] == pytest.approx(bias)
        assert table.loc[("1", group), "estimate"] == pytest.approx((sd.dice - ce.dice.loc[sd.index]).mean())
        apart = (sd.pred_volume_hard - ce.pred_volume_soft.loc[sd.index]).sum() / sd.expected_volume.sum()
        assert table.loc[("3 vs CE", group), "estimate"] == pytest.approx(apart)


def test_phantom_rows_read_the_fresh_test_phantoms_and_their_theory(results) -> None:
    (sd_run,) = [d for d in results.runs_under(HIGH_PHANTOMS) if d.parent.name == "sd"]
    cases = results.cases(sd_run)
    test = cases[cases.split == "test"]
    rows = verdicts(results)
    rows = rows[rows.group == "book (smoke): synthetic, independent noise, sigma/R = 0.9"].set_index("claim")
    assert set(rows.index) == {"1", "2", "2 vs CE", "theory"}
    assert (rows.n == len(test)).all()
    assert rows.loc["theory", "rivals"].startswith("E[V] (0 %)")


def test_live_runs_agree_with_their_stored_twins(results) -> None:
    """The stored sets of the tests are copies of the live runs: every twin is identical."""
    live = [d for d in results.done if d.parts[0] in ("controlled_uncertainty", "brain_tumour", "lidc")]
    copies = sum(1 for d in live) + sum(1 for d in live if d.parts[0] == "controlled_uncertainty")
    assert results.value("results_n_twins") == copies  # the reference stand-in and the GPU-like set
    assert results.value("results_n_identical") == copies
    assert results.value("results_primary") == "reference (cpu)"


@pytest.mark.parametrize("step", ["results", "results_alone"])
def test_figures_render(book, step: str) -> None:
    cells = executed(book.step(step)).cells
    for name in FIGURES:
        (glued,) = [c for c in cells if c.cell_type == "code" and f'"{name}"' in c.source and "glue_figure" in c.source]
        images = [o for o in outputs(glued) if o.get("metadata", {}).get("scrapbook", {}).get("name") == name]
        assert len(images) == 1 and any(k.endswith("image/png") for k in images[0]["data"]), name
        assert any(c.cell_type == "markdown" and f":::{{glue:figure}} {name}\n:name: {name}" in c.source
                   for c in cells), name


def test_what_the_landing_page_pastes(results) -> None:
    table = verdicts(results)
    primary = table[table.group.str.startswith("reference (cpu)") & table.claim.isin(["1", "2", "3"])]
    for answer in ("yes", "no", "inconclusive", "underpowered"):
        assert results.value(f"verdict-count-{answer}") == int((primary.verdict == answer).sum())
    assert str(results.value("headline-summary")).startswith(f"On {primary.group.nunique()} groups of the reference")
    assert results.value("claim1_primary_groups") == int((primary.claim == "1").sum())


def test_alone_it_trains_its_fallback_and_is_its_own_primary_source(book) -> None:
    alone = book.step("results_alone")
    assert alone.value("results_fallback") is True
    assert alone.value("results_primary") == "book (smoke)"
    assert alone.value("results_n_twins") == 0


def test_reliability_against_the_exact_marginals(results) -> None:
    for run_dir in results.runs_under(HIGH_PHANTOMS):
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


def test_the_reference_stand_in_is_what_the_runner_stored(results) -> None:
    assert (results.work_dir / "results" / REFERENCE / "manifest.json").is_file()
