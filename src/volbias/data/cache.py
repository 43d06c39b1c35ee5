"""On-disk cache: file digests (sha256 remembered by size and mtime) and preprocessed arrays (npz).

Directory: the `cache_dir` option, else $VOLBIAS_CACHE_DIR, else the platform's user cache folder
(``platformdirs.user_cache_dir("volbias")``, the folder ``pooch.os_cache("volbias")`` names).
Entries are keyed by a sha256 of the source files' digests and the preprocessing settings, so changing
a file or a setting gives a new key; writes are atomic (temporary file + os.replace).  The cache holds only
derived data: an entry that cannot be read (truncated, corrupt, not what it should be) counts as missing and
is computed and written again.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import platformdirs

CACHE_VERSION = 2  # bump when the layout of cached arrays changes


def cache_root(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache directory in use (created on demand)."""
    if cache_dir is None:
        cache_dir = os.environ.get("VOLBIAS_CACHE_DIR") or platformdirs.user_cache_dir("volbias")
    root = Path(cache_dir)
    root.mkdir(parents=True, exist_ok=True)
    return root


def settings_key(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts (settings, digests, names)."""
    blob = json.dumps([CACHE_VERSION, *parts], sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def sha256_file(path: Path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write bytes to `path` through a temporary file in the same folder and os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class DigestBook:
    """sha256 of files, remembered per folder in the cache and keyed by (size, mtime_ns).

    Hashing every file on every load is too slow for data sets of thousands of files (LIDC: 13 150
    PNGs), so a digest is computed once and reused while the file's size and modification time are
    unchanged; any rewrite of a file changes its mtime and forces a fresh hash.
    """

    def __init__(self, folder: Path, cache_dir: str | os.PathLike[str] | None = None) -> None:
        self.folder = Path(folder).resolve()
        self.path = cache_root(cache_dir) / "digests" / f"{settings_key(str(self.folder))}.json"
        try:
            book = json.loads(self.path.read_text())
        except (OSError, ValueError):
            book = {}
        self._book: dict[str, list] = book if isinstance(book, dict) else {}  # unreadable: start afresh
        self._dirty = False

    def digest(self, rel: str) -> str:
        """sha256 of folder/rel (from the book when size and mtime match)."""
        st = (self.folder / rel).stat()
        entry = self._book.get(rel)
        if isinstance(entry, list) and len(entry) == 3 and entry[:2] == [st.st_size, st.st_mtime_ns]:
            return entry[2]
        value = sha256_file(self.folder / rel)
        self._book[rel] = [st.st_size, st.st_mtime_ns, value]
        self._dirty = True
        return value

    def digests(self, rels: Iterable[str]) -> dict[str, str]:
        """sha256 of several files; the book is saved once afterwards."""
        out = {rel: self.digest(rel) for rel in rels}
        self.save()
        return out

    def forget(self, rel: str) -> None:
        """Drop a remembered digest (used after a failed verification)."""
        if self._book.pop(rel, None) is not None:
            self._dirty = True

    def save(self) -> None:
        """Write the book if it changed."""
        if self._dirty:
            atomic_write_bytes(self.path, json.dumps(self._book).encode())
            self._dirty = False


def load_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """Arrays of a cached npz, or None when absent or unreadable (truncated, corrupt, not an npz)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Atomically write arrays to an uncompressed npz (fast to read back)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
