"""A grid as one SLURM job array through submitit (``pip install 'volbias[cluster]'``), and its in-process
twin for tests (``debug``): the same executor settings and the same submission, one element per cell.

Each array element runs one :class:`volbias.training.launchers.CellJob`. SLURM signals a job when it is
preempted and shortly before its time limit; submitit then calls the job's ``checkpoint`` method and
requeues it (up to ``max_requeues`` times after a timeout), and the requeued element resumes the run from
its directory's last checkpoint. submitit's files (sbatch script, pickled jobs, logs) go to
``<root>/.submitit``.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .grid import Cell, one_line
from .cell_jobs import CellJob, CellOutcome, GridProgress, LaunchError

SUBMITIT_DIR = ".submitit"
JOB_NAME = "volbias-grid"


@dataclass(frozen=True)
class SlurmOptions:
    """Resources of every array element (one run) and how many run at once."""

    partition: str | None = None  # None: the cluster's default partition
    gpus_per_run: int = 1
    cpus_per_run: int = 4  # also the run's torch threads
    time_min: int = 240  # time limit of one element; a longer run is requeued and resumes
    max_parallel: int | None = None  # elements running at once; None: all
    max_requeues: int = 10  # requeues after a timeout (preemptions always requeue)

    def __post_init__(self) -> None:
        for name in ("gpus_per_run", "cpus_per_run", "time_min", "max_parallel", "max_requeues"):
            value = getattr(self, name)
            least = 0 if name in ("gpus_per_run", "max_requeues") else 1
            if value is not None and (not isinstance(value, int) or value < least):
                raise LaunchError(f"SLURM option {name}={value!r}: expected an integer >= {least}")


def _submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise LaunchError("the slurm and debug launchers need submitit: pip install 'volbias[cluster]'") from None
    return submitit


def make_executor(root: Path, cluster: str, options: SlurmOptions, n_jobs: int) -> Any:
    """A submitit executor for ``cluster`` ("slurm" or "debug") with the grid's array settings."""
    submitit = _submitit()
    try:
        executor = submitit.AutoExecutor(folder=root / SUBMITIT_DIR, cluster=cluster,
                                         slurm_max_num_timeout=options.max_requeues)
    except RuntimeError as err:  # no srun: not on a SLURM cluster
        raise LaunchError(f"launcher slurm: {one_line(err)}") from None
    executor.update_parameters(
        name=JOB_NAME, timeout_min=options.time_min, nodes=1, tasks_per_node=1,
        cpus_per_task=options.cpus_per_run, gpus_per_node=options.gpus_per_run or None,
        slurm_partition=options.partition, slurm_array_parallelism=options.max_parallel or max(1, n_jobs))
    return executor


def submit(jobs: Sequence[CellJob], root: Path, cluster: str, options: SlurmOptions) -> list[Any]:
    """Submit ``jobs`` as one array (a single job when there is one); returns submitit's jobs."""
    submitit = _submitit()
    executor = make_executor(root, cluster, options, len(jobs))
    try:
        return list(executor.submit_array(list(jobs)))
    except (subprocess.CalledProcessError, submitit.core.utils.FailedJobError,
            submitit.core.utils.FailedSubmissionError, OSError) as err:
        raise LaunchError(f"launcher slurm: sbatch failed: {one_line(err)}") from None


def submit_slurm(cells: Sequence[Cell], root: Path, options: SlurmOptions) -> tuple[list[CellOutcome], str | None]:
    """Submit ``cells`` as one SLURM job array; returns their outcomes ("submitted") and the array's id."""
    if not cells:
        return [], None
    jobs = submit([CellJob(cell, root, "slurm", options.cpus_per_run) for cell in cells], root, "slurm", options)
    return [CellOutcome(cell.name, "submitted") for cell in cells], str(jobs[0].job_id).split("_")[0]


def run_debug(cells: Sequence[Cell], root: Path, threads: int, progress: GridProgress) -> list[CellOutcome]:
    """Submit ``cells`` as the slurm launcher does, to submitit's in-process debug executor, and run them."""
    if not cells:
        return []
    jobs = submit([CellJob(cell, root, "debug", threads) for cell in cells], root, "debug", SlurmOptions())
    outcomes = []
    for job in jobs:
        progress.started()
        outcome = job.result()  # the debug executor runs the job here
        progress.finished(outcome)
        outcomes.append(outcome)
    return outcomes
