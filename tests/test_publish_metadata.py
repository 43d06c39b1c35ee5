"""One place for the version and the public addresses (pyproject.toml), and the files that repeat them."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from pybtex.database import parse_file

from volbias.publish.metadata import read_metadata
from volbias.publish.sync import SyncError, drift, install_cell_source, is_install_cell, sync, synced_notebook

SYNCED = ("pyproject.toml", "README.md", "CITATION.cff", ".zenodo.json", "_config.yml", "references.bib")
NEW = {"version": "2.3.4", "repository": "https://github.com/example-lab/dice-book",
       "documentation": "https://example-lab.github.io/dice-book/", "doi": "10.5281/zenodo.999"}


def _check_cff(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "check-jsonschema"), "--builtin-schema",
                           "vendor.citation-file-format", str(path)], capture_output=True, text=True)


@pytest.fixture
def project(repo_root: Path, tmp_path: Path) -> Path:
    """A copy of the project's synced files (chapters and chapter template included)."""
    for rel in SYNCED:
        shutil.copy2(repo_root / rel, tmp_path / rel)
    shutil.copytree(repo_root / "chapters", tmp_path / "chapters",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "_build"))
    (tmp_path / "templates").mkdir()
    shutil.copy2(repo_root / "templates" / "chapter.ipynb", tmp_path / "templates" / "chapter.ipynb")
    return tmp_path


def _set_new_metadata(root: Path) -> None:
    text = (root / "pyproject.toml").read_text()
    text = re.sub(r'(?m)^version = ".*"$', f'version = "{NEW["version"]}"', text, count=1)
    text = re.sub(r'(?m)^Repository = ".*"$', f'Repository = "{NEW["repository"]}"', text, count=1)
    text = re.sub(r'(?m)^Documentation = ".*"$', f'Documentation = "{NEW["documentation"]}"', text, count=1)
    text = re.sub(r'(?m)^doi = ".*"$', f'doi = "{NEW["doi"]}"', text, count=1)
    (root / "pyproject.toml").write_text(text)


def _pip_line(source: str) -> list[str]:
    line = next(line for line in source.splitlines() if "%pip install" in line)
    return shlex.split(line.strip().removeprefix("%pip install"))


def test_committed_files_are_in_step_with_pyproject(repo_root: Path) -> None:
    stale = drift(repo_root)
    assert not stale, ("out of step with pyproject.toml (run `make sync-metadata`): "
                       + ", ".join(str(p.relative_to(repo_root)) for p in stale))


def test_citation_file_is_valid_citation_file_format(repo_root: Path) -> None:
    result = _check_cff(repo_root / "CITATION.cff")
    assert result.returncode == 0, result.stdout + result.stderr


