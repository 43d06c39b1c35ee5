"""The launcher options of ``volbias sweep``, the ``volbias collect`` subcommand, and what both print.

``volbias sweep`` exits with the number of runs that failed (at most 125), 0 when every run is complete or
submitted; each failure is listed on stderr and recorded in its run directory's ``ERROR`` file. A sweep
stopped by a signal (Ctrl-C, SIGTERM, SIGHUP) says so in one line and exits with 128 + the signal's number,
as a shell reports a process the signal ended; its runs resume when the same command runs again.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

MAX_EXIT_STATUS = 125  # larger statuses mean "killed by a signal" or are reserved by shells


def add_launcher_arguments(sweep: argparse.ArgumentParser) -> None:
    """Add ``--launcher``, ``--workers`` and the SLURM resources to the ``sweep`` subcommand."""
    from .launchers import LAUNCHERS

    sweep.add_argument("--launcher", default="local", choices=LAUNCHERS,
                       help="local: worker processes on this machine; slurm: one SLURM job array (needs "
                            "volbias[cluster]); debug: in this process, for tests (default local)")
    sweep.add_argument("--workers", type=int, default=1,
                       help="local: runs at a time, each on its own GPU (round-robin) or share of the CPU (1)")
    sweep.add_argument("--cpus-per-run", type=int, default=None,
                       help="CPU threads of each run (local: default an equal share of this machine's; slurm: 4)")
    slurm = sweep.add_argument_group("slurm launcher")
    slurm.add_argument("--slurm-partition", default=None, help="partition (default: the cluster's default)")
    slurm.add_argument("--gpus-per-run", type=int, default=1, help="GPUs of each array element (1)")
    slurm.add_argument("--time-min", type=int, default=240,
                       help="time limit of each element in minutes; longer runs are requeued and resume (240)")
    slurm.add_argument("--max-parallel", type=int, default=None,
                       help="array elements running at once (default: all)")
    slurm.add_argument("--max-requeues", type=int, default=10, help="requeues of an element after a timeout (10)")


def run_sweep_command(args: argparse.Namespace) -> int:
    """Run the sweep of parsed arguments; print its summary and failures; return the exit status."""
    from .cluster import SlurmOptions
    from .sweep import sweep

    slurm = None
    if args.launcher == "slurm":
        slurm = SlurmOptions(partition=args.slurm_partition, gpus_per_run=args.gpus_per_run,
                             cpus_per_run=args.cpus_per_run or SlurmOptions.cpus_per_run, time_min=args.time_min,
                             max_parallel=args.max_parallel, max_requeues=args.max_requeues)
    try:
        report = sweep(args.tasks, args.losses, args.folds, args.seeds, args.out, args.profile, args.device,
                       task_options={task: args.task_options for task in args.tasks},
                       loss_options={loss: args.loss_options for loss in args.losses},
                       training=args.training, progress=not args.quiet, launcher=args.launcher,
                       workers=args.workers, cpus_per_run=args.cpus_per_run if slurm is None else None,
                       slurm=slurm)
    except KeyboardInterrupt as stop:  # a SweepInterrupted, or Ctrl-C outside the local launcher
        signum = getattr(stop, "signum", signal.SIGINT)
        reason = str(stop) or f"the sweep was stopped by {signal.Signals(signum).name}"
        print(f"volbias: {reason}; running the same command again resumes its runs", file=sys.stderr)
        return 128 + signum
    print(report.summary())
    if report.launcher == "slurm" and report.job_id:
        print(f"logs in {report.root / '.submitit'}; when the jobs have ended: volbias collect {report.root}")
    for outcome in report.failed:
        print(f"failed: {outcome.name}: {outcome.error}", file=sys.stderr)
    return min(len(report.failed), MAX_EXIT_STATUS)


def add_collect_command(commands: Any) -> None:
    """Add ``collect`` to the ``volbias`` subcommands (``commands`` from ``add_subparsers``)."""
    p = commands.add_parser("collect", help="merge a grid's complete runs into RUNS_DIR/results.csv",
                            description="Merge every complete run's cases.csv below RUNS_DIR into "
                                        "RUNS_DIR/results.csv, write RUNS_DIR/manifest.json, and list the runs "
                                        "that are missing, failed or unconverged.")
    p.add_argument("runs_dir", metavar="RUNS_DIR", help="root of the grid (the --out of volbias sweep)")


def run_collect_command(args: argparse.Namespace) -> None:
    """Collect the grid of parsed arguments and print what was merged and what needs attention."""
    from .collect import collect, describe

    for line in describe(collect(args.runs_dir)):
        print(line)
