"""The local and debug launchers on a smoke grid: same results, failures that stay alone, parallel workers
pinned to their devices, runs killed under ``--workers 2`` that resume to identical results, exit statuses,
and sweeps stopped by a signal that stop their workers. Processes are stopped at known epochs (the
``VOLBIAS_TEST_KILL_AT`` hook of the run, the gate of ``sweep_gate``), never after a wait on the clock."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from sweep_gate import gate, has_ended
from volbias.cli import main
from volbias.training import launchers, sweep
from volbias.training.checkpoint import load_checkpoint
from volbias.training.collect import collect
from volbias.training.run import KILL_AT_ENV

pytestmark = pytest.mark.slow

# ce and sd train; ce-sd fails when its second stage builds SD with an unknown option; hinge is no loss at all
GRID = {"tasks": ["synthetic"], "losses": ["ce", "sd", "ce-sd", "hinge"], "folds": [0], "seeds": [0],
        "profile": "smoke", "device": "cpu", "task_options": {"synthetic": {"dims": 2}},
        "loss_options": {"ce-sd": {"colour": 1}}, "training": {"epochs": 2}}
TRAINED = {"synthetic/ce/fold0-seed0", "synthetic/sd/fold0-seed0"}
FAILED = {"synthetic/ce-sd/fold0-seed0": "ValueError: loss 'sd': bad options ['colour']",
          "synthetic/hinge/fold0-seed0": "loss='hinge' unknown"}
FAKE_GPUS = ["7", "9"]


@pytest.fixture(scope="module")
def grids(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same grid run by the debug launcher, by one local worker and by two (on two fake GPUs); the two
    workers' first runs both wait after their first epoch until both are there (``overlap``: their pids)."""
    root = tmp_path_factory.mktemp("grids")
    out = {"debug": (root / "debug", sweep(**GRID, out_root=root / "debug", launcher="debug", progress=False)),
           "local1": (root / "local1", sweep(**GRID, out_root=root / "local1", workers=1, progress=False))}
    barrier = gate(root / "gate", epoch=1)
    with pytest.MonkeyPatch.context() as patch, ThreadPoolExecutor(1) as pool:
        patch.setattr(launchers, "visible_gpus", lambda: FAKE_GPUS)  # the workers only see CUDA_VISIBLE_DEVICES
        for name, value in barrier.env.items():  # the workers inherit this process's environment
            patch.setenv(name, value)
        local2 = pool.submit(sweep, **GRID, out_root=root / "local2", workers=2, progress=False)
        try:
            out["overlap"] = barrier.arrivals(2, local2)
        finally:
            barrier.open()
        out["local2"] = (root / "local2", local2.result())
    barrier.close()
    return out


def _launch_info(root: Path) -> dict[str, dict]:
    return {name: json.loads((root / name / "launch.json").read_text()) for name in TRAINED}


def test_debug_and_local_launchers_collect_the_same_table(grids) -> None:
    (debug, _), (local, _) = grids["debug"], grids["local1"]
    # different code paths (in this process vs a worker process), the same number of torch threads
    debug_info, local_info = _launch_info(debug), _launch_info(local)
    assert {i["launcher"] for i in debug_info.values()} == {"debug"}
    assert {i["launcher"] for i in local_info.values()} == {"local"}
    assert {i["threads"] for i in debug_info.values()} == {i["threads"] for i in local_info.values()}
    a = collect(debug).results.drop(columns="run_dir")
    b = collect(local).results.drop(columns="run_dir")
    pd.testing.assert_frame_equal(a, b)
    assert set(b.run_name) == TRAINED
    for name in TRAINED:  # each run's rows are its own cases.csv
        own = pd.read_csv(local / name / "cases.csv")
        rows = b[b.run_name == name].reset_index(drop=True)
        pd.testing.assert_series_equal(rows.dice, own.dice)
        pd.testing.assert_series_equal(rows.pred_volume_soft, own.pred_volume_soft)


