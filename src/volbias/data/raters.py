"""Multiple annotations per case: sampling one rater (per epoch) and measuring rater disagreement."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd

from .case import Case
from .errors import DataError


def sample_rater(case: Case, rng: np.random.Generator) -> np.ndarray:
    """One of the case's annotations, drawn uniformly (its expectation is the marginals); the label if none."""
    if case.raters is None or len(case.raters) == 0:
        return case.label
    return case.raters[int(rng.integers(len(case.raters)))]


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = a.sum() + b.sum()
    return float(2.0 * np.logical_and(a, b).sum() / total) if total else 1.0


def rater_disagreement(case: Case) -> dict[str, float]:
    """Per-case disagreement between raters.

    n_marking: raters with a non-empty mask; mean_pairwise_dice: mean Dice over the n_pairs pairs of
    non-empty raters (NaN with fewer than two; weight by n_pairs to pool over cases); area_cv: std/mean
    of the R raters' areas (empty masks count as area 0);
    expected_area: sum of the marginals (mean-rater soft label), in voxels.
    """
    if case.raters is None:
        raise DataError(f"case {case.id}: has no individual rater annotations")
    masks = case.raters > 0.5
    areas = masks.reshape(len(masks), -1).sum(1).astype(np.float64)
    marking = [m for m, a in zip(masks, areas) if a > 0]
    pairs = [_dice(a, b) for a, b in combinations(marking, 2)]
    return {
        "n_marking": int(len(marking)),
        "mean_pairwise_dice": float(np.mean(pairs)) if pairs else float("nan"),
        "n_pairs": int(len(pairs)),
        "area_cv": float(areas.std() / areas.mean()) if areas.mean() > 0 else float("nan"),
        "expected_area": float(np.sum(case.marginals if case.marginals is not None else masks.mean(0))),
    }


def disagreement_table(cases: list[Case]) -> pd.DataFrame:
    """rater_disagreement for every case, indexed by case id."""
    return pd.DataFrame([{"case": c.id, **rater_disagreement(c)} for c in cases]).set_index("case")


AGREEMENT_CV = 0.2
"""Largest coefficient of variation of the raters' areas for which four raters "agree"."""


def raters_agree(table: pd.DataFrame, cv: float = AGREEMENT_CV) -> pd.Series:
    """Per row of a :func:`disagreement_table`: all four raters marked the case, with an area CV below ``cv``."""
    return (table["n_marking"] == 4) & (table["area_cv"] < cv)
