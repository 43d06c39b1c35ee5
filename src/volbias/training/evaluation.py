"""Validation: probability maps of held-out cases, their per-case metrics (cases.csv) and storage."""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from ..data.case import Case
from ..models import masked_probabilities
from .checkpoint import atomic_path
from .run_files import CASE_COLUMNS



@torch.no_grad()
def predict_case(model: torch.nn.Module, case: Case, device: torch.device,
                 amp_dtype: torch.dtype | None = None) -> np.ndarray:
    """Probability map ``sigmoid(logits) * mask`` of one case at its own shape (float32)."""
    model.eval()
    image = torch.from_numpy(np.ascontiguousarray(case.image, dtype=np.float32))[None].to(device)
    mask = torch.from_numpy(np.ascontiguousarray(case.mask))[None, None].to(device)
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        logits = model(image)
    return masked_probabilities(logits.float(), mask)[0, 0].cpu().numpy()


def rater_dice(hard: np.ndarray, raters: np.ndarray) -> float:
    """Mean Dice of ``hard`` against each annotation (rater or label draw); empty against empty scores 1.

    This is the expected Dice against one randomly chosen annotation: what soft Dice optimises in
    expectation when every epoch samples one annotation.
    """
    from ..metrics import dice

    return float(np.mean([dice(hard, r > 0.5) for r in raters]))


def phantom_expected_dice(case: Case, hard: np.ndarray) -> float:
    """Expected Dice of ``hard`` against a fresh label of a phantom, without random draws: exact
    (Poisson-binomial) for independent voxel noise, :mod:`volbias.theory.blob_shift` for boundary-shift noise."""
    from ..theory import expected_dice
    from ..theory.blob_shift import BlobShift, expected_dice_of_masks

    if case.meta["noise"] == "independent":
        return float(expected_dice(hard, case.marginals.astype(np.float64)))
    return float(expected_dice_of_masks(BlobShift.of_phantom(case.marginals.shape, case.meta), hard)[0])


def case_row(case: Case, prob: np.ndarray, split: str = "validation") -> dict[str, Any]:
    """Dice of ``prob > 0.5`` against the label and the volumes of one held-out case.

    Cases with several annotations add ``dice_raters`` (:func:`rater_dice`); synthetic phantoms add
    ``expected_dice`` (:func:`phantom_expected_dice`).
    """
    from ..metrics import dice

    voxel_ml = case.voxel_volume_ml
    hard = prob > 0.5
    extra: dict[str, Any] = {}
    if case.raters is not None and len(case.raters) > 1:
        extra["dice_raters"] = rater_dice(hard, case.raters)
    if case.marginals is not None and case.meta.get("grid") == "voxels" and "noise" in case.meta:
        extra["expected_dice"] = phantom_expected_dice(case, hard)
    return {
        "case_id": case.id,
        "split": split,
        "dice": float(dice(hard, case.label > 0.5)),
        "true_volume": float(np.sum(case.label > 0.5, dtype=np.float64)) * voxel_ml,
        "expected_volume": float(case.expected_volume),
        "pred_volume_soft": float(np.sum(prob, dtype=np.float64)) * voxel_ml,
        "pred_volume_hard": float(np.sum(hard, dtype=np.float64)) * voxel_ml,
        "voxel_volume_ml": voxel_ml,
        "volume_unit": case.volume_unit,
        **extra,
    }


def evaluate(model: torch.nn.Module, cases: Sequence[Case], device: torch.device,
             amp_dtype: torch.dtype | None, run_columns: dict[str, Any],
             test_cases: Sequence[Case] = ()) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """Predict every validation and test case; return the probability maps by case id and the cases table
    (column ``split``: "validation" or "test")."""
    probs: dict[str, np.ndarray] = {}
    rows = []
    for split, group in (("validation", cases), ("test", test_cases)):
        for case in group:
            probs[case.id] = predict_case(model, case, device, amp_dtype)
            rows.append({**run_columns, **case_row(case, probs[case.id], split)})
    table = pd.DataFrame(rows)
    ordered = [c for c in CASE_COLUMNS if c in table.columns]
    return probs, table[ordered + [c for c in table.columns if c not in ordered]]


def write_probabilities(path: str | os.PathLike[str], probs: dict[str, np.ndarray]) -> None:
    """Store probability maps (float16, compressed npz, key = case id) atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **{k: v.astype(np.float16) for k, v in probs.items()})


def write_table(path: str | os.PathLike[str], table: pd.DataFrame) -> None:
    """Write a CSV atomically."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
