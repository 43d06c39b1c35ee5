"""A grid of runs: its cells (one run directory each), the grid file, and the state of every cell on disk.

A grid lives in one root directory::

    grid.json                 every cell ever planned here: name -> config values and labels
    <cell name>/              the run directory of one cell (see volbias.training.run), plus
        ERROR                 one line: why the cell's last attempt failed (removed when it is retried)
        launch.json           where and how the cell's finishing call ran (written by the launchers)
    results.csv, manifest.json  the merged results (see volbias.training.collect)

A cell's config is validated when the cell is launched, not when the grid is built, so that one invalid
cell fails alone (with its ``ERROR``) instead of stopping the grid.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

from .checkpoint import write_text_atomic
from .config import ConfigError, RunConfig
from .run import is_complete, resolved_settings

GRID_FILE = "grid.json"
ERROR_FILE = "ERROR"


@dataclass(frozen=True)
class Cell:
    """One cell of a grid: its run directory (relative to the grid's root) and its config values."""

    name: str
    values: Mapping[str, Any]
    labels: Mapping[str, Any] = field(default_factory=dict)  # extra columns of its rows in results.csv

    def config(self) -> RunConfig:
        """The validated config (raises :class:`ConfigError` naming the cell)."""
        return RunConfig.from_dict(self.values, source=f"cell {self.name}")


def cell_name(task: str, loss: str, fold: int, seed: int) -> str:
    """``<task>/<loss>/fold<k>-seed<s>``, the directory a sweep gives one combination."""
    return RunConfig(task=str(task), loss=str(loss), fold=fold, seed=seed).run_name()


def sweep_cells(tasks: Sequence[str], losses: Sequence[str], folds: Sequence[int], seeds: Sequence[int],
                profile: str = "cpu", device: str = "auto",
                task_options: Mapping[str, Mapping[str, Any]] | None = None,
                loss_options: Mapping[str, Mapping[str, Any]] | None = None,
                training: Mapping[str, Any] | None = None) -> list[Cell]:
    """Every combination of tasks x losses x folds x seeds; ``task_options`` / ``loss_options`` by name."""
    task_options = task_options or {}
    loss_options = loss_options or {}
    return [
        Cell(cell_name(task, loss, fold, seed),
             {"task": task, "loss": loss, "fold": fold, "seed": seed, "profile": profile, "device": device,
              "task_options": dict(task_options.get(task, {})), "loss_options": dict(loss_options.get(loss, {})),
              "training": dict(training or {})})
        for task, loss, fold, seed in itertools.product(tasks, losses, folds, seeds)
    ]


def cell_complete(cell: Cell, root: Path) -> bool:
    """True when the cell's directory holds a finished run of exactly the cell's config and profile settings."""
    out_dir = root / cell.name
    if not is_complete(out_dir) or not (out_dir / "config.yaml").is_file():
        return False
    try:
        config = cell.config()
    except ConfigError:
        return False
    if yaml.safe_load((out_dir / "config.yaml").read_text()) != config.to_dict():
        return False
    resolved = out_dir / "resolved.yaml"
    return not resolved.is_file() or yaml.safe_load(resolved.read_text()) == resolved_settings(config)


def check_names(cells: Iterable[Cell]) -> None:
    """Raise ValueError when two cells share a directory or a name leaves the grid's root."""
    seen: set[str] = set()
    for cell in cells:
        parts = Path(cell.name).parts
        if not parts or Path(cell.name).is_absolute() or ".." in parts:
            raise ValueError(f"cell {cell.name!r}: a cell's name must be a relative path inside the grid")
        if cell.name in seen:
            raise ValueError(f"cell {cell.name!r}: planned twice in the same grid")
        seen.add(cell.name)


# --- ERROR files -------------------------------------------------------------------------------------

def one_line(err: BaseException) -> str:
    """``Type: first line of the message`` of an exception."""
    text = str(err).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def record_error(out_dir: Path, message: str) -> None:
    """Write the one-line ``ERROR`` file of a failed cell (atomically)."""
    write_text_atomic(out_dir / ERROR_FILE, message.replace("\n", " ") + "\n")


def read_error(out_dir: Path) -> str | None:
    """The recorded error of a failed cell, None when there is none."""
    path = out_dir / ERROR_FILE
    return path.read_text().strip() if path.is_file() else None


def clear_error(out_dir: Path) -> None:
    """Forget a previous failure before the cell is tried again."""
    (out_dir / ERROR_FILE).unlink(missing_ok=True)


# --- the grid file -------------------------------------------------------------------------------------

def read_grid(root: Path) -> list[Cell]:
    """The cells recorded in ``root/grid.json`` (none when there is no grid file)."""
    path = root / GRID_FILE
    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text())["cells"]
        return [Cell(name, entry["config"], entry.get("labels", {})) for name, entry in entries.items()]
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        raise ValueError(f"{path}: not a grid file (expected {{\"cells\": {{name: {{\"config\": ...}}}}}})") from None


def record_grid(root: Path, cells: Sequence[Cell]) -> None:
    """Add ``cells`` to ``root/grid.json`` (a cell planned again replaces its earlier entry)."""
    entries = {cell.name: cell for cell in read_grid(root)}
    entries.update({cell.name: cell for cell in cells})
    payload = {"cells": {name: {"config": dict(cell.values), "labels": dict(cell.labels)}
                         for name, cell in sorted(entries.items())}}
    os.makedirs(root, exist_ok=True)
    write_text_atomic(root / GRID_FILE, json.dumps(payload, indent=1, sort_keys=True) + "\n")
