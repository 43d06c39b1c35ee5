"""Where the data come from: public sources with sha256 lists, a local mirror first, pooch downloads.

Order of look-up for a data set:
1. ``root=`` given by the caller: the user's own extraction of the official release, used as is
   (format checks only; its files are not compared with the sha256 lists).
2. The local mirror ``$VOLBIAS_DATA_MIRROR/<folder>`` (CI and the book's build machine point it at a
   read-only copy); every listed file is verified against the package's sha256 list.
3. A pooch download into ``<cache>/downloads/<folder>`` from the commit-pinned public URLs, verified
   by pooch on download and again before use.  With ``VOLBIAS_REQUIRE_DATA=1`` (CI) there is no
   download: a data set missing from the mirror is an error that names the folder.
A mirror folder that exists but lacks a listed file, or holds a changed one, is an error (never a
reason to download).
Verification hashes each file once and remembers the digest by (size, mtime) in the cache
(see cache.DigestBook), so later loads only stat the files.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path


from .cache import DigestBook, cache_root
from .errors import DataError

BRATS_SAMPLE_URL = (
    "https://raw.githubusercontent.com/JeroenBertels/deepvoxnet2/"
    "038837622ee85bbeb92a74fcaf0942c529001a4b/demos/brats_2018/"
)
LIDC_URL = (
    "https://raw.githubusercontent.com/periclesanfe/Pulmoseg/"
    "045c0c6b793191819d964d0f7862124731559d42/LIDC-IDRI-slices/"
)
ISLES_RECORD = "https://zenodo.org/records/17736412"
REQUIRE_DATA_ENV = "VOLBIAS_REQUIRE_DATA"


@dataclass(frozen=True)
class Source:
    """A public data set: mirror folder name, pinned download URL and sha256 list (if files are listed)."""

    folder: str
    homepage: str
    base_url: str | None = None
    sha256_list: str | None = None  # file name in volbias/registry
    how_to_get: str = ""


SOURCES: dict[str, Source] = {
    "brats18-sample": Source(
        "brats18-sample", "https://github.com/JeroenBertels/deepvoxnet2", BRATS_SAMPLE_URL,
        "brats18-sample.sha256.txt"),
    "lidc-idri-slices": Source(
        "lidc-idri-slices", "https://github.com/periclesanfe/Pulmoseg", LIDC_URL, "lidc-idri-slices.sha256.txt"),
    "brats2018": Source(
        "MICCAI_BraTS_2018_Data_Training", "https://www.med.upenn.edu/sbia/brats2018/data.html",
        how_to_get="request the BraTS 2018 training data (registration), extract it and pass root= "
        "(the folder holding HGG/ and LGG/)"),
    "isles2017": Source(
        "ISLES2017_Training", ISLES_RECORD,
        how_to_get=f"download the ISLES 2017 training archive from {ISLES_RECORD}, extract it and pass root= "
        "(the folder holding training_<n>/)"),
    "isles2018": Source(
        "ISLES2018_Training", ISLES_RECORD,
        how_to_get=f"download the ISLES 2018 training archive from {ISLES_RECORD}, extract it and pass root= "
        "(the folder holding case_<n>/)"),
}


@lru_cache(maxsize=None)
def sha256_list(name: str) -> dict[str, str]:
    """Relative path -> sha256 of every file of a public sample (package data)."""
    src = SOURCES[name]
    if src.sha256_list is None:
        return {}
    text = (resources.files("volbias") / "registry" / src.sha256_list).read_text()
    out = {}
    for line in text.splitlines():
        if line.strip():
            digest, rel = line.split(maxsplit=1)
            out[rel.strip()] = digest
    return out


def mirror_dir() -> Path | None:
    """The local mirror given by $VOLBIAS_DATA_MIRROR, if set."""
    value = os.environ.get("VOLBIAS_DATA_MIRROR")
    return Path(value) if value else None


def data_required() -> bool:
    """True when ``$VOLBIAS_REQUIRE_DATA`` is 1: data must come from ``root=`` or the mirror, never a download."""
    return os.environ.get(REQUIRE_DATA_ENV, "").strip().lower() in ("1", "true", "yes")


def verify(folder: Path, expected: dict[str, str], cache_dir: str | os.PathLike[str] | None = None) -> None:
    """Check that every listed file exists under `folder` with its sha256; DataError names the first bad one."""
    book = DigestBook(folder, cache_dir)
    try:
        for rel, want in expected.items():
            path = folder / rel
            try:
                got = book.digest(rel)
            except FileNotFoundError:
                raise DataError(f"{path}: missing file of the verified data set") from None
            if got != want:
                book.forget(rel)
                raise DataError(f"{path}: sha256 mismatch (expected {want[:12]}..., found {got[:12]}...); "
                                "the file is corrupt or was modified")
    finally:
        book.save()


def download(name: str, cache_dir: str | os.PathLike[str] | None = None,
             downloader: Callable | None = None) -> Path:
    """Download (with pooch) the files of a public sample that are not yet in the cache; returns the folder."""
    import pooch  # imported here: only downloads need it (and it pulls in tqdm.auto)

    src = SOURCES[name]
    expected = sha256_list(name)
    folder = cache_root(cache_dir) / "downloads" / src.folder
    fetcher = pooch.create(path=folder, base_url=src.base_url, registry={k: f"sha256:{v}" for k, v in expected.items()},
                           retry_if_failed=2)
    book = DigestBook(folder, cache_dir)
    try:
        for rel, want in expected.items():
            if (folder / rel).is_file() and book.digest(rel) == want:
                continue
            try:
                fetcher.fetch(rel, downloader=downloader)
            except Exception as exc:  # network, HTTP or hash errors all become one clear line
                reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise DataError(f"{src.base_url}{rel}: download failed ({reason}); set VOLBIAS_DATA_MIRROR "
                                "to a local copy or pass root=") from None
    finally:
        book.save()
    return folder


def locate(name: str, root: str | os.PathLike[str] | None = None,
           cache_dir: str | os.PathLike[str] | None = None, downloader: Callable | None = None) -> tuple[Path, bool]:
    """Folder of data set `name` and whether its files were verified against the sha256 list."""
    src = SOURCES[name]
    if root is not None:
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: data directory does not exist")
        return root, False
    mirror = mirror_dir()
    if mirror is not None and (mirror / src.folder).is_dir():
        folder = mirror / src.folder
        verify(folder, sha256_list(name), cache_dir)
        return folder, bool(sha256_list(name))
    if src.base_url is None:
        where = f"{mirror / src.folder}" if mirror is not None else "$VOLBIAS_DATA_MIRROR/" + src.folder
        raise DataError(f"{where}: not found; {src.how_to_get}")
    if data_required():
        where = f"{mirror / src.folder}" if mirror is not None else "$VOLBIAS_DATA_MIRROR/" + src.folder
        raise DataError(f"{where}: not found, and {REQUIRE_DATA_ENV}=1 forbids downloading it; point "
                        "VOLBIAS_DATA_MIRROR at a complete mirror or pass root=")
    folder = download(name, cache_dir, downloader)
    verify(folder, sha256_list(name), cache_dir)
    return folder, True
