"""All volume estimators applied to the held-out probability maps of finished runs.

For every run (one task, loss, fold and seed) the validation maps in ``probabilities.npz`` are turned into
six volume estimates per case.  The two estimators with fitted parameters (temperature scaling and the
linear volume re-calibration) are *cross-fitted*: the estimate of a held-out fold uses parameters fitted on
the held-out maps of the other folds of the same experiment (each produced by a network that never saw
them), so no case contributes to its own calibration.  When an experiment has runs of a single fold only,
its cases are split into ``n_splits`` groups instead.  Temperatures are fitted, and calibration errors
measured, against the voxel marginals wherever the data have them (the exact ``p`` of the phantoms, the
mean rater of LIDC), else against the reference label.  Runs trained on soft targets carry the loss label
``"<loss> (soft)"`` (:func:`run_loss_name`), except DML, which is always trained on them.

The result is a long table, one row per case and estimator, with the volume, its signed and absolute
error against a reference volume, the Dice of the estimator's mask (NaN for estimators without a mask)
and the expected calibration error of the map the estimator reads.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from volbias.analysis.tables import bootstrap_ci, format_estimate, read_run, summarize
from volbias.data.case import Case
from volbias.estimators.recalibration import fit_linear_recalibration
from volbias.estimators.temperature import apply_temperature, fit_temperature
from volbias.estimators.volume import tau_star_mask
from volbias.metrics import dice, expected_calibration_error, hard_volume, soft_volume
from volbias.theory import dice_optimal_mask

ESTIMATORS: tuple[str, ...] = (
    "threshold 0.5",
    "soft sum",
    "temperature-scaled",
    "re-calibrated",
    "tau* threshold",
    "Dice-optimal",
)
"""Display names of the estimators, in the order of the chapter."""

EXPERIMENT_KEYS: tuple[str, ...] = ("task", "setting", "loss", "seed")

ALWAYS_SOFT: tuple[str, ...] = ("dml",)
"""Losses trained on the soft targets only (their label does not repeat it)."""


def run_loss_name(loss: str, targets: str) -> str:
    """The comparison's name of a run: the loss, with ``" (soft)"`` when trained on the soft targets."""
    return f"{loss} (soft)" if targets == "soft" and loss not in ALWAYS_SOFT else loss


@dataclass
class HeldOutMap:
    """One held-out probability map with its case and the run it came from."""

    task: str
    setting: str
    loss: str
    seed: int
    fold: int
    case: Case
    prob: np.ndarray


def load_held_out_maps(run_dir: str | Path, cases: Mapping[str, Case]) -> list[HeldOutMap]:
    """Held-out maps of one finished run; ``cases`` maps case ids to the run's (validation) cases.

    Maps are clipped to [0, 1] and set to 0 outside each case's mask.
    """
    run_dir = Path(run_dir)
    frame = read_run(run_dir)
    targets = str(frame["training.targets"].iloc[0]) if "training.targets" in frame.columns else "rater"
    path = run_dir / "probabilities.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: run has no probability maps")
    maps: list[HeldOutMap] = []
    with np.load(path) as archive:
        for row in frame.itertuples(index=False):
            if row.case_id not in cases:
                raise KeyError(f"{run_dir}: case {row.case_id!r} of task {row.task!r} was not loaded")
            if row.case_id not in archive.files:
                raise KeyError(f"{path}: no map for case {row.case_id!r}")
            case = cases[row.case_id]
            prob = archive[row.case_id].astype(np.float64)
            if prob.shape != case.label.shape:
                raise ValueError(f"{path}: map of {row.case_id} has shape {prob.shape}, label {case.label.shape}")
            clipped = np.where(case.mask, np.clip(prob, 0.0, 1.0), 0.0)
            maps.append(HeldOutMap(row.task, row.setting, run_loss_name(row.loss, targets), int(row.seed),
                                   int(row.fold), case, clipped))
    return maps


def _fit_groups(group: list[HeldOutMap], n_splits: int) -> np.ndarray:
    """Cross-fitting group of every map: its fold, or (single fold) a split of the sorted case ids."""
    folds = np.array([m.fold for m in group])
    if np.unique(folds).size >= 2:
        return folds
    order = np.argsort([m.case.id for m in group], kind="stable")
    splits = np.empty(len(group), dtype=int)
    splits[order] = np.arange(len(group)) % n_splits
    return splits


