"""The project's public identity, read from its one source: ``pyproject.toml``.

The version is ``[project] version``; the addresses are ``[project.urls]`` ``Repository`` (the source)
and ``Documentation`` (the online book); ``[tool.volbias] doi`` is the DOI of the archived release,
empty until the first public release.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

PYPROJECT = "pyproject.toml"
BOOK_EXTRA = "book"
"""The optional dependencies that the chapters need beyond the library (``volbias[book]``)."""

_DOI = re.compile(r"^10\.\d{4,9}/\S+$")


class MetadataError(ValueError):
    """``pyproject.toml`` lacks a value or holds a malformed one; the message names the file and key."""


@dataclass(frozen=True)
class ProjectMetadata:
    """Name, version and public addresses of the project."""

    name: str
    version: str
    description: str
    repository: str
    documentation: str
    doi: str = ""

    @property
    def requirement(self) -> str:
        """The pinned requirement that installs this release with what the chapters need."""
        return f"{self.name}[{BOOK_EXTRA}]=={self.version}"

    @property
    def doi_url(self) -> str:
        """``https://doi.org/<doi>``, or "" before the first public release."""
        return f"https://doi.org/{self.doi}" if self.doi else ""


def _required(table: dict, key: str, where: str, path: Path) -> str:
    value = table.get(key)
    if not isinstance(value, str) or not value.strip():
        raise MetadataError(f"{path}: {where} needs a non-empty string '{key}'")
    return value.strip()


def read_metadata(root: str | Path = ".") -> ProjectMetadata:
    """Read the project's metadata from ``<root>/pyproject.toml``; MetadataError names what is wrong."""
    path = Path(root) / PYPROJECT
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MetadataError(f"{path}: no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise MetadataError(f"{path}: not valid TOML ({exc})") from None
    project = data.get("project", {})
    urls = project.get("urls", {})
    tool = data.get("tool", {}).get("volbias", {})
    version = _required(project, "version", "[project]", path)
    if not re.fullmatch(r"\d+(\.\d+)*([ab]|rc)?\d*(\.post\d+)?", version):
        raise MetadataError(f"{path}: [project] version {version!r} is not a release version like 1.2.3")
    repository = _required(urls, "Repository", "[project.urls]", path)
    documentation = _required(urls, "Documentation", "[project.urls]", path)
    for key, url in (("Repository", repository), ("Documentation", documentation)):
        if not url.startswith("https://"):
            raise MetadataError(f"{path}: [project.urls] {key} must be an https:// address, got {url!r}")
    doi = str(tool.get("doi", "")).strip()
    if doi and not _DOI.match(doi):
        raise MetadataError(f"{path}: [tool.volbias] doi {doi!r} is not a DOI like 10.5281/zenodo.123")
    return ProjectMetadata(
        name=_required(project, "name", "[project]", path), version=version,
        description=_required(project, "description", "[project]", path),
        repository=repository.rstrip("/"), documentation=documentation, doi=doi,
    )
