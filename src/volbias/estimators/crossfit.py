"""Leak-free cross-fitting of the fitted estimators: one map per case, held-out groups of cases, fit sets.

Within an experiment (one task, setting, loss and seed) a case may have several held-out maps: the fresh
test phantoms are predicted by every fold's network.  Cross-fitting here

1. keeps **one map per case** (:func:`one_map_per_case`): the map of the network that held the case out in
   its validation fold; a test case predicted by several networks gets one of them, dealt in turn (test
   cases sorted by id, networks by fold), so every network scores about as many test cases and the choice
   is the same for every loss;
2. puts every case into one **held-out group** (:func:`held_out_groups`): the fold of its network where
   the experiment has several networks, else one of ``n_splits`` groups of its *cluster* (the patient for
   LIDC, where several nodules share a patient; the case itself otherwise), clusters dealt in turn after
   sorting;
3. fits a group's parameters on the kept maps of the **other groups' cases** (:func:`crossfit_sets`).

No fit set therefore holds a map of any case of the group it is applied to, whichever network produced
the map, and every case counts once in every summary.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from volbias.data.case import Case
from volbias.estimators.maps import HeldOutMap, by_experiment


def case_cluster(case: Case) -> str:
    """The unit that is resampled and held out together: the patient where the case knows it, else the case."""
    return str(case.meta.get("patient", case.id))


def one_map_per_case(maps: Iterable[HeldOutMap]) -> list[HeldOutMap]:
    """One map per experiment and case: its validation network's, else (shared test cases) one dealt in turn."""
    kept: list[HeldOutMap] = []
    for key, group in by_experiment(maps).items():
        by_case: dict[str, list[HeldOutMap]] = {}
        for m in group:
            by_case.setdefault(m.case.id, []).append(m)
        shared = sorted(case_id for case_id, ms in by_case.items()
                        if len(ms) > 1 and not any(m.split == "validation" for m in ms))
        turn = {case_id: k for k, case_id in enumerate(shared)}
        for case_id, ms in by_case.items():
            validation = [m for m in ms if m.split == "validation"]
            if len(validation) > 1:
                raise ValueError(f"experiment {key}: case {case_id} is in the validation fold of two networks")
            if validation:
                kept.append(validation[0])
            elif len(ms) == 1:
                kept.append(ms[0])
            else:
                ms = sorted(ms, key=lambda m: m.fold)
                kept.append(ms[turn[case_id] % len(ms)])
    return kept


def held_out_groups(maps: Sequence[HeldOutMap], n_splits: int) -> np.ndarray:
    """Held-out group of each kept map of one experiment: its fold (several networks), else a cluster split."""
    if len({m.case.id for m in maps}) != len(maps):
        raise ValueError("held_out_groups needs one map per case (see one_map_per_case)")
    folds = np.array([m.fold for m in maps])
    if np.unique(folds).size >= 2:
        return folds
    if n_splits < 2:
        raise ValueError(f"n_splits={n_splits}: cross-fitting needs at least two groups")
    clusters = [case_cluster(m.case) for m in maps]
    group_of = {cluster: k % n_splits for k, cluster in enumerate(sorted(set(clusters)))}
    return np.array([group_of[c] for c in clusters])


@dataclass(frozen=True)
class CrossFit:
    """One held-out group of an experiment: its cases' maps and the maps its parameters are fitted on."""

    group: int
    held_out: list[HeldOutMap]
    fit: list[HeldOutMap]


def crossfit_sets(maps: Sequence[HeldOutMap], n_splits: int) -> list[CrossFit]:
    """The held-out groups of one experiment's kept maps (:func:`one_map_per_case`), each with its fit set."""
    groups = held_out_groups(maps, n_splits)
    sets = []
    for g in np.unique(groups):
        held_out = [m for m, k in zip(maps, groups) if k == g]
        fit = [m for m, k in zip(maps, groups) if k != g]
        if len(fit) < 2:
            raise ValueError(f"experiment {maps[0].experiment}: too few cases outside group {g} to cross-fit")
        sets.append(CrossFit(int(g), held_out, fit))
    return sets
