"""The stored cpu reference result set (data/results/cpu-reference): every run planned, the missing ones
declared pending, made by this training code, small, and with networks that resolve the phantoms' volumes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from volbias.analysis import group_summary, phantom_theory, reference_set, results_store
from volbias.training.code_hash import training_code_hash, training_code_hash_at
from volbias.training.run_files import find_runs

ROOT = reference_set.default_root()
MAX_BYTES = 40 * 2**20


@pytest.fixture(scope="module")
def stored() -> results_store.ResultSet:
    return results_store.read_result_set(ROOT)


def planned_runs() -> list[str]:
    return [cell.name for cell in reference_set.reference_cells(reference_set.reference_experiments())]


def test_every_run_is_planned_and_every_missing_one_is_declared_pending(stored) -> None:
    """The set may be made over several sittings: the runs not made yet are listed in the manifest."""
    planned = planned_runs()
    found = {run.relative_to(ROOT).as_posix() for run in find_runs(ROOT)}
    assert found <= set(planned), sorted(found - set(planned))
    assert stored.manifest["pending"] == [name for name in planned if name not in found]
    assert reference_set.pending_runs(ROOT) == stored.manifest["pending"]
    for run in find_runs(ROOT):
        kept = {path.name for path in run.iterdir()}
        assert {"train_log.csv", "cases.csv", "config.yaml", "summary.json"} <= kept <= set(reference_set.KEEP)


def test_the_phantoms_are_complete_and_every_group_has_its_planned_networks(stored) -> None:
    """Five networks per loss and phantom setting (and the two-stage schedules at sigma/R 0.9); the
    real-data groups have every planned network that is not pending; LIDC folds share no patient."""
    cases = stored.cases
    networks = cases.drop_duplicates(["experiment", "setting_name", "loss", "fold", "seed"])
    counts = networks.groupby(["experiment", "setting_name", "loss"]).size()
    phantoms = counts.loc["controlled_uncertainty"]
    assert set(phantoms.index.get_level_values(0)) == {"independent-r4-sigma0.4", "independent-r4-sigma3.6",
                                                       "shift-r4-sigma0.4", "shift-r4-sigma3.6"}
    assert (phantoms.xs("ce", level="loss") == 5).all() and (phantoms.xs("sd", level="loss") == 5).all()
    assert phantoms.loc[("independent-r4-sigma3.6", "ce-ce")] == 5 and phantoms.loc[("independent-r4-sigma3.6", "ce-sd")] == 5
    made = [name for name in planned_runs() if name not in set(stored.manifest["pending"])]
    expected = pd.Series([tuple(name.split("/")[i] for i in (0, 2, 4)) for name in made]).value_counts()
    assert counts.sort_index().to_dict() == expected.sort_index().to_dict()
    lidc = cases[cases.experiment == "lidc"]
    if len(lidc):
        patients = lidc.groupby("fold").case_id.apply(lambda ids: set(ids.str.split("_").str[0]))
        assert sum(len(p) for p in patients) == len(set.union(*patients))  # folds share no patient


def test_one_training_code_made_every_run(stored) -> None:
    runs = reference_set.run_table(ROOT)
    assert len(runs) == len(find_runs(ROOT)) and runs.training_code_hash.notna().all()
    assert set(runs.training_code_hash) == {training_code_hash()}
    manifest = stored.manifest
    assert manifest["training_code_hash"] == training_code_hash()
    assert manifest["n_runs"] == len(runs) and len(manifest["runs"]) == len(runs)
    assert all(run["seconds"] > 0 for run in manifest["runs"])
    repo = Path(__file__).resolve().parents[1]
    has_commit = subprocess.run(["git", "cat-file", "-e", f"{manifest['commit']}^{{commit}}"], cwd=repo,
                                capture_output=True).returncode == 0
    if has_commit:  # a shallow clone may lack it; the installed code's hash above is checked regardless
        assert training_code_hash_at(manifest["commit"], repo) == training_code_hash()


def test_the_set_is_small() -> None:
    size = sum(path.stat().st_size for path in ROOT.rglob("*") if path.is_file())
    assert size < MAX_BYTES, f"{size / 2**20:.1f} MB"


def test_ce_networks_resolve_the_phantoms_volumes(stored) -> None:
    """At sigma/R 0.9 with independent noise every CE network's soft volume follows the test phantoms'
    expected volume with R^2 >= 0.8 (the budget was chosen for this)."""
    cases = stored.cases
    hard = cases[(cases.setting_name == "independent-r4-sigma3.6") & (cases.split == "test") & (cases.loss == "ce")]
    per_network = group_summary.network_bias(hard.assign(group="phantoms"))
    assert len(per_network) >= 5
    for _, network in per_network.iterrows():
        part = hard[hard.seed == int(network.network.split("seed")[1])]
        by_hand = np.corrcoef(part.pred_volume_soft, part.expected_volume)[0, 1] ** 2
        assert network.r2_soft == pytest.approx(by_hand) and by_hand >= 0.8, network.network


def test_the_theory_of_every_test_phantom_is_stored(stored, tmp_path: Path) -> None:
    """Read from the set's theory tables: nothing left to compute (it would land in ``tmp_path``)."""
    cases = stored.cases
    test = cases[(cases.experiment == "controlled_uncertainty") & (cases.split == "test")]
    attached = phantom_theory.attach_theory_volumes(test, caches=[ROOT / reference_set.THEORY_DIR, tmp_path])
    assert attached.theory_volume.notna().all() and attached.theory_dice.between(0, 1).all()
    assert list(tmp_path.iterdir()) == []
