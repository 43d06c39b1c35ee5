"""Writing the audit: ``report.md`` with figures, ``cases.csv``, ``estimators.csv`` and ``summary.json``.

Everything is written into a fresh temporary folder next to ``out`` and renamed into place once complete;
a previous ``out`` (replaced only with ``overwrite``) is moved aside first and deleted last, and put back if
the rename fails, so ``out`` never holds half a report.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import volbias
from volbias.audit.errors import AuditError
from volbias.audit.measures import CALIBRATION_MARGIN, ECE_DEFINITION, INTERMEDIATE
from volbias.audit.plots import audit_figures
from volbias.audit.result import AuditResult
from volbias.audit.summary import volume_kinds
from volbias.audit.verdict import MIN_CASES, bias_status, tolerance_text
from volbias.estimators.compare import display_table

FIGURES = {"volumes": "figures/volumes.png", "calibration": "figures/calibration.png",
           "estimators": "figures/estimators.png"}


def check_out_dir(out: Path, overwrite: bool) -> None:
    """AuditError unless ``out`` is absent, an empty folder, or a folder to be replaced (``overwrite``)."""
    if out.exists() and not out.is_dir():
        raise AuditError(f"{out}: exists and is not a folder (--out)")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise AuditError(f"{out}: folder is not empty; pass --overwrite to replace it (--out)")


def publish(result: AuditResult, out: Path, overwrite: bool) -> None:
    """Write the report into a temporary sibling of ``out``, then move it into place."""
    check_out_dir(out, overwrite)
    parent = out.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=parent))
    try:
        staging.chmod(0o777 & ~_umask())  # mkdtemp makes a private folder; the report gets the usual rights
        write_report(result, staging)
        if not out.exists():
            staging.replace(out)
            return
        aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=parent))
        out.replace(aside / "previous")
        try:
            staging.replace(out)
        except BaseException:
            (aside / "previous").replace(out)
            aside.rmdir()
            raise
        shutil.rmtree(aside)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _plain(value: Any) -> Any:
    """JSON-ready copy: numpy scalars to Python, NaN to null, paths to strings."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def summary_dict(result: AuditResult) -> dict[str, Any]:
    """The content of ``summary.json``."""
    s = result.settings
    estimators = result.estimator_summary.drop(columns=["task", "loss"])
    return _plain({
        "volbias_version": volbias.__version__,
        "inputs": {"pred": s.pred, "references": list(s.references), "format": s.input_format,
                   "channel": list(s.channels) if s.channels else None, "labels": s.labels, "threshold": s.threshold,
                   "seed": s.seed, "n_bins": s.n_bins, "tolerance": s.tolerance, "allow_binary": s.allow_binary,
                   "sigmoid": s.sigmoid, "workers": s.workers},
        "cases": {"audited": result.cases["case_id"].tolist(), "without_reference": list(result.without_reference),
                  "references_without_prediction": list(result.without_prediction),
                  "segmentations_without_probabilities": list(result.without_probabilities)},
        **result.numbers,
        "equivalence": ({kind: bias_status(bias, s.tolerance) for kind, bias in result.numbers["relative_bias"].items()}
                        if result.numbers["n_cases"] >= MIN_CASES else None),
        "estimators": estimators.to_dict(orient="records"),
        "notes": result.notes,
        "verdict": result.verdict,
    })


def _estimate(entry: dict[str, float], key: str = "mean", fmt: str = ".3f", percent: bool = False) -> str:
    value, low, high = entry[key], entry["ci_low"], entry["ci_high"]
    if percent:
        return f"{value:+.1%} [{low:+.1%}, {high:+.1%}]" if np.isfinite(low) else f"{value:+.1%}"
    return f"{value:{fmt}} [{low:{fmt}}, {high:{fmt}}]" if np.isfinite(low) else f"{value:{fmt}}"


def _spread(bias: dict[str, Any]) -> str:
    spread = bias["per_case"]
    if not np.isfinite(spread["median"]):
        return "n/a"
    return f"{spread['median']:+.1%} [{spread['q25']:+.1%}, {spread['q75']:+.1%}]"


KIND_NAMES = {"hard": "thresholded", "soft": "soft", "argmax": "argmax (nnU-Net)", "tau_star": "tau* threshold",
              "dice_optimal": "Dice-optimal mask"}


