"""collect: one results table from a grid's runs, with a manifest, and the runs that need attention.

``collect(runs_dir)`` merges the ``cases.csv`` of every complete run below ``runs_dir`` into
``runs_dir/results.csv`` (the columns of :func:`volbias.training.run_files.read_run`, plus ``run_name`` and the
cells' labels) and writes ``runs_dir/manifest.json``: per run its status, config hash, code version, device,
run time and convergence. The runs are those planned in ``grid.json`` (written by the launchers) and any
other run directory found below ``runs_dir``. A run is

- ``complete``: it has ``DONE`` and a readable ``cases.csv``;
- ``failed``: its last attempt left an ``ERROR`` file (or its ``cases.csv`` cannot be read);
- ``incomplete``: started (it has a run directory) but not finished: running, or interrupted;
- ``missing``: planned but never started.

A complete run is *unconverged* when the convergence rule, applied to its ``train_log.csv`` now
(:func:`volbias.training.run_files.read_run`), says so. Both files are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
import yaml

from .checkpoint import atomic_path, write_text_atomic
from .grid import ERROR_FILE, Cell, read_error, read_grid
from .cell_jobs import LAUNCH_INFO
from .run_files import DONE, empty_cases, read_run, read_summary

RESULTS_FILE = "results.csv"
MANIFEST_FILE = "manifest.json"
STATUSES: tuple[str, ...] = ("complete", "failed", "incomplete", "missing")


@dataclass(frozen=True)
class RunRecord:
    """One run of a grid as the manifest lists it."""

    name: str
    status: str
    error: str | None = None
    converged: bool | None = None  # None: not complete
    convergence: str | None = None  # the recorded reason when a run did not converge
    config_hash: str | None = None
    code_version: str | None = None
    commit: str | None = None
    device: str | None = None
    device_name: str | None = None
    run_seconds: float | None = None  # training epochs (summed over resumptions) plus evaluation
    labels: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Collection:
    """The merged results of a grid and the record of each of its runs."""

    root: Path
    results: pd.DataFrame
    runs: tuple[RunRecord, ...]

    def with_status(self, *statuses: str) -> list[RunRecord]:
        """The runs with any of ``statuses``."""
        return [record for record in self.runs if record.status in statuses]

    @property
    def missing(self) -> list[RunRecord]:
        """Runs without results yet: never started, running or interrupted."""
        return self.with_status("missing", "incomplete")

    @property
    def failed(self) -> list[RunRecord]:
        """Runs whose last attempt failed."""
        return self.with_status("failed")

    @property
    def unconverged(self) -> list[RunRecord]:
        """Complete runs that did not converge."""
        return [record for record in self.runs if record.status == "complete" and record.converged is False]


def config_hash(values: Mapping[str, Any]) -> str:
    """A short, stable hash of a run's config (sha256 of its canonical JSON; key order does not matter)."""
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def find_run_names(root: Path) -> list[str]:
    """Run directories below ``root`` (holding a ``config.yaml`` or an ``ERROR``), relative, sorted."""
    names = set()
    for marker in ("config.yaml", ERROR_FILE):
        for path in root.rglob(marker):
            relative = path.parent.relative_to(root)
            if relative.parts and not any(part.startswith(".") for part in relative.parts):
                names.add(relative.as_posix())
    return sorted(names)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _convergence(cases: pd.DataFrame) -> tuple[bool, str | None]:
    """The run's convergence (the same on every row of :func:`read_run`) and, when not converged, why."""
    converged = bool(cases["converged"].iloc[0]) if len(cases) else False
    return converged, None if converged else str(cases["convergence"].iloc[0]) if len(cases) else "no cases"


def _run_seconds(out_dir: Path) -> float | None:
    summary = read_summary(out_dir)
    log = out_dir / "train_log.csv"
    if not log.is_file() or "eval_seconds" not in summary:
        return None
    epochs = pd.read_csv(log)
    if "seconds" not in epochs.columns:
        return None
    return round(float(epochs["seconds"].sum() + summary["eval_seconds"]), 3)


