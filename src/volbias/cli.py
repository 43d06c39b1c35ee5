"""Command line: ``volbias run --config FILE --out DIR``, ``volbias sweep ...`` and ``volbias audit ...``.

Bad input (unknown key, task, loss or profile; missing file; bad data) ends with one line
``volbias: error: ...`` and exit status 2. ``volbias sweep`` exits with the number of runs that failed;
``volbias collect RUNS_DIR`` merges a grid's results (see :mod:`volbias.training.command`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

import yaml

from . import __version__
from .audit.command import add_audit_command, run_audit_command
from .profiles import PROFILE_NAMES
from .training.command import add_collect_command, add_launcher_arguments, run_collect_command, run_sweep_command


def _mapping(text: str) -> dict[str, Any]:
    """Parse a YAML/JSON mapping given on the command line, e.g. '{dims: 3}'."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"not a YAML mapping: {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"not a YAML mapping: {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``volbias`` command."""
    parser = argparse.ArgumentParser(prog="volbias", description="Train the paper's network (volume bias of soft Dice).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run_p = commands.add_parser("run", help="train one fold from a YAML config (resumes if interrupted)")
    run_p.add_argument("--config", required=True, help="YAML file with task, task_options, loss, fold, seed, profile, device")
    run_p.add_argument("--out", required=True, help="run directory")
    run_p.add_argument("--quiet", action="store_true", help="no progress bars")

    sweep_p = commands.add_parser("sweep", help="run tasks x losses x folds x seeds, skipping complete runs")
    sweep_p.add_argument("--tasks", nargs="+", required=True)
    sweep_p.add_argument("--losses", nargs="+", default=["ce", "sd", "ce-ce", "ce-sd"])
    sweep_p.add_argument("--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    sweep_p.add_argument("--seeds", nargs="+", type=int, default=[0])
    sweep_p.add_argument("--profile", default="cpu", choices=PROFILE_NAMES)
    sweep_p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    sweep_p.add_argument("--task-options", type=_mapping, default={},
                         help="YAML mapping of data options applied to every task, e.g. '{dims: 3}'")
    sweep_p.add_argument("--loss-options", type=_mapping, default={},
                         help="YAML mapping of options for the (final) loss, e.g. '{reduction: batch}'")
    sweep_p.add_argument("--training", type=_mapping, default={},
                         help="YAML mapping of profile overrides, e.g. '{epochs: 10}'")
    sweep_p.add_argument("--out", required=True, help="root directory of the sweep's run directories")
    sweep_p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_launcher_arguments(sweep_p)
    add_collect_command(commands)
    add_audit_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``volbias`` console script."""
    args = build_parser().parse_args(argv)
    from .training import run

    try:
        if args.command == "audit":
            run_audit_command(args)
        elif args.command == "run":
            result = run(args.config, args.out, progress=not args.quiet)
            state = "trained" if result.trained else "already complete"
            print(f"{result.out_dir}: {state}; cases table {result.cases_csv}")
        elif args.command == "collect":
            run_collect_command(args)
        else:
            return run_sweep_command(args)
    except (ValueError, FileNotFoundError, KeyError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"volbias: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