def overall_table(result: AuditResult) -> pd.DataFrame:
    """The report's table of overall numbers (value with its 95% CI where there is one)."""
    n, t = result.numbers, result.settings.threshold
    names = {kind: KIND_NAMES[kind] + (f" (p > {t:g})" if kind == "hard" else "")
             for kind in volume_kinds(result.cases)}
    rows = [("cases", str(n["n_cases"])), ("Dice (thresholded vs reference)", _estimate(n["dice"])),
            ("Dice the map expects of itself", _estimate(n["expected_dice_hard"])),
            ("mean reference volume (ml)", f"{n['mean_volume_ml']['reference']:.3f}")]
    for kind, name in names.items():
        bias = n["relative_bias"][kind]
        rows.append((f"{name} volume: mean (ml)", f"{n['mean_volume_ml'][kind]:.3f}"))
        rows.append((f"{name} volume: relative bias, pooled", _estimate(bias, "value", percent=True)))
        rows.append((f"{name} volume: relative error per case, median [quartiles]", _spread(bias)))
        rows.append((f"{name} volume: within {tolerance_text(result.settings.tolerance)}?",
                     bias_status(bias, result.settings.tolerance) if n["n_cases"] >= MIN_CASES
                     else f"not judged (fewer than {MIN_CASES} cases)"))
        rows.append((f"{name} volume: mean error (ml)", _estimate(n["mean_error_ml"][kind], fmt="+.3f")))
        rows.append((f"{name} volume: mean absolute error (ml)", _estimate(n["mean_abs_error_ml"][kind])))
    if n["bland_altman"] is not None:
        for kind in ("soft", "hard"):
            ba = n["bland_altman"][kind]
            rows.append((f"Bland-Altman {names[kind]}: bias and limits of agreement (ml)",
                         f"{ba['bias']:+.3f} [{ba['loa_low']:+.3f}, {ba['loa_high']:+.3f}]"))
    c = n["calibration"]
    rows += [(f"ECE ({c['n_bins']} bins, pooled calibration regions)", f"{c['ece']:.4f}"),
             (f"share of voxels with p > {INTERMEDIATE[0]:g} below {INTERMEDIATE[1]:g}",
              f"{c['intermediate_share']:.1%}"),
             ("tau*: mean (min to max)", f"{n['tau_star']['mean']:.3f} ({n['tau_star']['min']:.3f} to "
                                          f"{n['tau_star']['max']:.3f})")]
    return pd.DataFrame(rows, columns=["quantity", "value [95% CI]"])


CASE_COLUMNS = {"case_id": "case", "dice": "Dice", "ref_volume_ml": "reference (ml)", "soft_volume_ml": "soft (ml)",
                "hard_volume_ml": "thresholded (ml)", "tau_star": "tau*", "tau_star_volume_ml": "tau* (ml)",
                "dice_optimal_volume_ml": "Dice-optimal (ml)", "ece": "ECE", "intermediate_share": "intermediate"}


def _definitions(result: AuditResult) -> list[str]:
    s = result.settings
    labels = f" (foreground labels {', '.join(map(str, s.labels))})" if s.labels else ""
    if len(s.references) > 1:
        reference = (f"Reference: the mean r of the {len(s.references)} raters' masks{labels}; its volume is the sum "
                     "of r (ml), the expected volume of a randomly drawn rater; its mask for the Dice is the strict "
                     f"majority r > 0.5 (at least {len(s.references) // 2 + 1} of the {len(s.references)} raters; a "
                     "tie is background), the same rule as p > 0.5 for a map.")
    else:
        reference = f"Reference: the label map{labels}; its volume is its voxel count times the voxel volume (ml)."
    return [
        reference,
        f"Audited map: {result.numbers.get('channels') or 'the map'}. Thresholded volume: voxels with "
        f"p > {s.threshold:g}; soft volume: the sum of p over the whole map (ml); argmax volume (softmax over three "
        "or more classes): the voxels whose most probable class is one of the audited, as nnU-Net segments.",
        "Relative bias: sum over cases of (volume - reference) / sum of reference volumes (volume-weighted); 95% "
        "percentile bootstrap CI over cases (paired); per case: median and quartiles of (volume - reference) / "
        "reference over the cases with a non-empty reference.",
        f"Verdict: only with at least {MIN_CASES} cases. Equivalent within {tolerance_text(s.tolerance)} "
        "(--tolerance): the 95% CI of the relative bias lies inside the tolerance; over- or under-estimation beyond it: the whole CI "
        "lies outside.",
        "tau*: the map's own soft-Dice-optimal threshold SD*/2; Dice-optimal mask: the top-k mask with the "
        "largest expected Dice when voxel i is foreground with probability p_i.",
        f"Calibration region: the bounding box of the voxels any rater marks, grown by {CALIBRATION_MARGIN} voxels "
        "(from the reference alone, so models audited against the same references are measured on the same "
        f"voxels; cases with an empty reference have none). ECE: {ECE_DEFINITION}; {s.n_bins} bins.",
        "Fitted estimators (temperature scaling, re-calibration) need labelled cases of the audited population; "
        "here they are cross-fitted over five groups of cases: no case is corrected with parameters fitted on "
        "itself; they are left out when they cannot be fitted (fewer than 3 cases, all soft volumes equal, no "
        "calibration voxels). The temperature scales the map inside the calibration region, where it was fitted, "
        "and leaves it as it is outside, so at T = 1 the temperature-scaled volume is the soft volume. Estimators "
        "not separated from the best: the paired 95% CI of their absolute error minus the best's reaches 0.",
    ]


