"""Theoretical volumes of the loss optima on the very phantoms a network was scored on, in one cached table.

For each synthetic phantom (known marginals p, blob centres and radii in ``case.meta``) this gives the
expected volume sum(p), the CE optimum thresholded at 0.5, the plug-in soft Dice optimum
(:func:`volbias.theory.soft_dice_optimum`) and the Dice-optimal hard mask for the phantom's label-noise model,
with its expected Dice: exact for independent voxels (:func:`volbias.theory.dice_optimal_mask`); for the
boundary-shift model, whose blobs shift independently, without random draws
(:mod:`volbias.theory.blob_shift`: exact where blobs do not overlap, quadrature for the overlaps), over the
masks that threshold p (exact for one blob, where these are the nested disks). No seed enters: the table is
a function of the phantoms alone.

The table of a phantom configuration is cached as ``<cache>/<key>.csv`` (``key``: a hash of the run's resolved
task options and :data:`THEORY_VERSION`); :func:`attach_theory_volumes` reads every cache it is given (a stored
result set's, the book's runs folder) and writes what it had to compute into the last one, so every chapter
reads the same numbers.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from volbias.theory import dice_optimal_mask, expected_dice, soft_dice_optimum
from volbias.theory.blob_shift import BlobShift, dice_optimal_threshold_mask
from volbias.training.checkpoint import atomic_path

THEORY_VOLUMES: dict[str, str] = {
    "ce_threshold": "CE optimum thresholded at 0.5",
    "sd_plugin": "soft Dice optimum (soft targets)",
    "dice_optimal": "Dice-optimal mask (sampled labels)",
}
"""Theoretical predicted-volume columns of :func:`theory_volumes` and their figure labels."""

THEORY_VERSION = "exact-1"
"""Changes whenever the computation of the table changes (part of the cache key)."""

THEORY_COLUMNS = ("case_id", "expected_volume", *THEORY_VOLUMES, "dice_optimal_dice")


def theory_row(case: Any) -> dict[str, Any]:
    """One phantom's row of the theory table (volumes in voxels)."""
    if case.marginals is None or "sigma" not in case.meta:
        raise ValueError(f"case {case.id}: not a synthetic phantom (needs marginals and meta sigma)")
    p = np.asarray(case.marginals, dtype=np.float64)
    noise = case.meta["noise"]
    if noise == "independent":
        mask = dice_optimal_mask(p)
        optimal, best = float(mask.sum()), float(expected_dice(mask, p))
    elif noise == "shift":
        k, best = dice_optimal_threshold_mask(BlobShift.of_phantom(case.marginals.shape, case.meta))
        optimal = float(k)
    else:
        raise ValueError(f"case {case.id}: unknown noise model {noise!r}")
    return {"case_id": case.id, "expected_volume": float(p.sum()), "ce_threshold": float(np.count_nonzero(p > 0.5)),
            "sd_plugin": float(soft_dice_optimum(p).sum()), "dice_optimal": optimal, "dice_optimal_dice": best}


def theory_volumes(cases: Iterable[Any], progress: bool = False) -> pd.DataFrame:
    """One row per phantom: :data:`THEORY_COLUMNS`."""
    cases = list(cases)
    rows = [theory_row(case) for case in tqdm(cases, desc="phantom theory", disable=not progress, leave=False)]
    return pd.DataFrame(rows, columns=list(THEORY_COLUMNS))


def theory_bias(volumes: pd.DataFrame) -> dict[str, float]:
    """Relative bias sum(V - E[V]) / sum(E[V]) over the phantoms, per column of :data:`THEORY_VOLUMES`."""
    expected = volumes["expected_volume"].sum()
    return {name: float((volumes[name].sum() - expected) / expected) for name in THEORY_VOLUMES}


