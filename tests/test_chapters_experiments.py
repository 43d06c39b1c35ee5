"""The experiment chapters' glued numbers against independent computations from the runs they wrote
("Which volume to trust" has its own module, test_which_volume_chapter.py).

The session's ``book`` fixture (tests/book_runner.py) executes the chapters at the smoke profile in book order,
once; each test reads the snapshot of one step (glued values, finished runs) and recomputes the glued
numbers from the run directories (``cases.csv``, ``probabilities.npz``) and the data.  A glued key that a
chapter no longer writes fails with the list of keys it does glue.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from book_runner import StepResult
from reference_ece import ece_by_hand
from volbias.analysis import book_runs
from volbias.data import load_task
from volbias.training import RunConfig

pytestmark = pytest.mark.slow

AGREEMENT_CV = 0.2  # the LIDC chapter's default


@pytest.fixture
def mirror_env(book, monkeypatch: pytest.MonkeyPatch) -> None:
    """Recomputations read the same data mirror as the chapters."""
    monkeypatch.setenv("VOLBIAS_DATA_MIRROR", str(book.mirror.root))


def rel_bias(cases: pd.DataFrame, column: str) -> float:
    """Relative volume bias sum(predicted - expected) / sum(expected)."""
    return float((cases[column] - cases.expected_volume).sum() / cases.expected_volume.sum())


def finished_runs(result: StepResult, prefix: str) -> Iterator[tuple[dict, Path]]:
    """(config, run directory) of the runs finished below ``prefix`` at the end of the step."""
    for run_dir in result.runs_under(prefix):
        yield yaml.safe_load((run_dir / "config.yaml").read_text()), run_dir


def cases_by_loss(result: StepResult, prefix: str, loss_options: dict | None = None,
                  **task_options: object) -> dict[str, pd.DataFrame]:
    """Cases of all finished runs below ``prefix`` (all folds), per loss, optionally of one setting and with
    the given loss options (``{}``: the default loss, no options)."""
    frames: dict[str, list[pd.DataFrame]] = {}
    for config, run_dir in finished_runs(result, prefix):
        if loss_options is not None and (config.get("loss_options") or {}) != loss_options:
            continue
        options = config.get("task_options") or {}
        if all(math.isclose(float(options.get(k, math.nan)), v) if isinstance(v, float) else options.get(k) == v
               for k, v in task_options.items()):
            frames.setdefault(config["loss"], []).append(result.cases(run_dir))
    if not frames:
        pytest.fail(f"no finished runs below {prefix} with {task_options} after step {result.step.name!r}")
    return {loss: pd.concat(parts, ignore_index=True) for loss, parts in frames.items()}



def pooled_maps(result: StepResult, prefix: str, loss: str, target: str = "label") -> tuple[np.ndarray, ...]:
    """Probabilities and targets of every validation voxel inside the masks, over the runs of one loss
    (without loss options)."""
    probs, targets = [], []
    for config, run_dir in finished_runs(result, prefix):
        if config["loss"] != loss or config.get("loss_options"):
            continue
        run_config = RunConfig.from_dict(config)
        cases = {c.id: c for c in load_task(run_config.task, **run_config.resolved_task_options())}
        with np.load(run_dir / "probabilities.npz") as maps:
            for case_id in maps.files:
                case = cases[case_id]
                probs.append(maps[case_id].astype(np.float64)[case.mask])
                targets.append(getattr(case, target)[case.mask].astype(np.float64))
    return np.concatenate(probs), np.concatenate(targets)


# --------------------------------------------------------------------------------- Controlled uncertainty


def test_controlled_uncertainty_glue_matches_runs(book) -> None:
    cu = book.step("controlled_uncertainty")
    planned = book_runs.controlled_uncertainty("smoke").runs
    # the results chapter's fallback runs were reused: every planned run exists exactly once
    assert cu.value("cu_n_runs") == len(planned) == len(cu.runs_under("controlled_uncertainty"))
    assert cu.value("cu_source") == "this build's runs" and cu.value("cu_n_twins") == 0
    settings = book_runs.synthetic_settings("smoke")
    sweep = settings[settings.sweep == "uncertainty"]
    for noise, tag in (("independent", ""), ("shift", "_shift")):
        rows = sweep[sweep.noise == noise]
        high, low = rows.loc[rows.relative_sigma.idxmax()], rows.loc[rows.relative_sigma.idxmin()]
        at_high = {loss: c[c.split == "test"] for loss, c in cases_by_loss(
            cu, "controlled_uncertainty", noise=noise, radius=float(high.radius), sigma=float(high.sigma)).items()}
        at_low = {loss: c[c.split == "test"] for loss, c in cases_by_loss(
            cu, "controlled_uncertainty", noise=noise, radius=float(low.radius), sigma=float(low.sigma)).items()}
        assert cu.value(f"cu_sd_bias_high{tag}") == pytest.approx(rel_bias(at_high["sd"], "pred_volume_hard"))
        assert cu.value(f"cu_sd_soft_bias_high{tag}") == pytest.approx(rel_bias(at_high["sd"], "pred_volume_soft"))
        assert cu.value(f"cu_ce_soft_bias_high{tag}") == pytest.approx(rel_bias(at_high["ce"], "pred_volume_soft"))
        assert cu.value(f"cu_sd_bias_low{tag}") == pytest.approx(rel_bias(at_low["sd"], "pred_volume_hard"))
        gap = at_high["sd"].expected_dice.mean() - at_high["ce"].expected_dice.mean()
        assert cu.value("cu_dice_gap_high" + tag) == pytest.approx(gap)
        if noise == "independent":  # R^2 of each network's volume on the expected volume, by hand
            ce = at_high["ce"]
            r2 = np.corrcoef(ce.pred_volume_soft, ce.expected_volume)[0, 1] ** 2
            assert cu.value("cu_r2_ce_min") == pytest.approx(r2) == cu.value("cu_r2_ce_max")


def test_controlled_uncertainty_reads_the_stored_seeds(book) -> None:
    stored = book.step("controlled_uncertainty_stored")
    assert stored.value("cu_source").startswith("the stored reference set")
    n = len(book_runs.controlled_uncertainty("smoke").runs)
    assert stored.value("cu_n_twins") == stored.value("cu_n_identical") == n
    live = book.step("controlled_uncertainty")
    for key in ("cu_sd_bias_high", "cu_ce_soft_bias_high_shift", "cu_theory_dice_bias_high"):
        assert stored.value(key) == pytest.approx(live.value(key))  # the stand-in is a copy of the live runs


# ------------------------------------------------------------------------------------------ Brain tumour


def test_brain_tumour_glue_matches_runs(book, mirror_env) -> None:
    br = book.step("brain_tumour")
    runs = cases_by_loss(br, "brain_tumour")
    ce, sd = runs["ce"], runs["sd"]
    assert br.value("br_n_cases") == ce.case_id.nunique() == sd.case_id.nunique()
    assert br.value("br_dice_ce") == pytest.approx(ce.dice.mean())
    assert br.value("br_dice_sd") == pytest.approx(sd.dice.mean())
    assert br.value("br_bias_sd_hard") == pytest.approx(rel_bias(sd, "pred_volume_hard"))
    assert br.value("br_bias_ce_soft") == pytest.approx(rel_bias(ce, "pred_volume_soft"))
    for loss in ("ce", "sd"):
        prob, label = pooled_maps(br, "brain_tumour", loss)
        assert br.value(f"br_ece_{loss}") == pytest.approx(ece_by_hand(prob, label), abs=1e-6)
        assert br.value(f"br_intermediate_{loss}") == pytest.approx(np.mean((prob > 0.05) & (prob < 0.95)))
    assert br.value("br5_networks") == 0  # no stored set


def test_brain_tumour_reads_the_stored_folds_and_twice_the_steps(book) -> None:
    stored = book.step("brain_tumour_stored")
    runs = cases_by_loss(stored, "brain_tumour")
    assert stored.value("br5_networks") == runs["sd"].fold.nunique()
    assert stored.value("br5_dice_sd") == pytest.approx(runs["sd"].dice.mean())
    assert stored.value("br5_bias_hard_sd") == pytest.approx(rel_bias(runs["sd"], "pred_volume_hard"))
    assert stored.value("br5_bias_soft_ce") == pytest.approx(rel_bias(runs["ce"], "pred_volume_soft"))
    # the stand-in's "twice the steps" runs are copies: nothing moves, and the text says so
    assert stored.value("br_x2_bias_hard_sd") == 0.0 and stored.value("br_x2_dice_mean_ce") == 0.0
    assert "moves neither loss's volume bias" in stored.value("br_x2_text")
    assert "reproduce the stored run" in stored.value("br_twins_text")


# -------------------------------------------------------------------------------------------------- LIDC


def test_lidc_glue_matches_runs_and_rater_masks(book, mirror_env) -> None:
    lidc = book.step("lidc")
    runs = cases_by_loss(lidc, "lidc", loss_options={})
    ce, sd = runs["ce"], runs["sd"]
    batch = cases_by_loss(lidc, "lidc", loss_options={"reduction": "batch"})["sd"]
    assert lidc.value("lidc_n_nodules") == ce.case_id.nunique() == sd.case_id.nunique()
    # Dice against the strict majority of the raters, on the nodules that have one
    config = next(c for c, _ in finished_runs(lidc, "lidc"))
    nodules = {c.id: c for c in load_task("LIDC", **RunConfig.from_dict(config).resolved_task_options())}
    majority = {cid: (n.raters.sum(0) >= 3) for cid, n in nodules.items()}
    with_majority = [cid for cid in ce.case_id if majority[cid].any()]
    for loss, frame in (("ce", ce), ("sd", sd), ("sd_batch", batch)):
        ref = frame[frame.case_id.isin(with_majority)]
        assert lidc.value(f"lidc_dice_{loss}") == pytest.approx(ref.dice.mean())
        assert lidc.value(f"lidc_empty_{loss}") == pytest.approx((ref.pred_volume_hard == 0).mean())
    assert lidc.value("lidc_n_ref") == len(with_majority)
    assert lidc.value("lidc_sd_bias_all") == pytest.approx(rel_bias(sd, "pred_volume_hard"))
    assert lidc.value("lidc_sd_batch_bias_all") == pytest.approx(rel_bias(batch, "pred_volume_hard"))
    assert lidc.value("lidc_ce_soft_bias_all") == pytest.approx(rel_bias(ce, "pred_volume_soft"))
    # per-rater Dice from the maps and the four rater masks (empty against empty counts 1)
    run_dir = next(d for c, d in finished_runs(lidc, "lidc") if c["loss"] == "sd" and not c.get("loss_options"))
    with np.load(run_dir / "probabilities.npz") as maps:
        per_rater = []
        for cid in maps.files:
            hard = maps[cid].astype(np.float32) > 0.5
            scores = [1.0 if not (hard.any() or r.any()) else 2 * (hard & (r > 0)).sum() / (hard.sum() + (r > 0).sum())
                      for r in nodules[cid].raters]
            per_rater.append(np.mean(scores))
    assert lidc.value("lidc_dice_raters_sd") == pytest.approx(np.mean(per_rater), abs=2e-3)  # maps stored as float16
    # nodules whose 4 raters agree (all mark it, area CV below 0.2), from the rater masks themselves
    config = next(c for c, _ in finished_runs(lidc, "lidc"))
    nodules = {c.id: c for c in load_task("LIDC", **RunConfig.from_dict(config).resolved_task_options())}
    areas = {cid: nodules[cid].raters.reshape(4, -1).sum(1).astype(float) for cid in ce.case_id}
    agree = [cid for cid, a in areas.items() if (a > 0).all() and a.std() / a.mean() < AGREEMENT_CV]
    assert lidc.value("lidc_n_agree") == len(agree)
    if agree:
        assert lidc.value("lidc_sd_bias_agree") == pytest.approx(rel_bias(sd[sd.case_id.isin(agree)],
                                                                          "pred_volume_hard"))
    for loss in ("ce", "sd"):  # calibration against the mean-rater map
        prob, marginals = pooled_maps(lidc, "lidc", loss, target="marginals")
        assert lidc.value(f"lidc_ece_{loss}") == pytest.approx(ece_by_hand(prob, marginals), abs=1e-6)
    missed = ce[(ce.case_id.isin(with_majority)) & (ce.pred_volume_hard == 0)]
    if len(missed):
        share = missed.pred_volume_soft.sum() / missed.expected_volume.sum()
        assert lidc.value("lidc_missed_soft_share") == pytest.approx(share)


def test_lidc_reads_the_stored_folds(book) -> None:
    stored = book.step("lidc_stored")
    live = book.step("lidc")
    assert stored.value("lidc_source").startswith("the stored reference set")
    for key in ("lidc_sd_bias_all", "lidc_ce_soft_bias_all", "lidc_sd_batch_bias_all", "lidc_dice_raters_sd"):
        assert stored.value(key) == pytest.approx(live.value(key))  # the stand-in is a copy of the live runs
    assert stored.value("lidc_twins_text").startswith("2 of 2 runs")  # SD per batch is read, not retrained


# ------------------------------------------------------------------------------------------------ Stroke


def test_stroke_chapter_without_data_trains_nothing(book) -> None:
    stroke = book.step("stroke")
    assert stroke.value("stroke_n_tasks") == 0
    assert not any(k.startswith("stroke_IS") for k in stroke.glued)
    assert stroke.runs_under("stroke") == []


def test_stroke_chapter_with_official_layout(book) -> None:
    stroke = book.step("stroke_official")
    assert stroke.value("stroke_n_tasks") == 1
    runs = cases_by_loss(stroke, "stroke")
    ce, sd = runs["ce"], runs["sd"]
    written = {"training_2", "training_11", "training_13", "training_20", "training_24"}
    assert set(ce.case_id) == set(sd.case_id) <= written
    assert stroke.value("stroke_IS17_n_cases") == ce.case_id.nunique()
    assert stroke.value("stroke_IS17_dice_ce") == pytest.approx(ce.dice.mean())
    assert stroke.value("stroke_IS17_sd_bias") == pytest.approx(rel_bias(sd, "pred_volume_hard"))
    assert stroke.value("stroke_IS17_ce_soft_bias") == pytest.approx(rel_bias(ce, "pred_volume_soft"))
