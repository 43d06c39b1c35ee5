"""One cell of a grid as the launchers run it, and what every launcher shares.

:class:`CellJob` trains one cell with :func:`volbias.training.run` (which resumes from the run directory's
checkpoint), records a failure in the cell's one-line ``ERROR`` file instead of stopping the grid, and writes
``launch.json`` (code version, device, threads, host, start and end) when the cell finishes. The local worker
processes (:mod:`volbias.training.launchers`), the SLURM job array and its in-process twin
(:mod:`volbias.training.cluster`) all run this same callable; :class:`GridProgress` is their progress bar.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from tqdm import tqdm

from .checkpoint import write_text_atomic
from .code_hash import training_code_hash
from .grid import Cell, clear_error, one_line, record_error
from .run import run

LAUNCH_INFO = "launch.json"


class LaunchError(ValueError):
    """A grid cannot be launched (bad launcher settings, submitit missing, no SLURM); one line."""


@dataclass(frozen=True)
class CellOutcome:
    """What became of one cell: ``complete`` (already), ``trained``, ``failed`` or ``submitted``."""

    name: str
    status: str
    error: str | None = None


# --- one cell --------------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _code_version() -> tuple[str, str]:
    from ..provenance import describe_environment

    environment = describe_environment()
    return environment["volbias"], environment["commit"]


def device_name(device: str) -> str:
    """A readable name of the device a run used: the GPU's model, else the CPU's."""
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    from ..provenance import _cpu_model

    return f"CPU ({_cpu_model()})"


def _slurm_job() -> str | None:
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array else os.environ.get("SLURM_JOB_ID")


def _write_launch_info(out_dir: Path, launcher: str, worker: int | None, started: float) -> None:
    import torch

    device = json.loads((out_dir / "summary.json").read_text())["device"]
    version, commit = _code_version()
    info = {"launcher": launcher, "worker": worker, "slurm_job": _slurm_job(), "host": socket.gethostname(),
            "device": device, "device_name": device_name(device),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "threads": torch.get_num_threads(),
            "code_version": version, "commit": commit, "training_code_hash": training_code_hash(),
            "started": started, "finished": time.time()}
    write_text_atomic(out_dir / LAUNCH_INFO, json.dumps(info, indent=1) + "\n")


def run_cell(cell: Cell, root: Path, launcher: str, worker: int | None = None) -> CellOutcome:
    """Train one cell into ``root/<cell name>`` (resuming); a failure is recorded in its ``ERROR`` file."""
    out_dir = root / cell.name
    started = time.time()
    clear_error(out_dir)
    try:
        result = run(cell.config(), out_dir)
        if result.trained:
            _write_launch_info(out_dir, launcher, worker, started)
    except Exception as err:  # noqa: BLE001 - any failure of one cell is recorded, and the grid goes on
        message = one_line(err)
        record_error(out_dir, message)
        return CellOutcome(cell.name, "failed", message)
    return CellOutcome(cell.name, "trained" if result.trained else "complete")


@dataclass(frozen=True)
class CellJob:
    """One cell as a picklable callable: what a local worker, a SLURM array element or ``debug`` runs."""

    cell: Cell
    root: Path
    launcher: str
    threads: int | None = None  # torch threads of the run; None keeps the process's setting
    worker: int | None = None

    def __call__(self) -> CellOutcome:
        import torch

        previous = torch.get_num_threads()
        if self.threads:
            torch.set_num_threads(self.threads)
        try:
            return run_cell(self.cell, self.root, self.launcher, self.worker)
        finally:
            torch.set_num_threads(previous)

    def checkpoint(self) -> Any:
        """Called by submitit when SLURM preempts the job or its time runs out: requeue the same cell, which
        resumes from its run directory's last checkpoint."""
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self)


# --- progress ------------------------------------------------------------------------------------------

class GridProgress:
    """One bar for the whole grid: runs done (of all), running, failed, and tqdm's estimate of the time left."""

    def __init__(self, total: int, done: int, refused: Sequence[CellOutcome], enabled: bool) -> None:
        self.running, self.failed = 0, len(refused)
        self.bar = tqdm(total=total, initial=done, desc="grid", unit="run", disable=not enabled)
        for outcome in refused:  # cells whose config is invalid: they failed before any run started
            self.bar.write(f"failed: {outcome.name}: {outcome.error}")
        self._show()

    def _show(self) -> None:
        self.bar.set_postfix_str(f"running {self.running}, failed {self.failed}")

    def started(self) -> None:
        """A run started."""
        self.running += 1
        self._show()

    def finished(self, outcome: CellOutcome) -> None:
        """A run ended (trained or failed)."""
        self.running -= 1
        if outcome.status == "failed":
            self.failed += 1
            self.bar.write(f"failed: {outcome.name}: {outcome.error}")
        elif self.bar.disable is False:
            self.bar.write(f"{outcome.status}: {outcome.name}")
        self.bar.update(1)
        self._show()

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()