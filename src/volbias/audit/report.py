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
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

import volbias
from volbias.audit.errors import AuditError
from volbias.audit.measures import CALIBRATION_MARGIN, CALIBRATION_MIN_PROBABILITY, INTERMEDIATE
from volbias.audit.plots import audit_figures
from volbias.estimators.compare import display_table

if TYPE_CHECKING:  # pragma: no cover
    from volbias.audit.run import AuditResult

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
    return _plain({
        "volbias_version": volbias.__version__,
        "inputs": {"pred": s.pred, "references": list(s.references), "format": s.input_format,
                   "channel": s.channel, "labels": s.labels, "threshold": s.threshold, "seed": s.seed,
                   "n_bins": s.n_bins},
        "cases": {"audited": result.cases["case_id"].tolist(), "without_reference": list(result.without_reference),
                  "references_without_prediction": list(result.without_prediction)},
        **result.numbers,
        "estimators": result.estimator_summary.drop(columns=["task", "loss"]).to_dict(orient="records"),
        "verdict": result.verdict,
    })


def _estimate(entry: dict[str, float], key: str = "mean", fmt: str = ".3f", percent: bool = False) -> str:
    value, low, high = entry[key], entry["ci_low"], entry["ci_high"]
    if percent:
        return f"{value:+.1%} [{low:+.1%}, {high:+.1%}]" if np.isfinite(low) else f"{value:+.1%}"
    return f"{value:{fmt}} [{low:{fmt}}, {high:{fmt}}]" if np.isfinite(low) else f"{value:{fmt}}"


def overall_table(result: AuditResult) -> pd.DataFrame:
    """The report's table of overall numbers (value with its 95% CI where there is one)."""
    n, t = result.numbers, result.settings.threshold
    names = {"hard": f"thresholded (p > {t:g})", "soft": "soft", "tau_star": "tau* threshold",
             "dice_optimal": "Dice-optimal mask"}
    rows = [("cases", str(n["n_cases"])), ("Dice (thresholded vs reference)", _estimate(n["dice"])),
            ("Dice the map expects of itself", _estimate(n["expected_dice_hard"])),
            ("mean reference volume (ml)", f"{n['mean_volume_ml']['reference']:.3f}")]
    for kind, name in names.items():
        rows.append((f"{name} volume: mean (ml)", f"{n['mean_volume_ml'][kind]:.3f}"))
        rows.append((f"{name} volume: relative bias", _estimate(n["relative_bias"][kind], "value", percent=True)))
        rows.append((f"{name} volume: mean error (ml)", _estimate(n["mean_error_ml"][kind], fmt="+.3f")))
        rows.append((f"{name} volume: mean absolute error (ml)", _estimate(n["mean_abs_error_ml"][kind])))
    if n["bland_altman"] is not None:
        for kind in ("soft", "hard"):
            ba = n["bland_altman"][kind]
            rows.append((f"Bland-Altman {names[kind]}: bias and limits of agreement (ml)",
                         f"{ba['bias']:+.3f} [{ba['loa_low']:+.3f}, {ba['loa_high']:+.3f}]"))
    c = n["calibration"]
    rows += [("ECE (pooled calibration regions)", f"{c['ece']:.4f}"),
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
        f"Thresholded volume: voxels with p > {s.threshold:g}; soft volume: the sum of p (ml).",
        "Relative bias: sum over cases of (volume - reference) / sum of reference volumes; 95% percentile "
        "bootstrap CI over cases (paired).",
        "tau*: the map's own soft-Dice-optimal threshold SD*/2; Dice-optimal mask: the top-k mask with the "
        "largest expected Dice when voxel i is foreground with probability p_i.",
        f"Calibration region: the bounding box of the voxels with p >= {CALIBRATION_MIN_PROBABILITY:g} or a "
        f"reference above 0, grown by {CALIBRATION_MARGIN} voxels; ECE with {s.n_bins} equal-width bins.",
        "Fitted estimators (temperature scaling, re-calibration) are cross-fitted over five groups of cases: no "
        "case is corrected with parameters fitted on itself; they are left out when they cannot be fitted (fewer "
        "than 3 cases, all soft volumes equal, no calibration voxels).",
    ]


def render_markdown(result: AuditResult) -> str:
    """The text of ``report.md`` (figures linked from ``figures/``)."""
    s = result.settings
    skipped = (f"\n\n**Skipped** (prediction without a reference): {', '.join(result.without_reference)}."
               if result.without_reference else "")
    unused = (f"\n\n**References without a prediction** (not audited): {', '.join(result.without_prediction)}."
              if result.without_prediction else "")
    cases = result.cases[list(CASE_COLUMNS)].rename(columns=CASE_COLUMNS)
    parts = [
        "# Volume audit",
        f"Predictions `{s.pred}` ({s.input_format}); references {', '.join(f'`{p}`' for p in s.references)}; "
        f"threshold {s.threshold:g}; {len(result.cases)} cases; volbias {volbias.__version__}, seed {s.seed}."
        + skipped + unused,
        "## Verdict",
        "\n".join(f"- {sentence}" for sentence in result.verdict),
        "## Overall",
        overall_table(result).to_markdown(index=False),
        "## Volumes",
        f"![Bland-Altman and volume scatter]({FIGURES['volumes']})",
        "## Calibration",
        f"![Reliability diagram and probability histogram]({FIGURES['calibration']})",
        "## Volume estimators",
        "The estimators of the chapter \"Which volume to trust\", ranked by mean absolute error (ml), with 95% "
        "bootstrap CIs over cases.",
        display_table(result.estimator_summary, "audit", digits=3).drop(columns="loss").to_markdown(),
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
