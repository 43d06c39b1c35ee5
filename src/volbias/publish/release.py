"""Pack the built book into its citable supplementary-material archive.

Usage (what ``make release`` runs after building the book into a clean ``_build/html``)::

    python -m volbias.publish.release --profile smoke

writes ``dist/volbias-<version>-book-<profile>.zip``, one folder of the same name holding:

- ``html/``: the built book (open ``html/index.html``; it needs no network);
- ``notebooks/``: the executed chapters from ``_staging/``, without what changes on every execution and
  says nothing about the results: papermill's time stamps, the random id of its injected parameters cell,
  and memory addresses in the text form of displayed objects (``<... at 0x7f...>``); the book's download
  copies (``html/_sources/``) are replaced by these;
- ``tables/cases.csv``: one row per evaluated case of every finished run of the build below the runs
  directory (``$VOLBIAS_RUNS_DIR``), ``run_dir`` relative to it;
- ``tables/claims.csv``: the Results chapter's verdict on the paper's claims, as the chapter glued it;
- ``results/<name>/``: the stored result sets of ``data/results/`` (each with its ``manifest.json``);
- ``CITATION.cff``, ``.zenodo.json``, a ``README.md`` for the archive and ``SHA256SUMS``.

The zip is reproducible: entries sorted, one fixed time stamp (``$SOURCE_DATE_EPOCH``, else the
commit's time) and fixed permissions, so packing the same build twice gives the same bytes. Two clean
builds from the same commit and runs differ only in what :data:`NOT_REPRODUCIBLE` lists (also written
into the archive's README).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from io import StringIO
from pathlib import Path

import nbformat
import pandas as pd
import yaml

from ..analysis.book_runs import default_runs_dir
from ..training.run_files import load_runs
from ..bookbuild import ChapterError, check_executed, read_glued, toc_chapters
from .citation import CitationError
from .metadata import MetadataError, ProjectMetadata, read_metadata
from .sync import SyncError, drift

RESULTS_CHAPTER = Path("chapters/results.ipynb")
CLAIMS_GLUE = "results_claims_table"
"""Name under which the Results chapter glues its verdict table (JSON records)."""
TIMESTAMP_KEYS = ("start_time", "end_time", "duration")
"""papermill's per-notebook and per-cell execution times, removed from the archived notebooks."""
INJECTED_TAG = "injected-parameters"
OBJECT_ADDRESS = re.compile(r" at 0x[0-9a-f]+>")
NOT_REPRODUCIBLE: tuple[tuple[str, str], ...] = (
    ("the notebook, the page and the `html/_sources/` copy of a chapter that reports measured time "
     "(at the smoke profile: Data and Which volume; a chapter that reports a training run's time too when "
     "the run is trained again)",
     "the wall-clock time of the chapter's computation or training, which the chapter prints or glues"),
    ("the Profiles-and-hardware chapter (notebook, page and `html/_sources/` copy) when rebuilt elsewhere",
     "it records the machine, the software versions and the commit of the build"),
)
"""What changes between two clean builds from the same commit and runs (measured on the smoke profile:
every other file had the same checksum), and why."""
FIXED_EPOCH = 315532800  # 1980-01-01, the earliest time a zip entry can hold


class ReleaseError(RuntimeError):
    """The build cannot be packed (missing, at another profile, failed chapters, stale metadata)."""


def archive_name(meta: ProjectMetadata, profile: str) -> str:
    """``<name>-<version>-book-<profile>``: the archive's file name (without ``.zip``) and top folder."""
    return f"{meta.name}-{meta.version}-book-{profile}"


def _git(root: Path, *args: str) -> str:
    try:
        result = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False,
                                timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


def source_commit(root: Path) -> str:
    """The commit the book was built from (``unknown`` outside git; ``+ uncommitted changes`` if dirty)."""
    commit = _git(root, "rev-parse", "HEAD") or "unknown"
    if commit != "unknown" and _git(root, "status", "--porcelain", "--untracked-files=no"):
        commit += " + uncommitted changes"
    return commit


def archive_epoch(root: Path) -> int:
    """Time stamp of every zip entry: ``$SOURCE_DATE_EPOCH``, else the commit's time, else 1980-01-01."""
    value = os.environ.get("SOURCE_DATE_EPOCH") or _git(root, "log", "-1", "--format=%ct")
    return max(int(value), FIXED_EPOCH) if value.isdigit() else FIXED_EPOCH


