"""Stored result sets: ``data/results/<run>/`` folders of finished runs plus a ``manifest.json``.

A result set is a folder that holds run directories (each with ``config.yaml``, ``cases.csv`` and
``DONE``, see contracts.md) and a ``manifest.json`` describing how they were produced:
``{"commit", "versions", "hardware", "seed", "profile", "created", "description"}``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from volbias.training.run_files import find_runs, load_runs, read_config, read_summary

MANIFEST = "manifest.json"
MANIFEST_KEYS: tuple[str, ...] = ("commit", "versions", "hardware", "seed")
"""Keys a manifest must have."""

PACKAGES: tuple[str, ...] = ("volbias", "torch", "monai", "numpy", "scipy", "pandas")


@dataclass(frozen=True)
class ResultSet:
    """One stored result set: its name, folder, manifest and concatenated cases."""

    name: str
    path: Path
    manifest: dict[str, Any]
    cases: pd.DataFrame


def git_commit(repo: str | Path | None = None) -> str:
    """The current commit hash of ``repo`` (read-only ``git rev-parse``), or ``"unknown"``."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def package_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of ``packages`` (``"not installed"`` where absent) and of Python."""
    versions = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def hardware_description() -> dict[str, Any]:
    """Machine, CPU count and accelerator (CUDA device name if torch sees one)."""
    info: dict[str, Any] = {"machine": platform.machine(), "system": platform.system(),
                            "processor": platform.processor() or "unknown", "cpu_count": os.cpu_count()}
    try:
        import torch

        info["accelerator"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    except ImportError:
        info["accelerator"] = "unknown"
    return info


def write_manifest(result_dir: str | Path, seed: int, profile: str, description: str = "",
                   **extra: Any) -> Path:
    """Write ``manifest.json`` (commit, versions, hardware, seed, profile, time) atomically."""
    result_dir = Path(result_dir)
    result_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "commit": git_commit(Path(__file__).resolve().parent), "versions": package_versions(),
        "hardware": hardware_description(), "seed": int(seed), "profile": profile,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "description": description,
        **extra,
    }
    path = result_dir / MANIFEST
    with tempfile.NamedTemporaryFile("w", dir=result_dir, suffix=".tmp", delete=False) as handle:
        json.dump(manifest, handle, indent=2, sort_keys=True)
    os.replace(handle.name, path)
    return path


def read_manifest(result_dir: str | Path) -> dict[str, Any]:
    """Read and check a result set's ``manifest.json``."""
    path = Path(result_dir) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{path}: a result set needs a manifest.json (see data/results/README.md)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None
    if not isinstance(manifest, dict):
        raise ValueError(f"{path}: expected a JSON object")
    missing = [key for key in MANIFEST_KEYS if key not in manifest]
    if missing:
        raise ValueError(f"{path}: manifest lacks {missing}")
    return manifest


def read_result_set(result_dir: str | Path) -> ResultSet:
    """One result set: manifest and the cases of all its finished runs.

    Added columns: ``source`` (the set's name), ``experiment`` (the first folder below the set, e.g.
    ``brain_tumour``), ``setting_name`` (the folder below the profile's, as the book's run layout
    ``<experiment>/<profile>/<setting>/<task>/<loss>/<run>`` names it; missing for runs stored outside it) and
    ``budget`` (the training-length factor of an experiment named ``<name>_x<factor>``, else 1).
    """
    result_dir = Path(result_dir)
    manifest = read_manifest(result_dir)
    if not find_runs(result_dir):
        raise ValueError(f"{result_dir}: no finished runs (folders with cases.csv and DONE)")
    cases = load_runs(result_dir)
    cases["source"] = result_dir.name
    parts = [Path(d).relative_to(result_dir).parts for d in cases["run_dir"]]
    cases["experiment"] = [p[0] for p in parts]
    cases["setting_name"] = [p[2] if len(p) == 6 else None for p in parts]
    budget = cases["experiment"].str.extract(r"_x(\d+(?:\.\d+)?)$")[0].astype(float)
    cases["budget"] = budget.fillna(1.0)
    return ResultSet(result_dir.name, result_dir, manifest, cases)


def _config_key(run_dir: str | Path) -> str:
    """The configuration a run ran with: its ``config.yaml`` with the device it used (``summary.json``) in place
    of the one it asked for, so that a run asked for ``auto`` that ran on the CPU matches one asked for ``cpu``."""
    config = read_config(run_dir)
    used = read_summary(run_dir).get("device")
    if used:
        config["device"] = used
    return json.dumps(config, sort_keys=True, default=str)


def live_vs_stored(live: pd.DataFrame, stored: pd.DataFrame) -> pd.DataFrame:
    """Runs of ``live`` whose ``config.yaml`` equals a stored run's, with how their cases compare.

    One row per such pair: ``run`` (the live run's folder), ``stored_run``, ``cases`` (matched on
    ``case_id``), ``identical`` (every number of every case equal to the last digit) and ``largest_difference``
    with the ``column`` where it occurs. Cases present in only one of the two count as a difference.
    """
    stored_dirs = {_config_key(d): d for d in stored["run_dir"].dropna().unique()}
    rows = []
    numeric = [c for c in live.columns if c in stored.columns and pd.api.types.is_numeric_dtype(live[c])
               and c not in ("fold", "seed", "budget")]
    for run_dir in live["run_dir"].dropna().unique():
        twin = stored_dirs.get(_config_key(run_dir))
        if twin is None:
            continue
        a = live[live["run_dir"] == run_dir].set_index("case_id")
        b = stored[stored["run_dir"] == twin].set_index("case_id")
        shared = a.index.intersection(b.index)
        columns = [c for c in numeric if a[c].notna().any() or b[c].notna().any()]
        gaps = (a.loc[shared, columns].astype(float) - b.loc[shared, columns].astype(float)).abs().max()
        largest = float(gaps.max()) if len(gaps) else 0.0
        same = len(shared) == len(a) == len(b) and bool((gaps.fillna(0.0) == 0).all())
        rows.append({"run": "/".join(Path(run_dir).parts[-4:]), "stored_run": twin,
                     "cases": len(shared), "identical": same, "largest_difference": largest,
                     "column": str(gaps.idxmax()) if largest > 0 else ""})
    return pd.DataFrame(rows, columns=["run", "stored_run", "cases", "identical", "largest_difference", "column"])


def read_result_sets(root: str | Path) -> list[ResultSet]:
    """Every result set directly below ``root`` (folders holding a ``manifest.json``), by name."""
    root = Path(root)
    if not root.is_dir():
        return []
    return [read_result_set(p) for p in sorted(root.iterdir()) if (p / MANIFEST).is_file()]


def stored_experiment(root: str | Path, name: str, experiment: str) -> pd.DataFrame | None:
    """The cases of one experiment (e.g. ``"lidc"``, ``"brain_tumour_x2"``) of the result set ``root/name``, or
    None when there is no such set (a chapter then shows its own runs only)."""
    folder = Path(root) / name
    if not (folder / MANIFEST).is_file():
        return None
    cases = read_result_set(folder).cases
    return cases[cases["experiment"] == experiment].reset_index(drop=True)
