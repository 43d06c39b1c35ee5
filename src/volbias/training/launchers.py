"""Launchers: the cells of a grid run N at a time in worker processes (``local``), as one SLURM job array
(``slurm``, see :mod:`volbias.training.cluster`), or one by one in this process through the same submission
code (``debug``, for tests).

Every launcher runs a cell the same way, through :class:`CellJob`: train it with
:func:`volbias.training.run` (which resumes from the run directory's checkpoint), record a failure in the
cell's one-line ``ERROR`` file instead of stopping the grid, and write ``launch.json`` (code version,
device, threads, host, start and end) when the cell finishes.

Local workers are pinned once when they start: round-robin over the visible GPUs (``CUDA_VISIBLE_DEVICES``)
when there are any, and ``torch.set_num_threads`` to an equal share of this machine's CPU threads (or
``cpus_per_run``). On CPU, runs are bit-for-bit reproducible for a given number of threads, but another
number of threads adds floating-point sums in another order, and training turns these rounding differences
into slightly different results: a grid run with ``--workers 2`` agrees with one run with ``--workers 1``
only to a tolerance.

Stopping a local sweep stops its runs. SIGINT (Ctrl-C), SIGTERM or SIGHUP to the sweep's process raise
:class:`SweepInterrupted` there: its workers are killed before it returns, no worker is started after the
signal, and the runs that were training are left resumable (no ``ERROR``: they were interrupted, not failed).
A worker ended by one of these signals is taken for the same request and stops the sweep in the same way;
a worker that dies otherwise (SIGKILL, as the out-of-memory killer sends, or a crash) fails its cell only,
and a fresh worker takes the next cell. When the sweep's process is killed outright (SIGKILL), its workers
die with it (:mod:`volbias.training.worker`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from types import FrameType
from typing import Any, Iterator, Mapping, Sequence

from .cell_jobs import CellJob, CellOutcome, GridProgress, LaunchError
from .cluster import SlurmOptions, run_debug, submit_slurm
from .config import ConfigError
from .grid import Cell, cell_complete, check_names, clear_error, one_line, record_error, record_grid

LAUNCHERS: tuple[str, ...] = ("local", "slurm", "debug")


class SweepInterrupted(KeyboardInterrupt):
    """A local sweep was stopped by ``signum`` (sent to its process or to one of its workers); running the
    same sweep again resumes its runs."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum


@dataclass(frozen=True)
class SweepReport:
    """The outcome of every cell of a launched grid, in the grid's order."""

    root: Path
    launcher: str
    outcomes: tuple[CellOutcome, ...]
    job_id: str | None = None  # the SLURM job array

    def count(self, status: str) -> int:
        """Number of cells with ``status``."""
        return sum(outcome.status == status for outcome in self.outcomes)

    @property
    def failed(self) -> list[CellOutcome]:
        """The cells that failed, with their errors."""
        return [outcome for outcome in self.outcomes if outcome.status == "failed"]

    def summary(self) -> str:
        """One line: how many runs were trained, already complete, submitted and failed."""
        if self.launcher == "slurm":
            text = (f"{self.root}: {len(self.outcomes)} runs ({self.count('submitted')} submitted as SLURM job "
                    f"{self.job_id or '-'}, {self.count('complete')} already complete")
        else:
            text = (f"{self.root}: {len(self.outcomes)} runs ({self.count('trained')} trained, "
                    f"{self.count('complete')} already complete")
        return text + (f", {len(self.failed)} failed)" if self.failed else ")")


# --- local workers ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WorkerSlot:
    """What one local worker is pinned to: environment (its GPU) and torch threads."""

    index: int
    threads: int
    env: Mapping[str, str] = field(default_factory=dict)


