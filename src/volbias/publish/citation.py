"""``CITATION.cff`` kept in step with ``pyproject.toml``, and ``.zenodo.json`` derived from it.

Written here rather than with ``cffconvert`` because that tool pins ``jsonschema<4``, which the book's
toolchain (jupyter-book) cannot share; the mapping below follows cffconvert's CFF-to-Zenodo fields.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from .metadata import ProjectMetadata


class CitationError(ValueError):
    """``CITATION.cff`` is unreadable or lacks a field; the message names the file and the field."""


def _load(text: str, name: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CitationError(f"{name}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise CitationError(f"{name}: expected a YAML mapping")
    for key in ("title", "abstract", "authors", "license", "date-released", "repository-code"):
        if key not in data:
            raise CitationError(f"{name}: missing field '{key}'")
    return data


def _dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=10_000)


def synced_citation(text: str, meta: ProjectMetadata, name: str = "CITATION.cff") -> str:
    """``CITATION.cff`` with the version, repository, book address and DOI of ``meta``.

    ``url`` and ``doi`` follow ``repository-code``; ``doi`` is present only once the DOI is known.
    """
    data = _load(text, name)
    synced = {"version": meta.version, "repository-code": meta.repository, "url": meta.documentation}
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("url", "doi"):
            continue
        out[key] = synced.get(key, value)
        if key == "repository-code":
            out["url"] = meta.documentation
            if meta.doi:
                out["doi"] = meta.doi
    return _dump(out)


def _creator(author: dict[str, Any]) -> dict[str, str]:
    if "name" in author:
        creator = {"name": str(author["name"])}
    else:
        creator = {"name": f"{author['family-names']}, {author.get('given-names', '')}".rstrip(", ")}
    if "affiliation" in author:
        creator["affiliation"] = str(author["affiliation"])
    if "orcid" in author:
        creator["orcid"] = str(author["orcid"]).removeprefix("https://orcid.org/")
    return creator


def zenodo_json(citation_text: str, name: str = "CITATION.cff") -> str:
    """The ``.zenodo.json`` that carries the same metadata as ``CITATION.cff`` (Zenodo deposit fields)."""
    data = _load(citation_text, name)
    record: dict[str, Any] = {
        "title": data["title"],
        "description": data["abstract"],
        "upload_type": "software",
        "access_right": "open",
        "creators": [_creator(a) for a in data["authors"]],
        "version": str(data.get("version", "")),
        "publication_date": str(data["date-released"]),
        "license": str(data["license"]),
        "keywords": [str(k) for k in data.get("keywords", [])],
        "related_identifiers": [
            {"identifier": str(ref["doi"]), "relation": "references", "scheme": "doi"}
            for ref in data.get("references", []) if "doi" in ref
        ],
    }
    return json.dumps(record, indent=2, ensure_ascii=False) + "\n"