def cache_key(task_options: Mapping[str, Any]) -> str:
    """The cache file's name (without ``.csv``) for phantoms made with ``task_options``."""
    text = json.dumps({"options": dict(task_options), "version": THEORY_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _read_cached(caches: Sequence[Path], key: str) -> pd.DataFrame:
    frames = [pd.read_csv(path, dtype={"case_id": str}) for cache in caches
              if (path := Path(cache) / f"{key}.csv").is_file()]
    if not frames:
        return pd.DataFrame(columns=list(THEORY_COLUMNS))
    return pd.concat(frames, ignore_index=True).drop_duplicates("case_id")


def cached_theory(task_options: Mapping[str, Any], case_ids: Iterable[str], caches: Sequence[str | Path],
                  progress: bool = False) -> pd.DataFrame:
    """The theory rows of the phantoms ``case_ids`` made with ``task_options``: read from ``caches``, the
    missing ones computed and added to the last cache (written atomically). Raises ValueError for an id that
    is not among the phantoms of the options."""
    from volbias.data import load_task

    caches = [Path(c) for c in caches]
    key = cache_key(task_options)
    table = _read_cached(caches, key)
    wanted = list(dict.fromkeys(case_ids))
    missing = [cid for cid in wanted if cid not in set(table["case_id"])]
    if missing:
        task = load_task("synthetic", **task_options)
        phantoms = {case.id: case for case in [*task.cases, *task.test]}
        unknown = [cid for cid in missing if cid not in phantoms]
        if unknown:
            raise ValueError(f"cases {unknown[:3]} are not among the phantoms of options {dict(task_options)}")
        computed = theory_volumes([phantoms[c] for c in missing], progress)
        table = pd.concat([table, computed], ignore_index=True) if len(table) else computed
        if caches:
            caches[-1].mkdir(parents=True, exist_ok=True)
            with atomic_path(caches[-1] / f"{key}.csv") as tmp:
                table.sort_values("case_id").to_csv(tmp, index=False)
    numbers = {column: float for column in THEORY_COLUMNS if column != "case_id"}
    return table.astype(numbers).set_index("case_id").loc[wanted].reset_index()


def attach_theory_volumes(cases: pd.DataFrame, caches: Sequence[str | Path] = (),
                          progress: bool = False) -> pd.DataFrame:
    """``cases`` with ``theory_volume`` (the Dice-optimal volume for each phantom's noise model),
    ``theory_dice`` (its expected Dice) and ``theory_ce_threshold`` (the volume of CE's optimum thresholded at
    0.5, a rival prediction); NaN for other tasks.

    The phantoms of every synthetic run are identified by the run's resolved task options (its
    ``config.yaml``, column ``run_dir``); each phantom is computed once, whichever runs scored it
    (:func:`cached_theory`).
    """
    from volbias.training.config import RunConfig

    out = cases.copy()
    out["theory_volume"] = np.nan
    out["theory_dice"] = np.nan
    out["theory_ce_threshold"] = np.nan
    synthetic = out[out["task"] == "synthetic"]
    by_options: dict[str, tuple[dict[str, Any], list[Any]]] = {}
    for run_dir, rows in synthetic.groupby("run_dir"):
        options = RunConfig.from_yaml(Path(str(run_dir)) / "config.yaml").resolved_task_options()
        key = json.dumps(options, sort_keys=True, default=str)
        by_options.setdefault(key, (options, []))[1].append(rows.index)
    for options, indices in by_options.values():
        index = indices[0].append(indices[1:]) if len(indices) > 1 else indices[0]
        ids = out.loc[index, "case_id"].astype(str)
        table = cached_theory(options, ids, caches, progress).set_index("case_id")
        out.loc[index, "theory_volume"] = table.loc[ids, "dice_optimal"].to_numpy()
        out.loc[index, "theory_dice"] = table.loc[ids, "dice_optimal_dice"].to_numpy()
        out.loc[index, "theory_ce_threshold"] = table.loc[ids, "ce_threshold"].to_numpy()
    return out
