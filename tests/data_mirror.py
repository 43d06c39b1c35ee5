"""The real-data mirror as the tests see it: each data folder checked on its own, never half there.

``$VOLBIAS_DATA_MIRROR`` (default ``../shared/data``) holds one folder per data set.  A test names the folders
it reads (:meth:`DataMirror.require`).  A folder that is absent skips the test, or fails it when
``VOLBIAS_REQUIRE_DATA=1`` (as in CI), naming the folder.  A folder that is present is checked once per
session against the package's sha256 list (or, for the split files, their names): a missing or changed
file fails the test, because a partial mirror is an error and never a reason to download.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from volbias.data import DataError
from volbias.data.fetch import REQUIRE_DATA_ENV, data_required, sha256_list, verify

DEFAULT_MIRROR = Path(__file__).resolve().parents[2] / "shared" / "data"
PAPER_SPLITS = ("BR18.json", "IS17.json", "IS18.json")
FOLDERS = ("brats18-sample", "lidc-idri-slices", "paper-splits")


def mirror_root() -> Path:
    """The mirror the tests read: ``$VOLBIAS_DATA_MIRROR``, else ``../shared/data``."""
    return Path(os.environ.get("VOLBIAS_DATA_MIRROR") or DEFAULT_MIRROR)


class DataMirror:
    """Hands out the mirror root once the folders a test needs are there and complete."""

    def __init__(self, root: Path, cache_dir: Path) -> None:
        self.root = root
        self.cache_dir = cache_dir
        self._checked: set[str] = set()

    def require(self, *folders: str) -> Path:
        """The mirror root, after checking ``folders``: skip (absent), fail (absent and required, or partial)."""
        unknown = sorted(set(folders) - set(FOLDERS))
        if unknown:
            raise ValueError(f"unknown data folder(s) {unknown}; known: {FOLDERS}")
        missing = [name for name in folders if not (self.root / name).is_dir()]
        if missing:
            message = f"{', '.join(str(self.root / name) for name in missing)}: not in the data mirror"
            if data_required():
                pytest.fail(f"{REQUIRE_DATA_ENV}=1 and {message}", pytrace=False)
            pytest.skip(message)
        for name in folders:
            self._check_complete(name)
        return self.root

    def _check_complete(self, name: str) -> None:
        if name in self._checked:
            return
        folder = self.root / name
        if name == "paper-splits":
            absent = [file for file in PAPER_SPLITS if not (folder / file).is_file()]
            if absent:
                pytest.fail(f"partial data mirror: {folder} lacks {', '.join(absent)}", pytrace=False)
        else:
            try:
                verify(folder, sha256_list(name), self.cache_dir)
            except DataError as err:
                pytest.fail(f"partial data mirror: {err}", pytrace=False)
        self._checked.add(name)
