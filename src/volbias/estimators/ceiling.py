"""The no-network ceiling of the phantoms: the sum of the image.

A phantom's image is ``p + image_noise * noise`` (:func:`volbias.data.synthetic.make_phantoms`, contrast 1),
so the sum of its intensities over the mask is an unbiased estimate of the expected volume ``sum_i p_i``
with standard deviation ``image_noise * sqrt(#voxels)`` (5.4 pixels for 54 x 54 images and noise 0.1),
without any network.  What a network's volume loses against it is what its training did not learn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from volbias.data.case import Case
from volbias.data.synthetic import NOISE_MODELS
from volbias.estimators.maps import HeldOutMap

CEILING_LOSS = "no network"
CEILING_ESTIMATOR = "image sum"


def is_phantom(case: Case) -> bool:
    """Whether ``case`` is a synthetic phantom (its image is its marginals plus noise)."""
    return case.marginals is not None and case.meta.get("noise") in NOISE_MODELS


def image_sum_volume(case: Case) -> float:
    """Sum of a phantom's (first channel) intensities inside its mask, in the case's volume unit."""
    if not is_phantom(case):
        raise ValueError(f"case {case.id}: the image sum estimates a volume only for synthetic phantoms")
    return float(case.image[0][case.mask].sum(dtype=np.float64)) * case.voxel_volume_ml


def ceiling_rows(comparison: pd.DataFrame, maps: Sequence[HeldOutMap]) -> pd.DataFrame:
    """Rows of the image-sum estimator in the layout of the comparison table, for its phantom cases.

    One row per task, setting, seed and phantom case of ``comparison`` (the cases are those of ``maps``, the
    maps the comparison was made from: case ids repeat across seeds, each seed drawing its own phantoms),
    keeping that case's network, held-out group and reference volume (taken from its soft-sum rows), with
    ``loss`` :data:`CEILING_LOSS` and ``estimator`` :data:`CEILING_ESTIMATOR`.
    """
    keys = ["task", "setting", "seed", "case_id"]
    cases = {(m.task, m.setting, m.seed, m.case.id): m.case for m in maps}
    base = comparison[comparison["estimator"] == "soft sum"].drop_duplicates(keys)
    found = [cases[key] for key in base[keys].itertuples(index=False, name=None)]
    phantom = np.array([is_phantom(case) for case in found], dtype=bool)
    base = base[phantom].copy()
    volume = np.array([image_sum_volume(case) for case, keep in zip(found, phantom) if keep])
    ref = base["reference_volume"].to_numpy(float)
    base["loss"], base["estimator"], base["needs"] = CEILING_LOSS, CEILING_ESTIMATOR, "label-free"
    base["volume"], base["err"], base["abs_err"] = volume, volume - ref, np.abs(volume - ref)
    base["rel_err"] = np.where(ref > 0, (volume - ref) / np.where(ref > 0, ref, 1.0), np.nan)
    base["abs_rel_err"] = np.abs(base["rel_err"])
    base[["dice", "ece", "temperature", "recal_intercept", "recal_slope"]] = np.nan
    base["clipped"] = False
    return base.reset_index(drop=True)