def test_sync_carries_a_new_version_and_address_into_every_file(project: Path, repo_root: Path) -> None:
    _set_new_metadata(project)
    assert read_metadata(project).version == NEW["version"]
    changed = {p.relative_to(project).as_posix() for p in sync(project)}
    assert {"_config.yml", "CITATION.cff", ".zenodo.json", "references.bib", "chapters/cite.md", "README.md",
            "templates/chapter.ipynb", "chapters/data.ipynb"} <= changed

    for path in sorted((project / "chapters").glob("*.ipynb")) + [project / "templates" / "chapter.ipynb"]:
        nb = nbformat.read(str(path), as_version=4)
        before = nbformat.read(str(repo_root / path.relative_to(project)), as_version=4)
        cells = [c for c in nb.cells if "remove-cell" in c.metadata.get("tags", []) and "%pip" in c.source]
        assert len(cells) == 1, path
        args = _pip_line(cells[0].source)
        requirement = Requirement(next(a for a in args if a.startswith("volbias")))
        assert requirement.name == "volbias" and requirement.url is None and "book" in requirement.extras
        assert requirement.specifier == SpecifierSet(f"=={NEW['version']}"), path
        assert "--constraint" in args, f"{path}: the install must hold Colab's torch"
        others = [(c.id, c.cell_type, c.source, c.metadata) for c in nb.cells if c is not cells[0]]
        assert others == [(c.id, c.cell_type, c.source, c.metadata) for c in before.cells if not is_install_cell(c)]

    original_config = yaml.safe_load((repo_root / "_config.yml").read_text())
    config = yaml.safe_load((project / "_config.yml").read_text())
    assert config["repository"]["url"] == NEW["repository"]
    original_config["repository"]["url"] = NEW["repository"]
    assert config == original_config

    cff = yaml.safe_load((project / "CITATION.cff").read_text())
    assert (cff["version"], cff["repository-code"], cff["url"], cff["doi"]) == (
        NEW["version"], NEW["repository"], NEW["documentation"], NEW["doi"])
    assert cff["references"] == yaml.safe_load((repo_root / "CITATION.cff").read_text())["references"]
    result = _check_cff(project / "CITATION.cff")
    assert result.returncode == 0, result.stdout + result.stderr

    zenodo = json.loads((project / ".zenodo.json").read_text())
    assert zenodo["version"] == NEW["version"]
    assert (zenodo["title"], zenodo["description"]) == (cff["title"], cff["abstract"])
    assert zenodo["license"] == cff["license"]
    assert [c["name"] for c in zenodo["creators"]] == [a["name"] for a in cff["authors"]]
    assert zenodo["publication_date"] == str(cff["date-released"])
    assert {r["identifier"] for r in zenodo["related_identifiers"]} == {r["doi"] for r in cff["references"]}

    bib = parse_file(str(project / "references.bib")).entries["volbias2026"].fields
    assert bib["note"].endswith(f"version {NEW['version']}")
    assert bib["howpublished"] == rf"\url{{{NEW['repository']}}}" and bib["doi"] == NEW["doi"]
    cite_page = (project / "chapters" / "cite.md").read_text()
    assert f"version {NEW['version']}" in cite_page and NEW["repository"] in cite_page
    assert "github.com/volbias/volbias" not in cite_page

    readme = (project / "README.md").read_text()
    assert NEW["documentation"] in readme and f"https://doi.org/{NEW['doi']}" in readme
    assert f'volbias[book]=={NEW["version"]}' in readme

    assert drift(project) == []
    assert sync(project) == [], "a second sync changes nothing"


def test_check_names_a_drifted_file_and_sync_repairs_it(project: Path) -> None:
    sync(project)
    chapter = project / "chapters" / "theory.ipynb"
    nb = nbformat.read(str(chapter), as_version=4)
    next(c for c in nb.cells if is_install_cell(c)).source = (
        'import sys\nif "google.colab" in sys.modules:\n'
        '    %pip install -q "volbias @ git+https://github.com/volbias/volbias"')
    nbformat.write(nb, str(chapter))

    command = [sys.executable, "-m", "volbias.publish.sync", "--root", str(project)]
    checked = subprocess.run([*command, "--check"], capture_output=True, text=True)
    assert checked.returncode == 1 and "chapters/theory.ipynb" in checked.stderr
    assert "make sync-metadata" in checked.stderr
    assert subprocess.run(command, capture_output=True, text=True).returncode == 0
    assert "git+" not in chapter.read_text()
    assert subprocess.run([*command, "--check"], capture_output=True, text=True).returncode == 0


def test_a_missing_install_cell_is_added_before_the_first_code_cell_and_two_are_refused(project: Path) -> None:
    meta = read_metadata(project)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# T"),
                nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]})]
    synced = nbformat.reads(synced_notebook(nbformat.writes(nb), meta, "t.ipynb"), as_version=4)
    assert [c.cell_type for c in synced.cells] == ["markdown", "code", "code"]
    assert synced.cells[1].source == install_cell_source(meta) and synced.cells[1].metadata.tags == ["remove-cell"]
    assert synced.cells[2].source == "x = 1"

    nb.cells += [nbformat.v4.new_code_cell(install_cell_source(meta), metadata={"tags": ["remove-cell"]})
                 for _ in range(2)]
    with pytest.raises(SyncError, match="t.ipynb: 2 Colab install cells"):
        synced_notebook(nbformat.writes(nb), meta, "t.ipynb")


def test_bad_pyproject_ends_with_one_line_naming_the_file(project: Path) -> None:
    text = (project / "pyproject.toml").read_text()
    (project / "pyproject.toml").write_text(re.sub(r'(?m)^Repository = ".*"\n', "", text))
    result = subprocess.run([sys.executable, "-m", "volbias.publish.sync", "--root", str(project), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "pyproject.toml" in result.stderr and "Repository" in result.stderr
