"""Shared test setup: headless plotting and the location of the real data mirror."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")  # tests only; the book keeps the inline backend so figures stay in the pages

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The project's root directory."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The local mirror of the public data (``VOLBIAS_DATA_MIRROR`` or ``../shared/data``)."""
    mirror = Path(os.environ.get("VOLBIAS_DATA_MIRROR", SHARED_DATA))
    if not mirror.is_dir():
        pytest.skip(f"no local data mirror at {mirror}")
    return mirror