def executed_chapters(root: Path, profile: str) -> list[Path]:
    """The executed chapters of the build in ``_staging/`` (toc order); ReleaseError unless every one
    exists, was executed at ``profile`` and holds no error output, and the HTML was built."""
    staging = root / "_staging"
    if not (root / "_build" / "html" / "index.html").is_file():
        raise ReleaseError(f"{root / '_build/html/index.html'}: no built book (run `make book PROFILE={profile}`)")
    try:
        chapters = [staging / rel for rel in toc_chapters(root) if rel.suffix == ".ipynb"]
    except ChapterError as exc:
        raise ReleaseError(str(exc)) from None
    for path in chapters:
        if not path.is_file():
            raise ReleaseError(f"{path}: chapter not executed (run `make book PROFILE={profile}`)")
        ran_at = nbformat.read(str(path), as_version=4).metadata.get("papermill", {}).get("parameters", {})
        if ran_at.get("profile") != profile:
            raise ReleaseError(f"{path}: executed at profile {ran_at.get('profile')!r}, not {profile!r} "
                               f"(run `make book PROFILE={profile}`)")
    problems = check_executed(chapters)
    if problems:
        raise ReleaseError(f"{problems[0]} (the archive holds only a book without failed cells)")
    return chapters


def archived_notebook(path: Path) -> str:
    """The executed notebook without what changes on every execution: papermill's times (start, end,
    duration), the random id of its injected parameters cell and object addresses in text outputs."""
    nb = nbformat.read(str(path), as_version=4)
    for metadata in [nb.metadata, *(cell.metadata for cell in nb.cells)]:
        for key in TIMESTAMP_KEYS:
            metadata.get("papermill", {}).pop(key, None)
        metadata.pop("execution", None)
    for cell in nb.cells:
        if INJECTED_TAG in cell.metadata.get("tags", []):
            cell.id = INJECTED_TAG
        for output in cell.get("outputs", []):
            for mime, value in output.get("data", {}).items():
                if mime.endswith("text/plain") and isinstance(value, str):
                    output["data"][mime] = OBJECT_ADDRESS.sub(">", value)
    return nbformat.writes(nb) + "\n"


def cases_table(runs_dir: Path) -> pd.DataFrame:
    """Cases of every finished run below ``runs_dir``; ReleaseError when there is none."""
    cases = load_runs(runs_dir)
    if cases.empty:
        raise ReleaseError(f"{runs_dir}: no finished runs (is $VOLBIAS_RUNS_DIR the build's runs directory?)")
    cases["run_dir"] = [Path(d).resolve().relative_to(runs_dir.resolve()).as_posix() for d in cases.run_dir]
    return cases


def claims_table(executed_results: Path) -> pd.DataFrame:
    """The verdict table that the executed Results chapter glued as JSON records."""
    glued = read_glued(executed_results)
    if CLAIMS_GLUE not in glued:
        raise ReleaseError(f"{executed_results}: the Results chapter glues no '{CLAIMS_GLUE}' "
                           "(its verdict table as JSON records)")
    try:
        records = json.loads(str(glued[CLAIMS_GLUE]))
    except json.JSONDecodeError as exc:
        raise ReleaseError(f"{executed_results}: '{CLAIMS_GLUE}' is not JSON ({exc})") from None
    return pd.DataFrame.from_records(records)


def _csv(frame: pd.DataFrame) -> str:
    buffer = StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue()


def archive_readme(meta: ProjectMetadata, profile: str, commit: str, cases: pd.DataFrame,
                   claims: pd.DataFrame, title: str) -> str:
    """The archive's README: what it holds, how to open and verify it, how to cite it."""
    doi = f"[{meta.doi}]({meta.doi_url})" if meta.doi else "to be assigned at the first public release"
    changing = "\n".join(f"- {files}: {why}." for files, why in NOT_REPRODUCIBLE)
    n_runs = cases.run_dir.nunique()
    return f"""# {title}

Supplementary material: the executed book and its results, release {meta.version}, computed at the
`{profile}` profile (the scale of every computation; the book's "Profiles and hardware" chapter lists
what each profile runs).

- Version: {meta.version}; source commit {commit}
- Source: {meta.repository} (tag `v{meta.version}`)
- Online book: {meta.documentation}
- DOI of this archive: {doi}

## Contents

| path | what |
|---|---|
| `html/index.html` | the book; open it in a browser (no network needed) |
| `notebooks/chapters/*.ipynb` | the executed chapters, without papermill's time stamps and random cell id, and without memory addresses in object reprs (also the copies in `html/_sources/`) |
| `tables/cases.csv` | one row per evaluated case of every run of this build ({n_runs} runs, {len(cases)} rows) |
| `tables/claims.csv` | the Results chapter's verdict on the paper's claims ({len(claims)} rows) |
| `results/<name>/` | the stored result sets the book read (e.g. the cpu reference set), each with its `manifest.json` |
| `CITATION.cff`, `.zenodo.json` | citation metadata (the same in both) |
| `SHA256SUMS` | checksums of every other file: run `sha256sum -c SHA256SUMS` in this folder |

In `tables/cases.csv`, volumes are in `volume_unit` (ml for MR tasks, pixels for the phantoms and LIDC),
`run_dir` names the run below the build's runs directory, and the `task_options.*`, `loss_options.*`
columns give the run's configuration.

## Rebuilding

Check out the tag `v{meta.version}` of {meta.repository} and run `make release PROFILE={profile}`
(see the repository's README). A clean rebuild from the same commit and runs gives the same checksums
except for files that record when or where the book was computed:

{changing}

## Citing

Cite the original papers (Bertels et al., BrainLes 2019, doi:10.1007/978-3-030-46640-4_9; Medical Image
Analysis 67, 2021, doi:10.1016/j.media.2020.101833) and this release as given in `CITATION.cff`.
Code and text: MIT license. The data sets keep their own terms (BraTS: research use with citation;
LIDC-IDRI: CC BY 3.0).
"""