def _reference(case: Case, reference: str) -> float:
    if reference == "expected_volume":
        return case.expected_volume
    if reference == "true_volume":
        return float(case.label.sum(dtype=np.float64)) * case.voxel_volume_ml
    raise ValueError(f"reference={reference!r}: expected 'expected_volume' or 'true_volume'")


def calibration_target(case: Case) -> np.ndarray:
    """What a calibrated map should equal: the voxel marginals where known, else the reference label."""
    return case.marginals if case.marginals is not None else case.label


def _ece(prob: np.ndarray, case: Case, n_bins: int) -> float:
    target = calibration_target(case)
    return float(expected_calibration_error(prob[case.mask], target[case.mask], n_bins=n_bins))


def _spacing(case: Case) -> tuple[float, ...] | None:
    """The case's voxel size for volumes in ml, or None (volumes in voxels) when it is unknown."""
    return case.spacing if case.spacing_known else None


def _rows_for_case(m: HeldOutMap, temperature: float, intercept: float, slope: float, reference: str,
                   n_bins: int, fit: dict[str, object]) -> list[dict[str, object]]:
    case, prob = m.case, m.prob
    spacing = _spacing(case)
    label = case.label > 0.5
    scaled = apply_temperature(prob, temperature, case.mask)
    ece_raw, ece_scaled = _ece(prob, case, n_bins), _ece(scaled, case, n_bins)
    soft = soft_volume(prob, spacing)
    masks = {"threshold 0.5": prob > 0.5, "tau* threshold": tau_star_mask(prob),
             "Dice-optimal": np.asarray(dice_optimal_mask(prob), dtype=bool)}
    volumes = {name: hard_volume(mask, spacing) for name, mask in masks.items()}
    volumes.update({"soft sum": soft, "temperature-scaled": soft_volume(scaled, spacing),
                    "re-calibrated": intercept + slope * soft})
    ref = _reference(case, reference)
    unit = "ml" if spacing is not None else ("pixels" if case.label.ndim == 2 else "voxels")
    base = {"task": m.task, "setting": m.setting, "loss": m.loss, "seed": m.seed, "fold": m.fold,
            "case_id": case.id, "volume_unit": unit, "reference_volume": ref, "temperature": temperature,
            "recal_intercept": intercept, "recal_slope": slope, **fit}
    rows = []
    for name in ESTIMATORS:
        volume = volumes[name]
        rows.append({
            **base, "estimator": name, "volume": volume, "err": volume - ref, "abs_err": abs(volume - ref),
            "dice": dice(masks[name], label) if name in masks else float("nan"),
            "ece": ece_scaled if name == "temperature-scaled" else ece_raw,
        })
    return rows


def compare_estimators(
    maps: Sequence[HeldOutMap], reference: str = "expected_volume", n_splits: int = 5, n_bins: int = 10
) -> pd.DataFrame:
    """Long table (one row per case and estimator) of volumes, errors, Dice and ECE, cross-fitted.

    Besides the fitted parameters (``temperature``, ``recal_intercept``, ``recal_slope``) each row names its
    cross-fitting group (``fit_group``), the number of cases the parameters were fitted on (``n_fit``) and the
    unit of its volumes (``volume_unit``: ml, or pixels / voxels where the data have no physical spacing).
    """
    if not maps:
        raise ValueError("no held-out maps to compare; train the runs first")
    experiments: dict[tuple, list[HeldOutMap]] = {}
    for m in maps:
        experiments.setdefault((m.task, m.setting, m.loss, m.seed), []).append(m)
    rows: list[dict[str, object]] = []
    for key, group in experiments.items():
        fit_groups = _fit_groups(group, n_splits)
        soft = np.array([soft_volume(m.prob, _spacing(m.case)) for m in group])
        refs = np.array([_reference(m.case, reference) for m in group])
        for g in np.unique(fit_groups):
            train = [m for m, f in zip(group, fit_groups) if f != g]
            if len(train) < 2:
                raise ValueError(f"experiment {dict(zip(EXPERIMENT_KEYS, key))}: too few cases to cross-fit")
            temperature = fit_temperature([m.prob for m in train], [calibration_target(m.case) for m in train],
                                          [m.case.mask for m in train])
            recal = fit_linear_recalibration(soft[fit_groups != g], refs[fit_groups != g])
            fit = {"fit_group": int(g), "n_fit": len(train)}
            for m, f in zip(group, fit_groups):
                if f == g:
                    rows.extend(_rows_for_case(m, temperature, recal.intercept, recal.slope, reference, n_bins, fit))
    return pd.DataFrame(rows)


