"""The SLURM launcher without a cluster: fake ``sbatch``/``srun``/``scontrol`` on PATH capture the job array
submitit writes; one array element is then run as SLURM would run it, preempted at a known epoch (the gate of
``sweep_gate``), requeued and resumed."""

from __future__ import annotations

import json
import os
import shlex
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sweep_gate import gate
from volbias.training import sweep
from volbias.training.checkpoint import load_checkpoint
from volbias.training.cluster import SUBMITIT_DIR, SlurmOptions

pytestmark = pytest.mark.slow

submitit = pytest.importorskip("submitit")  # volbias[cluster]; environment.yml installs it

JOB = "4242"
PREEMPT_EPOCH = 2
HANG_GUARD_S = 900  # only against a hang (a test that never ends); no result depends on it
GRID = {"tasks": ["synthetic"], "losses": ["ce", "ce-sd", "hinge"], "folds": [0, 1], "seeds": [0],
        "profile": "smoke", "device": "cpu", "task_options": {"synthetic": {"dims": 2}},
        "training": {"epochs": 12, "checkpoint_every": 1}}
OPTIONS = SlurmOptions(partition="gpu-long", gpus_per_run=1, cpus_per_run=1, time_min=90, max_parallel=2,
                       max_requeues=5)


def _tool(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """sbatch keeps a copy of the script it is given and answers with job 4242; scontrol logs its arguments."""
    log = tmp_path / "slurm-log"
    log.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _tool(bin_dir, "sbatch", f'cp "$1" "{log}/sbatch.sh"\necho "Submitted batch job {JOB}"')
    _tool(bin_dir, "srun", "exit 1")  # never run here; submitit looks for it to know it is on a cluster
    _tool(bin_dir, "scontrol", f'echo "$@" >> "{log}/scontrol.txt"')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return log


def _sbatch_flags(script: str) -> dict[str, str]:
    flags = {}
    for line in script.splitlines():
        if line.startswith("#SBATCH --"):
            key, _, value = line[len("#SBATCH --"):].partition("=")
            flags[key] = value
    return flags


def _element(folder: Path, index: int, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Array element ``index`` as SLURM starts it (the script's command without srun)."""
    env = {**(env or os.environ), "SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": str(5000 + index),
           "SLURM_ARRAY_JOB_ID": JOB, "SLURM_ARRAY_TASK_ID": str(index), "SLURM_PROCID": "0",
           "SLURM_LOCALID": "0", "SLURM_NODEID": "0", "SLURM_NTASKS": "1", "SLURM_JOB_NUM_NODES": "1"}
    return subprocess.Popen([sys.executable, "-u", "-m", "submitit.core._submit", str(folder)], env=env)


def test_slurm_job_array_is_written_and_an_element_requeues_and_resumes(fake_slurm: Path, tmp_path: Path) -> None:
    root = tmp_path / "grid"
    done = root / "synthetic" / "ce" / "fold0-seed0"  # complete before the submission: skipped
    sweep(**{**GRID, "losses": ["ce"], "folds": [0]}, out_root=root, launcher="debug", cpus_per_run=1,
          progress=False)
    assert (done / "DONE").is_file()

    report = sweep(**GRID, out_root=root, launcher="slurm", slurm=OPTIONS, progress=False)
    pending = ["synthetic/ce/fold1-seed0", "synthetic/ce-sd/fold0-seed0", "synthetic/ce-sd/fold1-seed0"]
    assert report.job_id == JOB and [o.name for o in report.outcomes if o.status == "submitted"] == pending
    assert report.count("complete") == 1 and {o.name for o in report.failed} == {
        "synthetic/hinge/fold0-seed0", "synthetic/hinge/fold1-seed0"}  # invalid: never submitted

    script = (fake_slurm / "sbatch.sh").read_text()
    flags = _sbatch_flags(script)
    folder = root / SUBMITIT_DIR
    assert flags["array"] == "0-2%2"  # one element per pending cell, at most 2 at a time
    assert (flags["partition"], flags["gpus-per-node"], flags["cpus-per-task"]) == ("gpu-long", "1", "1")
    assert (flags["time"], flags["nodes"], flags["ntasks-per-node"]) == ("90", "1", "1")
    assert flags["job-name"] == "volbias-grid" and flags["signal"].startswith("USR2@")
    assert flags["output"] == f"{folder}/%A_%a_0_log.out"
    command = script.strip().splitlines()[-1]
    assert command.startswith("srun ") and command.endswith(
        f"{shlex.quote(sys.executable)} -u -m submitit.core._submit {folder}")

    for index, name in enumerate(pending):  # the pickled job of each element is that cell
        delayed = submitit.core.utils.DelayedSubmission.load(folder / f"{JOB}_{index}_submitted.pkl")
        job = delayed.function
        assert (job.cell.name, job.root, job.launcher, job.threads) == (name, root, "slurm", 1)
        assert delayed._timeout_min == 90 and delayed._timeout_countdown == 5

    # element 1 (ce-sd, fold 0) starts, is preempted after its checkpoint of epoch 2, is requeued and resumes
    run_dir = root / pending[1]
    held = gate(tmp_path / "gate", epoch=PREEMPT_EPOCH)  # the element waits there until SLURM's signal comes
    try:
        element = _element(folder, 1, held.env)
        held.arrivals(1, element)
        element.send_signal(signal.SIGUSR2)  # what SLURM sends on preemption
        assert element.wait(timeout=HANG_GUARD_S) != 0
    finally:
        held.close()
    assert (fake_slurm / "scontrol.txt").read_text().split() == ["requeue", f"{JOB}_1"]
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["epoch"] == PREEMPT_EPOCH
    assert not (run_dir / "DONE").exists() and not (run_dir / "ERROR").exists()

    assert _element(folder, 1).wait(timeout=HANG_GUARD_S) == 0  # SLURM starts the requeued element again
    assert (run_dir / "DONE").is_file()
    outcome = submitit.core.utils.pickle_load(folder / f"{JOB}_1_0_result.pkl")
    assert outcome[0] == "success" and outcome[1].status == "trained"

    reference = tmp_path / "reference"  # the same cell uninterrupted, with the same one thread
    sweep(**{**GRID, "losses": ["ce-sd"], "folds": [0]}, out_root=reference, launcher="debug", cpus_per_run=1,
          progress=False)
    pd.testing.assert_frame_equal(pd.read_csv(run_dir / "cases.csv"),
                                  pd.read_csv(reference / pending[1] / "cases.csv"))
    probs, ref_probs = (np.load(d / "probabilities.npz") for d in (run_dir, reference / pending[1]))
    assert all(np.array_equal(probs[key], ref_probs[key]) for key in ref_probs.files)
    log = pd.read_csv(run_dir / "train_log.csv")
    assert list(log.epoch) == list(range(1, 13))
    steps, ref_steps = (json.loads((d / "summary.json").read_text())["steps_this_call"]
                        for d in (run_dir, reference / pending[1]))
    assert steps * 12 == ref_steps * (12 - PREEMPT_EPOCH)  # the requeued element resumed from the checkpoint

    # resubmitting skips the complete cells: only the two that have not run are in the new array
    report = sweep(**GRID, out_root=root, launcher="slurm", slurm=OPTIONS, progress=False)
    assert [o.name for o in report.outcomes if o.status == "submitted"] == [pending[0], pending[2]]
    assert _sbatch_flags((fake_slurm / "sbatch.sh").read_text())["array"] == "0-1%2"


def test_slurm_launcher_off_a_cluster_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    from volbias.cli import main

    monkeypatch.setenv("PATH", str(tmp_path))  # no srun, no sbatch
    args = ["sweep", "--tasks", "synthetic", "--losses", "ce", "--folds", "0", "--profile", "smoke",
            "--task-options", "{dims: 2}", "--out", str(tmp_path / "grid"), "--launcher", "slurm"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("volbias: error: launcher slurm:") and "srun" in err and "\n" not in err
