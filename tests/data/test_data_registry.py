"""The task registry: every task listed with consistent constants; deterministic, grouped, balanced folds."""

from __future__ import annotations

import numpy as np

from volbias.data import get_spec, list_tasks, tasks_table
from volbias.data.registry import derived_folds


def test_every_task_is_listed():
    assert set(list_tasks()) == {"BR18", "IS17", "IS18", "BR18-sample", "LIDC", "synthetic", "MO17"}
    table = tasks_table()
    assert table.loc["MO17", "available"] == "private"
    assert table.loc["BR18", "grid"] == "2 mm isotropic" and table.loc["LIDC", "grid"] == "native pixels"


def test_constants_match_inputs():
    for name in list_tasks():
        spec = get_spec(name)
        assert len(spec.shifts) == len(spec.scales)
        if spec.public:
            assert len(spec.shifts) == len(spec.inputs) and all(s > 0 for s in spec.scales)
    assert get_spec("BR18-sample").shifts == get_spec("BR18").shifts[:2]
    assert get_spec("BR18-sample").scales == get_spec("BR18").scales[:2]
    assert get_spec("IS18").mask_threshold == -23.0 and get_spec("BR18").mask_rule == "FLAIR > 0"


def test_derived_folds_keep_groups_and_balance():
    rng = np.random.default_rng(0)
    ids = [f"n{k:03d}" for k in range(200)]
    groups = [f"p{g}" for g in rng.integers(0, 60, size=200)]
    folds = derived_folds(ids, seed=3, groups=groups)
    assert sorted(c for f in folds for c in f) == sorted(ids)
    fold_of = {c: k for k, f in enumerate(folds) for c in f}
    for g in set(groups):
        assert len({fold_of[c] for c, gg in zip(ids, groups) if gg == g}) == 1
    largest_group = max(groups.count(g) for g in set(groups))
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= largest_group
    assert folds == derived_folds(ids, seed=3, groups=groups)
    assert folds != derived_folds(ids, seed=4, groups=groups)
