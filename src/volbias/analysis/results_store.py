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

from volbias.training.run_files import find_runs, load_runs

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
    """One result set: manifest and the cases of all its finished runs (``source`` column = its name)."""
    result_dir = Path(result_dir)
    manifest = read_manifest(result_dir)
    if not find_runs(result_dir):
        raise ValueError(f"{result_dir}: no finished runs (folders with cases.csv and DONE)")
    cases = load_runs(result_dir)
    cases["source"] = result_dir.name
    return ResultSet(result_dir.name, result_dir, manifest, cases)


def read_result_sets(root: str | Path) -> list[ResultSet]:
    """Every result set directly below ``root`` (folders holding a ``manifest.json``), by name."""
    root = Path(root)
    if not root.is_dir():
        return []
    return [read_result_set(p) for p in sorted(root.iterdir()) if (p / MANIFEST).is_file()]
