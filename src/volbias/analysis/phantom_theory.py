"""Theoretical volumes of the loss optima on the very phantoms a network was validated on.

For each synthetic case (known marginals p, blob centres and radii in ``case.meta``) this gives the
expected volume sum(p), the CE optimum thresholded at 0.5, the plug-in soft Dice optimum
(volbias.theory.soft_dice_optimum) and the Dice-optimal hard mask for the case's label-noise model:
exact for independent voxels (volbias.theory.dice_optimal_mask); for the boundary-shift model, whose
blobs shift independently, by Monte Carlo over label draws (volbias.theory.sample_shift_labels),
searching the masks that threshold p (exact for one blob, where these are the nested disks).
:func:`attach_theory_volumes` adds the Dice-optimal volume to the synthetic rows of a cases table, the
prediction the verdict table (:mod:`volbias.analysis.claims`) scores the phantom groups against.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from volbias.theory import dice_optimal_mask, soft_dice_optimum
from volbias.theory.boundary_shift import sample_shift_labels

THEORY_VOLUMES: dict[str, str] = {
    "ce_threshold": "CE optimum thresholded at 0.5",
    "sd_plugin": "soft Dice optimum (soft targets)",
    "dice_optimal": "Dice-optimal mask (sampled labels)",
}
"""Theoretical predicted-volume columns of :func:`theory_volumes` and their figure labels."""


def _blob_distances(case: Any) -> list[tuple[np.ndarray, float]]:
    shape = case.marginals.shape
    grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij"))
    out = []
    for centre, radius in zip(case.meta["centres"], case.meta["radii"]):
        offset = np.asarray(centre, dtype=np.float64).reshape((-1,) + (1,) * len(shape))
        out.append((np.sqrt(((grid - offset) ** 2).sum(0)), float(radius)))
    return out


def shift_dice_optimal_volume(case: Any, n_draws: int = 400, seed: int = 0) -> int:
    """Voxels of the mask {p >= t} maximising the Monte Carlo expected Dice under the boundary shift."""
    p = np.asarray(case.marginals, dtype=np.float64).ravel()
    order = np.argsort(-p, kind="stable")
    labels = np.zeros((n_draws, p.size), dtype=bool)
    for b, (distances, radius) in enumerate(_blob_distances(case)):
        draws = sample_shift_labels(distances, radius, float(case.meta["sigma"]), n_draws, seed + b)
        labels |= draws.reshape(n_draws, -1)
    ordered = labels[:, order]
    overlap = np.cumsum(ordered, axis=1)
    k = np.arange(1, p.size + 1)
    dice = 2.0 * overlap / (k + ordered.sum(1, keepdims=True))
    return int(np.argmax(dice.mean(0))) + 1


def theory_volumes(cases: Iterable[Any], n_draws: int = 400, seed: int = 0) -> pd.DataFrame:
    """One row per phantom: case_id, expected_volume and the volumes of :data:`THEORY_VOLUMES` (voxels)."""
    rows = []
    for case in cases:
        if case.marginals is None or "sigma" not in case.meta:
            raise ValueError(f"case {case.id}: not a synthetic phantom (needs marginals and meta sigma)")
        p = np.asarray(case.marginals, dtype=np.float64)
        noise = case.meta["noise"]
        if noise == "independent":
            optimal = float(dice_optimal_mask(p).sum())
        elif noise == "shift":
            optimal = float(shift_dice_optimal_volume(case, n_draws, seed))
        else:
            raise ValueError(f"case {case.id}: unknown noise model {noise!r}")
        rows.append({"case_id": case.id, "expected_volume": float(p.sum()),
                     "ce_threshold": float(np.count_nonzero(p > 0.5)),
                     "sd_plugin": float(soft_dice_optimum(p).sum()), "dice_optimal": optimal})
    return pd.DataFrame(rows)


def theory_bias(volumes: pd.DataFrame) -> dict[str, float]:
    """Relative bias sum(V - E[V]) / sum(E[V]) over the phantoms, per column of :data:`THEORY_VOLUMES`."""
    expected = volumes["expected_volume"].sum()
    return {name: float((volumes[name].sum() - expected) / expected) for name in THEORY_VOLUMES}


def attach_theory_volumes(cases: pd.DataFrame, n_draws: int = 400, seed: int = 0) -> pd.DataFrame:
    """``cases`` with a ``theory_volume`` column: the Dice-optimal volume for each phantom's noise model.

    The phantoms of every synthetic run (its folds' and its fresh test phantoms) are regenerated from the
    run's ``config.yaml`` (column ``run_dir``), and each one is computed once however many runs validated on
    it; other tasks get NaN. Raises ValueError naming the run when a case id is not among the phantoms.
    """
    from volbias.data import load_task
    from volbias.training.config import RunConfig

    out = cases.copy()
    out["theory_volume"] = np.nan
    synthetic = out[out["task"] == "synthetic"]
    phantoms: dict[str, dict[str, Any]] = {}
    volumes: dict[tuple[str, str], float] = {}
    for run_dir, rows in synthetic.groupby("run_dir"):
        options = RunConfig.from_yaml(Path(str(run_dir)) / "config.yaml").resolved_task_options()
        key = json.dumps(options, sort_keys=True, default=str)
        if key not in phantoms:
            task = load_task("synthetic", **options)
            phantoms[key] = {case.id: case for case in [*task.cases, *task.test]}
        missing = sorted(set(rows["case_id"]) - set(phantoms[key]))
        if missing:
            raise ValueError(f"{run_dir}: cases {missing[:3]} are not among the phantoms of its config")
        todo = [phantoms[key][cid] for cid in rows["case_id"].unique() if (key, cid) not in volumes]
        if todo:
            table = theory_volumes(todo, n_draws, seed)
            volumes.update({(key, cid): v for cid, v in zip(table["case_id"], table["dice_optimal"])})
        out.loc[rows.index, "theory_volume"] = [volumes[(key, cid)] for cid in rows["case_id"]]
    return out