def cpu_count() -> int:
    """CPU threads this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def visible_gpus() -> list[str]:
    """The GPUs runs may use: the entries of ``CUDA_VISIBLE_DEVICES``, else every GPU torch sees; [] on CPU."""
    import torch

    if not torch.cuda.is_available():
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed:
        return [entry.strip() for entry in listed.split(",") if entry.strip()]
    return [str(index) for index in range(torch.cuda.device_count())]


def worker_slots(workers: int, cpus_per_run: int | None = None) -> list[WorkerSlot]:
    """One slot per worker: GPUs round-robin when there are any; threads ``cpus_per_run`` or an equal share."""
    if workers < 1:
        raise LaunchError(f"workers={workers}: expected at least 1")
    if cpus_per_run is not None and cpus_per_run < 1:
        raise LaunchError(f"cpus_per_run={cpus_per_run}: expected at least 1")
    threads = cpus_per_run or max(1, cpu_count() // workers)
    gpus = visible_gpus()
    return [WorkerSlot(i, threads, {"CUDA_VISIBLE_DEVICES": gpus[i % len(gpus)]} if gpus else {})
            for i in range(workers)]


STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """While the block runs, the first of :data:`STOP_SIGNALS` raises :class:`SweepInterrupted` (later ones
    are ignored, so that they cannot cut short the clean-up the first one started). Only in the main thread,
    the one place Python runs signal handlers; elsewhere the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def interrupt(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        if len(received) == 1:
            raise SweepInterrupted(signum, f"the sweep was stopped by {signal.Signals(signum).name}")

    previous = {signum: signal.signal(signum, interrupt) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class _Worker:
    """The sweep's side of one worker process (:mod:`volbias.training.worker`), pinned to ``slot``."""

    def __init__(self, slot: WorkerSlot) -> None:
        self.slot = slot
        ours, theirs = socket.socketpair()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "volbias.training.worker", str(theirs.fileno()), str(os.getpid())],
            pass_fds=[theirs.fileno()], env={**os.environ, **slot.env})
        theirs.close()
        self.conn = Connection(ours.detach())
        self.cell: Cell | None = None

    def give(self, cell: Cell, root: Path) -> None:
        self.cell = cell
        self.conn.send(CellJob(cell, root, "local", self.slot.threads, self.slot.index))

    def check_not_stopped(self) -> None:
        """Raise :class:`SweepInterrupted` when the worker was ended by one of :data:`STOP_SIGNALS`."""
        code = self.process.poll()
        if code is not None and -code in STOP_SIGNALS:
            name = signal.Signals(-code).name
            raise SweepInterrupted(-code, f"worker {self.slot.index} was stopped by {name}")

    def outcome(self, root: Path) -> CellOutcome:
        """The outcome the worker sent for its cell; a worker that died instead fails its cell, unless a stop
        signal ended it (then the sweep stops, :meth:`check_not_stopped`)."""
        assert self.cell is not None
        try:
            return self.conn.recv()
        except (EOFError, OSError):
            pass
        code = self.process.wait()
        self.check_not_stopped()
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        message = f"WorkerDied: the worker process ended ({how}) while running this cell"
        record_error(root / self.cell.name, message)
        return CellOutcome(self.cell.name, "failed", message)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Tell an idle worker to exit, and wait for it."""
        if self.alive:
            try:
                self.conn.send(None)
                self.process.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
        self.conn.close()

    def kill(self) -> None:
        """Kill the worker, whatever it is doing, and wait until it is gone."""
        if self.alive:
            self.process.kill()
        self.process.wait()
        self.conn.close()


def run_local(cells: Sequence[Cell], root: Path, slots: Sequence[WorkerSlot],
              progress: GridProgress) -> list[CellOutcome]:
    """Run ``cells`` on worker processes, one per slot, each taking the next cell when it is free.

    A stop signal (:data:`STOP_SIGNALS`) to this process or to a worker kills every worker and raises
    :class:`SweepInterrupted`; the runs it interrupted resume when their cells are launched again.
    """
    queue = deque(cells)
    workers: list[_Worker] = []
    outcomes: list[CellOutcome] = []
    stopped = False
    with stop_signals_interrupt():
        try:
            workers.extend(_Worker(slot) for slot in slots[:len(cells)])
            while queue or any(worker.cell for worker in workers):
                for i, worker in enumerate(workers):
                    if worker.cell is None and queue:
                        if not worker.alive:  # died while idle
                            worker.check_not_stopped()
                            worker.stop()
                            workers[i] = worker = _Worker(worker.slot)
                        worker.give(queue.popleft(), root)
                        progress.started()
                ready = wait([worker.conn for worker in workers if worker.cell is not None])
                for worker in workers:
                    if worker.cell is not None and worker.conn in ready:
                        outcome = worker.outcome(root)
                        outcomes.append(outcome)
                        progress.finished(outcome)
                        worker.cell = None
            for worker in workers:
                worker.stop()
            stopped = True
        finally:
            if not stopped:
                for worker in workers:
                    worker.kill()
    return outcomes


# --- any launcher ------------------------------------------------------------------------------------------

def launch(cells: Sequence[Cell], root: str | os.PathLike[str], launcher: str = "local", workers: int = 1,
           cpus_per_run: int | None = None, slurm: Any = None, progress: bool = True) -> SweepReport:
    """Run (or submit) every cell of a grid below ``root`` that is not complete yet.

    ``local`` runs ``workers`` cells at a time in worker processes, each with ``cpus_per_run`` torch threads
    (default an equal share of the CPU); ``debug`` runs them one by one in this process, with the threads of
    one local worker, through the submission code of ``slurm``, which submits them as one job array
    (``slurm``: a :class:`volbias.training.cluster.SlurmOptions`). A cell whose config is invalid, or whose
    run fails, gets an ``ERROR`` file and the others go on. The cells are added to ``root/grid.json``.
    """
    if launcher not in LAUNCHERS:
        raise LaunchError(f"launcher={launcher!r} unknown; expected one of {', '.join(LAUNCHERS)}")
    root = Path(root).absolute()
    check_names(cells)
    slots = worker_slots(workers, cpus_per_run)
    record_grid(root, cells)
    outcomes: dict[str, CellOutcome] = {}
    pending: list[Cell] = []
    for cell in cells:
        if cell_complete(cell, root):
            outcomes[cell.name] = CellOutcome(cell.name, "complete")
            continue
        try:
            cell.config()
        except ConfigError as err:
            record_error(root / cell.name, one_line(err))
            outcomes[cell.name] = CellOutcome(cell.name, "failed", one_line(err))
            continue
        clear_error(root / cell.name)
        pending.append(cell)
    refused = [outcome for outcome in outcomes.values() if outcome.status == "failed"]
    bar = GridProgress(len(cells), len(cells) - len(pending), refused, enabled=progress and launcher != "slurm")
    job_id = None
    try:
        if launcher == "local":
            new = run_local(pending, root, slots, bar)
        elif launcher == "debug":
            new = run_debug(pending, root, slots[0].threads, bar)
        else:
            new, job_id = submit_slurm(pending, root, slurm or SlurmOptions())
    finally:
        bar.close()
    outcomes.update({outcome.name: outcome for outcome in new})
    return SweepReport(root, launcher, tuple(outcomes[cell.name] for cell in cells), job_id)