def _input_section(result: AuditResult) -> str:
    lines = [f"- Skipped (prediction without a reference): {', '.join(result.without_reference)}."
             if result.without_reference else "",
             f"- References without a prediction (not audited): {', '.join(result.without_prediction)}."
             if result.without_prediction else "",
             f"- nnU-Net segmentations without a probability map <case>.npz (predicted without "
             f"--save_probabilities?; not audited): {', '.join(result.without_probabilities)}."
             if result.without_probabilities else ""]
    lines += [f"- {note}" for note in result.notes]
    return "\n".join(line for line in lines if line) or "- Every map lies on its reference's grid as stored."


def _estimator_table(result: AuditResult) -> str:
    table = display_table(result.estimator_summary, "audit", digits=3).drop(columns="loss")
    summary = result.estimator_summary.set_index("rank")
    table["needs labelled cases"] = np.where(summary["needs_labels"], "yes", "no")
    table["not separated from the best"] = np.where(summary["among_best"], "yes", "no")
    return table.to_markdown()


def render_markdown(result: AuditResult) -> str:
    """The text of ``report.md`` (figures linked from ``figures/``)."""
    s = result.settings
    columns = {**{k: v for k, v in CASE_COLUMNS.items() if k != "ece"},
               **({"argmax_volume_ml": "argmax (ml)"} if "argmax_volume_ml" in result.cases else {}), "ece": "ECE"}
    cases = result.cases[list(columns)].rename(columns=columns)
    parts = [
        "# Volume audit",
        f"Predictions `{s.pred}` ({s.input_format}: {result.numbers.get('channels', '')}); references "
        f"{', '.join(f'`{p}`' for p in s.references)}; threshold {s.threshold:g}; "
        f"tolerance {tolerance_text(s.tolerance)}; {len(result.cases)} cases; volbias {volbias.__version__}, seed {s.seed}.",
        "## Verdict",
        "\n".join(f"- {sentence}" for sentence in result.verdict),
        "## Input",
        _input_section(result),
        "## Overall",
        overall_table(result).to_markdown(index=False),
        "## Volumes",
        f"![Bland-Altman and volume scatter]({FIGURES['volumes']})",
        "## Calibration",
        f"![Reliability diagram and probability histogram]({FIGURES['calibration']})",
        "## Volume estimators",
        "The estimators of the chapter \"Which volume to trust\", ranked by mean absolute error (ml), with 95% "
        "bootstrap CIs over cases.",
        _estimator_table(result),
        f"![Volume estimators]({FIGURES['estimators']})",
        "## Cases",
        cases.to_markdown(index=False, floatfmt=".4g"),
        "## Definitions",
        "\n".join(f"- {line}" for line in _definitions(result)),
    ]
    return "\n\n".join(parts) + "\n"


def write_report(result: AuditResult, folder: Path) -> None:
    """All report files into ``folder`` (an empty folder)."""
    (folder / "figures").mkdir()
    result.cases.to_csv(folder / "cases.csv", index=False)
    result.estimators.to_csv(folder / "estimators.csv", index=False)
    (folder / "summary.json").write_text(json.dumps(summary_dict(result), indent=2) + "\n")
    for name, fig in audit_figures(result).items():
        fig.savefig(folder / FIGURES[name], dpi=110)
    (folder / "report.md").write_text(render_markdown(result))
