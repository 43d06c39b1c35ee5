"""Shared test setup: headless plotting, Hypothesis profiles, the real-data mirror and the executed book.

- Hypothesis: the profile "ci" (derandomised, no deadline, no example database) is loaded when ``CI`` or
  ``VOLBIAS_CI`` is set, so CI tests the same examples on every run; elsewhere the default profile applies.
- Real data: :class:`data_mirror.DataMirror` (``data_mirror`` fixture); ``VOLBIAS_REQUIRE_DATA=1`` turns a
  missing data folder from a skip into a failure.
- Chapters: :class:`book_runner.Book` (``book`` fixture) executes the chapters at the smoke profile, in book
  order, once per session; chapter tests only read its glued values and run directories.
- Footprint: no test may write outside its temporary folders. The session fails when the suite leaves a new
  file in the user's volbias cache or a new (visible) entry in the home directory.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import platformdirs
import pytest
from hypothesis import settings

from book_runner import Book
from data_mirror import FOLDERS, DataMirror, mirror_root

matplotlib.use("Agg")  # tests only; the book keeps the inline backend so figures stay in the pages

settings.register_profile("ci", derandomize=True, deadline=None, database=None, print_blob=True)
if os.environ.get("CI") or os.environ.get("VOLBIAS_CI"):
    settings.load_profile("ci")

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The project's root directory."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def data_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache directory shared by the session's loads of the real data (digests, LIDC arrays)."""
    return tmp_path_factory.mktemp("data-cache")


@pytest.fixture(scope="session")
def data_mirror(data_cache: Path) -> DataMirror:
    """The real-data mirror; ``data_mirror.require(folder, ...)`` checks the folders a test reads."""
    return DataMirror(mirror_root(), data_cache)


@pytest.fixture(scope="session")
def shared_data(data_mirror: DataMirror) -> Path:
    """The mirror root with every data folder present and complete (prefer ``data_mirror.require``)."""
    return data_mirror.require(*FOLDERS)


@pytest.fixture(scope="session")
def book(repo_root: Path, data_mirror: DataMirror, tmp_path_factory: pytest.TempPathFactory) -> Book:
    """The book's chapters executed at the smoke profile, in book order, on demand and once per session."""
    return Book(repo_root, tmp_path_factory.mktemp("book"), data_mirror)


def _footprint() -> set[str]:
    """Files of the user's volbias cache and the visible entries of the home directory."""
    cache = Path(platformdirs.user_cache_dir("volbias"))
    files = {str(p) for p in cache.rglob("*")} if cache.is_dir() else set()
    home = Path.home()
    return files | {str(p) for p in home.iterdir() if not p.name.startswith(".")} if home.is_dir() else files


@pytest.fixture(scope="session", autouse=True)
def nothing_written_outside_temporary_folders():
    """Fail the session when the tests left files in the user cache or the home directory (tools' hidden
    folders, such as a kernel's ``~/.ipython``, are theirs)."""
    before = _footprint()
    yield
    new = sorted(_footprint() - before)
    if new:
        pytest.fail(f"the tests wrote outside their temporary folders: {new[:5]}", pytrace=False)
