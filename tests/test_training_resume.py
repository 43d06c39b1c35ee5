"""A run killed with SIGKILL continues from its last checkpoint and ends exactly like an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from volbias.training.checkpoint import load_checkpoint

EPOCHS = 40
CONFIG = {"task": "synthetic", "task_options": {"dims": 2}, "loss": "ce-sd", "fold": 0, "seed": 3,
          "profile": "smoke", "device": "cpu", "training": {"epochs": EPOCHS, "checkpoint_every": 1}}
SCRIPT = "import sys; from volbias.training import run; run(sys.argv[1], sys.argv[2])"


def _start(config: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(config), str(out)], env=env)


def test_sigkill_then_resume_gives_identical_results(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    reference = _start(config, tmp_path / "reference")

    out = tmp_path / "killed"
    proc = _start(config, out)
    checkpoint = out / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 120
    while not checkpoint.exists():
        assert proc.poll() is None, "the run ended before writing a checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "DONE").exists() and not (out / "cases.csv").exists()
    state = load_checkpoint(checkpoint)  # weights_only=True
    assert 1 <= state["epoch"] < EPOCHS
    assert isinstance(state["rng"]["generator"], torch.Tensor)

    resumed = _start(config, out)
    assert resumed.wait(timeout=300) == 0
    assert reference.wait(timeout=300) == 0
    pd.testing.assert_frame_equal(pd.read_csv(out / "cases.csv"), pd.read_csv(tmp_path / "reference" / "cases.csv"))
    log = pd.read_csv(out / "train_log.csv")
    ref_log = pd.read_csv(tmp_path / "reference" / "train_log.csv")
    assert list(log.epoch) == list(range(1, EPOCHS + 1))
    pd.testing.assert_series_equal(log.train_loss, ref_log.train_loss)
    final = load_checkpoint(checkpoint)
    assert final["epoch"] == EPOCHS