SUMMARY_METRICS: tuple[str, ...] = ("err", "abs_err", "dice", "ece")


PAIR_ON: tuple[str, ...] = ("fold", "seed", "case_id")
"""Keys that identify one held-out case across losses and estimators (for paired comparisons)."""


def ranked_summary(comparison: pd.DataFrame, by: Sequence[str] = ("task", "loss", "estimator"),
                   seed: int = 0) -> pd.DataFrame:
    """Per group: mean and bootstrap 95% CI of signed/absolute volume error, Dice and ECE, ranked.

    Wide table (columns ``<metric>``, ``<metric>_low``, ``<metric>_high``), ranked within each task by the
    mean absolute volume error (column ``rank``, 1 = best). ``vs_best`` is the mean paired difference of the
    absolute error from the task's first-ranked entry over the cases both were evaluated on, with its
    bootstrap CI (``vs_best_low``, ``vs_best_high``): an interval that contains 0 means the ranking does not
    separate the entry from the best.
    """
    long = summarize(comparison, by=list(by), metrics=SUMMARY_METRICS, seed=seed)
    wide = long.pivot(index=list(by), columns="metric", values=["mean", "ci_low", "ci_high"])
    out = pd.DataFrame(index=wide.index)
    for metric in SUMMARY_METRICS:
        out[metric] = wide[("mean", metric)]
        out[f"{metric}_low"] = wide[("ci_low", metric)]
        out[f"{metric}_high"] = wide[("ci_high", metric)]
    out["n"] = comparison.groupby(list(by)).size()
    out = out.reset_index()
    out["rank"] = out.groupby("task")["abs_err"].rank(method="min").astype(int)
    out = out.sort_values(["task", "rank"]).reset_index(drop=True)
    errors = comparison.set_index([*by, *PAIR_ON])["abs_err"]
    contrasts = []
    for task, part in out.groupby("task", sort=False):
        best = errors.xs(tuple(part.iloc[0][list(by)]), level=list(by))
        for _, entry in part.iterrows():
            diff = (errors.xs(tuple(entry[list(by)]), level=list(by)) - best).dropna().to_numpy(float)
            low, high = bootstrap_ci(diff, seed=seed)
            contrasts.append((float(diff.mean()) if diff.size else float("nan"), low, high))
    out[["vs_best", "vs_best_low", "vs_best_high"]] = contrasts
    return out


def recalibration_fits(comparison: pd.DataFrame) -> pd.DataFrame:
    """One row per fitted re-calibration line: task, setting, loss, seed, fit group, n_fit, intercept, slope.

    A slope below 1 pulls every held-out volume towards the mean of the fitting cases: least squares
    estimates E[V_true | V_pred], which shrinks extreme volumes, so small and large objects are mis-sized in
    opposite directions even when the mean error is 0.
    """
    keys = [*EXPERIMENT_KEYS, "fit_group"]
    fits = comparison.drop_duplicates(keys)[[*keys, "n_fit", "recal_intercept", "recal_slope"]]
    return fits.rename(columns={"recal_intercept": "intercept", "recal_slope": "slope"}).reset_index(drop=True)


def display_table(summary: pd.DataFrame, task: str, digits: int = 2) -> pd.DataFrame:
    """The ranked rows of one task with ``mean [CI]`` strings, for the chapter's tables."""
    part = summary[summary["task"] == task]
    if part.empty:
        raise ValueError(f"task={task!r}: no rows in the summary")
    out = part[["rank", "loss", "estimator", "n"]].copy()
    names = {"err": "signed volume error", "abs_err": "absolute volume error",
             "vs_best": "absolute error minus the best's (paired)", "dice": "Dice", "ece": "ECE"}
    for metric, name in names.items():
        places = digits if metric in ("err", "abs_err", "vs_best") else 3
        out[name] = [
            "n/a" if np.isnan(row[metric]) else format_estimate(row[metric], row[f"{metric}_low"],
                                                               row[f"{metric}_high"], places)
            for _, row in part.iterrows()
        ]
    return out.set_index("rank")
