"""A run killed with SIGKILL at any interesting point restarts and ends exactly like an uninterrupted run.

The kill is made deterministic by the test hook of ``volbias.training.run`` (``$VOLBIAS_TEST_KILL_AT``): the
run sends itself SIGKILL right after a given epoch (and its checkpoint, when one is due) or right before it
writes DONE.  The killed leg runs in a subprocess (in its own process group, always reaped); the restart and
the uninterrupted reference run in this process, one thread each.  Points covered: inside the first stage,
inside the second stage of CE-SD and CE-CE, after the last checkpoint (before the evaluation), after the
evaluation but before DONE, and between checkpoints when ``checkpoint_every`` is 2 (epochs lost with the
process are trained again, also across the switch of stages).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from volbias.training import run
from volbias.training.checkpoint import load_checkpoint
from volbias.training.run import KILL_AT_ENV

pytestmark = pytest.mark.slow

EPOCHS = 6  # CE-SD and CE-CE: epochs 1-3 train CE (stage 0), epochs 4-6 the second loss (stage 1)
SCRIPT = "import sys; from volbias.training import run; run(sys.argv[1], sys.argv[2])"


def config(loss: str, checkpoint_every: int) -> dict:
    return {"task": "synthetic", "task_options": {"dims": 2}, "loss": loss, "fold": 0, "seed": 3,
            "profile": "smoke", "device": "cpu",
            "training": {"epochs": EPOCHS, "checkpoint_every": checkpoint_every, "pretrain_fraction": 0.5}}


@contextmanager
def started(command: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """A subprocess in its own process group; whatever happens in the block, the group is killed and reaped."""
    proc = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def train_until_killed(values: dict, out: Path, kill_at: str) -> None:
    """Train ``values`` into ``out`` in a subprocess that kills itself at ``kill_at``."""
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(values))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", KILL_AT_ENV: kill_at}
    with started([sys.executable, "-c", SCRIPT, str(path), str(out)], env) as proc:
        _, stderr = proc.communicate(timeout=600)  # a guard against a hang, not a speed requirement
        assert proc.returncode == -signal.SIGKILL, f"the run was not killed at {kill_at}:\n{stderr[-2000:]}"


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Runs in this process use one thread, like the killed subprocesses (bitwise equal float sums)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reference(one_thread, tmp_path_factory: pytest.TempPathFactory):
    """Uninterrupted runs, one per (loss, checkpoint_every), trained on first use."""
    root = tmp_path_factory.mktemp("reference")
    done: dict[tuple[str, int], Path] = {}

    def get(loss: str, checkpoint_every: int) -> Path:
        key = (loss, checkpoint_every)
        if key not in done:
            done[key] = run(config(loss, checkpoint_every), root / f"{loss}-every{checkpoint_every}").out_dir
        return done[key]

    return get


def assert_same_results(out: Path, ref: Path) -> None:
    pd.testing.assert_frame_equal(pd.read_csv(out / "cases.csv"), pd.read_csv(ref / "cases.csv"))
    with np.load(out / "probabilities.npz") as got, np.load(ref / "probabilities.npz") as want:
        assert sorted(got.files) == sorted(want.files)
        for case_id in want.files:
            np.testing.assert_array_equal(got[case_id], want[case_id], err_msg=case_id)
    log, ref_log = (pd.read_csv(d / "train_log.csv").drop(columns="seconds") for d in (out, ref))
    pd.testing.assert_frame_equal(log, ref_log)


# (loss, checkpoint_every, kill point, epoch of the last checkpoint before the kill, its stage)
KILLS = [
    pytest.param("ce-sd", 1, "epoch:2", 2, 0, id="ce-sd-in-stage-0"),
    pytest.param("ce-sd", 1, "epoch:5", 5, 1, id="ce-sd-in-stage-1"),
    pytest.param("ce-ce", 1, "epoch:4", 4, 1, id="ce-ce-in-stage-1"),
    pytest.param("ce-sd", 1, f"epoch:{EPOCHS}", EPOCHS, 1, id="after-last-checkpoint"),
    pytest.param("ce-sd", 1, "before-done", EPOCHS, 1, id="before-done"),
    pytest.param("ce-sd", 2, "epoch:3", 2, 0, id="every-2-lost-epoch-crosses-the-stage-switch"),
    pytest.param("ce-sd", 2, "epoch:5", 4, 1, id="every-2-in-stage-1"),
]


@pytest.mark.parametrize(("loss", "checkpoint_every", "kill_at", "saved_epoch", "saved_stage"), KILLS)
def test_killed_run_restarts_to_the_uninterrupted_result(reference, tmp_path: Path, loss: str,
                                                         checkpoint_every: int, kill_at: str, saved_epoch: int,
                                                         saved_stage: int) -> None:
    values = config(loss, checkpoint_every)
    out = tmp_path / "killed"
    train_until_killed(values, out, kill_at)

    # what the kill left: the last checkpoint and its log, no DONE; results only when killed before DONE
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert (state["epoch"], state["stage"]) == (saved_epoch, saved_stage)
    assert len(pd.read_csv(out / "train_log.csv")) == saved_epoch
    assert not (out / "DONE").exists()
    assert (out / "cases.csv").exists() is (kill_at == "before-done")

    result = run(values, out)  # the restart
    assert result.trained and (out / "DONE").is_file()
    ref = reference(loss, checkpoint_every)
    assert_same_results(out, ref)
    # the restart resumed: it trained only the epochs after the checkpoint
    steps_per_epoch = json.loads((ref / "summary.json").read_text())["steps_this_call"] // EPOCHS
    assert result.summary["steps_this_call"] == (EPOCHS - saved_epoch) * steps_per_epoch
    assert load_checkpoint(out / "checkpoints" / "last.pt")["epoch"] == EPOCHS