def _inspect(root: Path, name: str, cell: Cell | None) -> tuple[RunRecord, pd.DataFrame | None]:
    """The record of one run and, when it is complete, its cases."""
    out_dir = root / name
    labels = dict(cell.labels) if cell is not None else {}
    config_path = out_dir / "config.yaml"
    values = dict(cell.values) if cell is not None else None
    if config_path.is_file():
        try:
            values = yaml.safe_load(config_path.read_text())
        except yaml.YAMLError:
            values = None
    launch = _read_json(out_dir / LAUNCH_INFO)
    summary = read_summary(out_dir)
    common = {"config_hash": config_hash(values) if isinstance(values, dict) else None, "labels": labels}
    if (out_dir / DONE).is_file():
        try:
            cases = read_run(out_dir)
        except (ValueError, FileNotFoundError, pd.errors.ParserError) as err:
            return RunRecord(name, "failed", error=f"{type(err).__name__}: {err}", **common), None
        cases["run_name"] = name
        for column, value in labels.items():
            cases[column] = value
        converged, reason = _convergence(cases)
        return RunRecord(name, "complete", converged=converged, convergence=reason,
                         code_version=launch.get("code_version"), commit=launch.get("commit"),
                         device=launch.get("device", summary.get("device")), device_name=launch.get("device_name"),
                         run_seconds=_run_seconds(out_dir), **common), cases
    error = read_error(out_dir)
    if error is not None:
        return RunRecord(name, "failed", error=error, **common), None
    return RunRecord(name, "incomplete" if config_path.is_file() else "missing", **common), None


def empty_results(labels: Sequence[str] = ()) -> pd.DataFrame:
    """The results table of a grid without complete runs (its columns, no rows)."""
    return empty_cases(["run_name", *labels])


def manifest(collection: Collection) -> dict[str, Any]:
    """The manifest of a collection (what ``manifest.json`` holds)."""
    counts = {status: len(collection.with_status(status)) for status in STATUSES}
    return {
        "results": RESULTS_FILE, "n_runs": len(collection.runs), "n_cases": len(collection.results),
        "counts": counts,
        "missing": [record.name for record in collection.missing],
        "failed": [record.name for record in collection.failed],
        "unconverged": [record.name for record in collection.unconverged],
        "runs": [asdict(record) for record in collection.runs],
    }


def collect(runs_dir: str | os.PathLike[str], cells: Sequence[Cell] | None = None,
            write: bool = True) -> Collection:
    """Merge the complete runs below ``runs_dir`` and record every run's state.

    ``cells``: the runs to collect (e.g. one experiment's); default the cells of ``runs_dir/grid.json``
    plus every other run directory found below ``runs_dir``. With ``write``, ``results.csv`` and
    ``manifest.json`` are written (atomically) into ``runs_dir``.
    """
    root = Path(runs_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such runs directory")
    planned = list(cells) if cells is not None else read_grid(root)
    by_name = {cell.name: cell for cell in planned}
    names = list(by_name)
    if cells is None:
        names += [name for name in find_run_names(root) if name not in by_name]
    records, frames = [], []
    for name in names:
        record, cases = _inspect(root, name, by_name.get(name))
        records.append(record)
        if cases is not None:
            frames.append(cases)
    labels = list(dict.fromkeys(key for cell in planned for key in cell.labels))
    results = pd.concat(frames, ignore_index=True) if frames else empty_results(labels)
    collection = Collection(root, results, tuple(records))
    if write:
        with atomic_path(root / RESULTS_FILE) as tmp:
            results.to_csv(tmp, index=False)
        write_text_atomic(root / MANIFEST_FILE, json.dumps(manifest(collection), indent=1) + "\n")
    return collection


def describe(collection: Collection) -> list[str]:
    """Lines for the command line: what was merged, then each missing, failed and unconverged run."""
    complete = len(collection.with_status("complete"))
    lines = [f"{collection.root / RESULTS_FILE}: {len(collection.results)} cases from {complete} of "
             f"{len(collection.runs)} runs"]
    for record in collection.missing:
        how = "started, not finished" if record.status == "incomplete" else "not started"
        lines.append(f"missing: {record.name} ({how})")
    lines += [f"failed: {record.name}: {record.error}" for record in collection.failed]
    lines += [f"unconverged: {record.name}" + (f" ({record.convergence})" if record.convergence else "")
              for record in collection.unconverged]
    return lines