def sha256sums(folder: Path) -> str:
    """``sha256sum``-format lines for every file below ``folder`` (sorted, paths relative to it)."""
    lines = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{digest}  {path.relative_to(folder).as_posix()}")
    return "\n".join(lines) + "\n"


def write_zip(folder: Path, target: Path, epoch: int) -> None:
    """Zip ``folder`` (as its own top folder) into ``target`` reproducibly and atomically."""
    stamp = time.gmtime(epoch)[:6]
    partial = target.with_name(f".{target.name}.partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(f"{folder.name}/{path.relative_to(folder).as_posix()}", date_time=stamp)
            info.external_attr = 0o100644 << 16
            info.create_system = 3  # unix, so that the permissions above are honoured
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes(), compresslevel=9)
    os.replace(partial, target)


def build_release(root: str | Path, profile: str, runs_dir: str | Path, out_dir: str | Path) -> Path:
    """Pack the book built at ``profile`` under ``root`` into ``out_dir/<archive_name>.zip``."""
    root, runs_dir, out_dir = Path(root).resolve(), Path(runs_dir), Path(out_dir)
    meta = read_metadata(root)
    stale = drift(root)
    if stale:
        raise ReleaseError(f"{stale[0]}: out of step with pyproject.toml (run `make sync-metadata`)")
    chapters = executed_chapters(root, profile)
    executed_results = root / "_staging" / RESULTS_CHAPTER
    if executed_results not in chapters:
        raise ReleaseError(f"{root / '_toc.yml'}: the book has no {RESULTS_CHAPTER} (its verdict table is archived)")
    cases, claims = cases_table(runs_dir), claims_table(executed_results)
    title = str(yaml.safe_load((root / "CITATION.cff").read_text(encoding="utf-8"))["title"])

    name = archive_name(meta, profile)
    folder = root / "_build" / "release" / name
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(root / "_build" / "html", folder / "html")
    for path in chapters:
        rel = path.relative_to(root / "_staging")
        text = archived_notebook(path)
        notebook = folder / "notebooks" / rel
        notebook.parent.mkdir(parents=True, exist_ok=True)
        notebook.write_text(text, encoding="utf-8")
        download_copy = folder / "html" / "_sources" / rel
        if download_copy.is_file():  # what the page's download button serves: the same notebook
            download_copy.write_text(text, encoding="utf-8")
    (folder / "tables").mkdir()
    (folder / "tables" / "cases.csv").write_text(_csv(cases), encoding="utf-8")
    (folder / "tables" / "claims.csv").write_text(_csv(claims), encoding="utf-8")
    for manifest in sorted((root / "data" / "results").glob("*/manifest.json")):  # the stored result sets
        shutil.copytree(manifest.parent, folder / "results" / manifest.parent.name)
    for file in ("CITATION.cff", ".zenodo.json"):
        shutil.copyfile(root / file, folder / file)
    (folder / "README.md").write_text(archive_readme(meta, profile, source_commit(root), cases, claims, title),
                                      encoding="utf-8")
    (folder / "SHA256SUMS").write_text(sha256sums(folder), encoding="utf-8")

    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}.zip"
    write_zip(folder, target, archive_epoch(root))
    return target


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m volbias.publish.release", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=os.environ.get("PROFILE", "cpu"), help="profile the book was built at")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the project's root (default: here)")
    parser.add_argument("--runs-dir", type=Path, default=None,
                        help="the build's runs directory (default: $VOLBIAS_RUNS_DIR, else runs/)")
    parser.add_argument("--out", type=Path, default=None, help="where the archive goes (default: <root>/dist)")
    args = parser.parse_args(argv)
    try:
        target = build_release(args.root, args.profile, args.runs_dir or default_runs_dir(),
                               args.out or args.root / "dist")
    except (ReleaseError, MetadataError, CitationError, SyncError) as exc:
        print(f"release: error: {exc}", file=sys.stderr)
        return 2
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    print(f"wrote {target} ({target.stat().st_size / 1e6:.1f} MB, sha256 {digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
