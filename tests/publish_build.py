"""Build the package the way a release does, from a copy of its sources (the checkout is never written)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

PACKAGE_SOURCES = ("pyproject.toml", "README.md", "LICENSE", "src")


def build_dist(repo_root: Path, work: Path) -> Path:
    """``python -m build`` (the sdist, then the wheel built from it) of a copy of the package's sources;
    returns the folder holding both."""
    source = work / "source"
    source.mkdir(parents=True)
    for name in PACKAGE_SOURCES:
        if (repo_root / name).is_dir():
            shutil.copytree(repo_root / name, source / name,
                            ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "*.pyc"))
        else:
            shutil.copy2(repo_root / name, source / name)
    out = work / "dist"
    result = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(source)],
                            capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise AssertionError(f"python -m build failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return out