@pytest.mark.parametrize("launcher", ["debug", "local1", "local2"])
def test_a_failing_cell_fails_alone(grids, launcher: str) -> None:
    root, report = grids[launcher]
    assert report.count("trained") == len(TRAINED) and len(report.failed) == len(FAILED)
    assert {o.name for o in report.failed} == set(FAILED)
    for name, message in FAILED.items():
        error = (root / name / "ERROR").read_text()
        assert message in error and error.count("\n") == 1 and not (root / name / "DONE").exists()
    assert not (root / "synthetic/hinge/fold0-seed0/config.yaml").exists()  # refused before it ran
    assert all((root / name / "DONE").is_file() for name in TRAINED)
    collection = collect(root)
    assert {r.name for r in collection.failed} == set(FAILED)
    assert {r.name for r in collection.with_status("complete")} == TRAINED


def test_two_workers_run_at_once_pinned_and_match_one_worker(grids) -> None:
    (one, _), (two, _) = grids["local1"], grids["local2"]
    info = _launch_info(two)
    assert {i["worker"]: i["cuda_visible_devices"] for i in info.values()} == {0: "7", 1: "9"}
    share = max(1, launchers.cpu_count() // 2)
    assert {i["threads"] for i in info.values()} == {share}  # measured inside the workers
    assert len(set(grids["overlap"])) == 2  # two processes, each in a run, waited for each other at the gate
    a = collect(one).results.sort_values(["run_name", "case_id"]).reset_index(drop=True)
    b = collect(two).results.sort_values(["run_name", "case_id"]).reset_index(drop=True)
    assert list(a.case_id) == list(b.case_id)
    if {i["threads"] for i in _launch_info(one).values()} == {share}:  # a one-core machine: same threads
        pd.testing.assert_frame_equal(a.drop(columns="run_dir"), b.drop(columns="run_dir"))
    # Another number of torch threads sums in another order, so the results are not bit-identical. Measured on
    # smoke grids (2-3 epochs): training losses agree to 5e-5 (relative) or better, soft volumes to 1.5e-3,
    # and at most a few voxels per case flip (Dice differences up to 0.007). The tolerances allow a few times
    # that.
    for name in TRAINED:
        loss_one = pd.read_csv(one / name / "train_log.csv").train_loss
        loss_two = pd.read_csv(two / name / "train_log.csv").train_loss
        np.testing.assert_allclose(loss_two, loss_one, rtol=1e-3)
    np.testing.assert_allclose(b.pred_volume_soft, a.pred_volume_soft, rtol=1e-2)
    np.testing.assert_allclose(b.pred_volume_hard, a.pred_volume_hard, rtol=2e-2)
    np.testing.assert_allclose(b.dice, a.dice, atol=0.02)


def test_rerun_skips_complete_cells_and_retries_failed_ones(grids, tmp_path: Path) -> None:
    root = tmp_path / "again"
    shutil.copytree(grids["debug"][0], root)
    stamps = {name: (root / name / "cases.csv").stat().st_mtime_ns for name in TRAINED}
    fixed = {**GRID, "loss_options": {}, "losses": ["ce", "sd", "ce-sd"]}  # ce-sd now valid, hinge dropped
    retry = "synthetic/ce-sd/fold0-seed0"
    report = sweep(**fixed, out_root=root, launcher="debug", progress=False)
    assert report.count("complete") == len(TRAINED) and [o.name for o in report.failed] == [retry]
    assert "holds a run with a different config" in (root / retry / "ERROR").read_text()  # the old attempt's
    shutil.rmtree(root / retry)  # as the error says: its directory holds the failed run of the old config
    report = sweep(**fixed, out_root=root, launcher="debug", progress=False)
    assert report.count("complete") == len(TRAINED) and report.count("trained") == 1 and not report.failed
    assert {name: (root / name / "cases.csv").stat().st_mtime_ns for name in TRAINED} == stamps
    assert not (root / retry / "ERROR").exists()
    collection = collect(root)  # hinge is still planned in grid.json and still failed
    assert {r.name for r in collection.failed} == {n for n in FAILED if "hinge" in n}
    assert len(collection.with_status("complete")) == len(TRAINED) + 1


def test_worker_slots_round_robin_over_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2, 5")
    slots = launchers.worker_slots(3)
    assert [slot.env["CUDA_VISIBLE_DEVICES"] for slot in slots] == ["2", "5", "2"]
    assert [slot.threads for slot in launchers.worker_slots(3, cpus_per_run=4)] == [4, 4, 4]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert all(slot.env == {} for slot in launchers.worker_slots(2))
    with pytest.raises(launchers.LaunchError, match="workers=0"):
        launchers.worker_slots(0)


def test_sweep_command_exit_status_counts_failures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["sweep", "--tasks", "synthetic", "--losses", "ce", "hinge", "--folds", "0", "--profile", "smoke",
            "--device", "cpu", "--task-options", "{dims: 2}", "--training", "{epochs: 1}", "--out",
            str(tmp_path / "grid"), "--launcher", "debug", "--quiet"]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert f"{tmp_path / 'grid'}: 2 runs (1 trained, 0 already complete, 1 failed)" in captured.out
    assert "failed: synthetic/hinge/fold0-seed0: ConfigError:" in captured.err
    assert main(["sweep", *args[1:], "--workers", "0"]) == 2
    assert capsys.readouterr().err.strip() == "volbias: error: workers=0: expected at least 1"


# --- killed under --workers 2, then resumed; stopped sweeps stop their workers -----------------------------

HANG_GUARD_S = 900  # only against a hang (a test that never ends); no result depends on it
RESUME = ["--tasks", "synthetic", "--losses", "ce-sd", "ce", "sd", "--folds", "0", "--seeds", "3", "--profile",
          "smoke", "--device", "cpu", "--task-options", "{dims: 2}", "--training", "{epochs: 8, checkpoint_every: 1}"]
RESUME_CELLS = ["synthetic/ce-sd/fold0-seed3", "synthetic/ce/fold0-seed3", "synthetic/sd/fold0-seed3"]
KILL_EPOCH = 3


def _sweep_command(out: Path, grid: list[str]) -> list[str]:
    return [sys.executable, "-m", "volbias.cli", "sweep", *grid, "--out", str(out), "--workers", "2",
            "--cpus-per-run", "1", "--quiet"]


def test_killed_runs_fail_alone_and_resume_to_identical_results(tmp_path: Path) -> None:
    out = tmp_path / "killed"
    # every run SIGKILLs its worker right after epoch 3 (and its checkpoint): three runs, three workers die
    killing = {**os.environ, KILL_AT_ENV: f"epoch:{KILL_EPOCH}"}
    first = subprocess.run(_sweep_command(out, RESUME), env=killing, capture_output=True, text=True,
                           timeout=HANG_GUARD_S)
    assert first.returncode == len(RESUME_CELLS), first.stderr  # exit status: the number of failed runs
    for name in RESUME_CELLS:  # the third run had a fresh worker: a dead worker fails its run only
        assert (out / name / "ERROR").read_text().startswith("WorkerDied: the worker process ended (signal SIGKILL)")
        assert f"failed: {name}: WorkerDied" in first.stderr
        assert load_checkpoint(out / name / "checkpoints" / "last.pt")["epoch"] == KILL_EPOCH
        assert not (out / name / "DONE").exists()
    assert {r.name for r in collect(out).failed} == set(RESUME_CELLS)

    resumed = subprocess.run(_sweep_command(out, RESUME), capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert resumed.returncode == 0, resumed.stderr
    reference = tmp_path / "reference"  # uninterrupted, in this process, with the same one thread per run
    sweep(["synthetic"], ["ce-sd", "ce", "sd"], [0], [3], reference, profile="smoke", device="cpu",
          task_options={"synthetic": {"dims": 2}}, training={"epochs": 8, "checkpoint_every": 1},
          launcher="debug", cpus_per_run=1, progress=False)
    for name in RESUME_CELLS:
        assert not (out / name / "ERROR").exists()
        pd.testing.assert_frame_equal(pd.read_csv(out / name / "cases.csv"),
                                      pd.read_csv(reference / name / "cases.csv"))
        log, ref_log = (pd.read_csv(d / name / "train_log.csv") for d in (out, reference))
        assert list(log.epoch) == list(range(1, 9))
        pd.testing.assert_series_equal(log.train_loss, ref_log.train_loss)
        probs, ref_probs = (np.load(d / name / "probabilities.npz") for d in (out, reference))
        assert all(np.array_equal(probs[key], ref_probs[key]) for key in ref_probs.files)
        # resumed from the checkpoint, not restarted: the last call trained the epochs after the kill only
        steps, ref_steps = (json.loads((d / name / "summary.json").read_text())["steps_this_call"]
                            for d in (out, reference))
        assert steps * 8 == ref_steps * (8 - KILL_EPOCH)
    assert {r.name for r in collect(out).with_status("complete")} == set(RESUME_CELLS)


STOPPED = ["--tasks", "synthetic", "--losses", "ce", "sd", "ce-ce", "--folds", "0", "--seeds", "0", "--profile",
           "smoke", "--device", "cpu", "--task-options", "{dims: 2}", "--training", "{epochs: 3, checkpoint_every: 1}"]
STOPPED_CELLS = ["synthetic/ce/fold0-seed0", "synthetic/sd/fold0-seed0", "synthetic/ce-ce/fold0-seed0"]


@pytest.mark.parametrize(("target", "signum", "status", "reason"), [
    ("sweep", signal.SIGTERM, 128 + signal.SIGTERM, r"the sweep was stopped by SIGTERM"),
    ("sweep", signal.SIGINT, 128 + signal.SIGINT, r"the sweep was stopped by SIGINT"),
    ("sweep", signal.SIGKILL, -signal.SIGKILL, None),
    ("worker", signal.SIGTERM, 128 + signal.SIGTERM, r"worker [01] was stopped by SIGTERM"),
], ids=["sweep-SIGTERM", "sweep-SIGINT", "sweep-SIGKILL", "worker-SIGTERM"])
def test_a_stopped_sweep_stops_its_workers_and_starts_no_other(tmp_path: Path, target: str, signum: int,
                                                                status: int, reason: str | None) -> None:
    out = tmp_path / "grid"
    held = gate(tmp_path / "gate", epoch=1)  # both workers stop after their run's first epoch and wait there
    stderr = tmp_path / "stderr.txt"
    with stderr.open("w") as sink:
        proc = subprocess.Popen(_sweep_command(out, STOPPED), env=held.env, stderr=sink, start_new_session=True)
    try:
        workers = held.arrivals(2, proc)
        os.kill(proc.pid if target == "sweep" else workers[0], signum)
        assert held.no_arrival_until_exit(proc) == status, stderr.read_text()
        err = stderr.read_text()
        if reason is None:  # killed outright: the kernel ends the workers as the sweep's process ends
            assert all(has_ended(pid, within=60) for pid in workers), "a worker outlived the killed sweep"
        else:  # the sweep ended its workers (and waited for them) before it exited
            assert all(has_ended(pid, within=0) for pid in workers), "a worker outlived the stopped sweep"
            assert re.fullmatch(f"volbias: {reason}; running the same command again resumes its runs", err.strip())
    finally:
        held.close()
        with contextlib.suppress(ProcessLookupError):  # clean up after a failed test, if anything is left
            os.killpg(proc.pid, signal.SIGKILL)
    started, waiting = STOPPED_CELLS[:2], STOPPED_CELLS[2]
    assert not (out / waiting).exists()  # no worker took the third run after the signal
    for name in started:  # interrupted, not failed: resumable from epoch 1, no ERROR
        assert load_checkpoint(out / name / "checkpoints" / "last.pt")["epoch"] == 1
        assert not (out / name / "ERROR").exists() and not (out / name / "DONE").exists()
    status_of = {r.name: r.status for r in collect(out, write=False).runs}
    assert status_of == {**{name: "incomplete" for name in started}, waiting: "missing"}
