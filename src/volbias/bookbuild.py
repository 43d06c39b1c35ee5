"""Build the book: check chapter hygiene, execute chapters with papermill, build the HTML.

Usage (what ``make book`` runs)::

    python -m volbias.bookbuild build --profile cpu
    python -m volbias.bookbuild check chapters/      # committed chapters: no outputs, a parameters cell

The chapters are executed into a staging copy of the book (``_staging/``) and the HTML is built from it
with notebook execution switched off, so a failing cell is reported here, by chapter and cell, instead
of being rendered silently into a page. A value glued as a numpy scalar (its text ``np.float64(0.5)``)
fails the build at every profile, before Sphinx would trip on it (or paste it as it is) at another one.

Pages may paste values glued on another page (the landing page pastes the Results chapter's headline
figure and verdict counts: ``{glue:text}`results.ipynb::key:d```, ``{glue}`` with ``:doc:``): myst-nb
resolves these after every page has been read, so the HTML build stays one pass in table-of-contents
order. A figure pasted so is not copied into the book by itself; the page that glues it must show it
too, and the build fails when a page refers to an image that is not in the built book.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import yaml

BOOK_FILES = ("_config.yml", "_toc.yml", "references.bib")
BOOK_DIRS = ("_static",)
GLUE_MIME_PREFIX = "application/papermill.record/"
NUMPY_REPR = re.compile(r"\bnp\.(?:[a-z]+\d*_?\(|True_|False_)|^\s*array\(")
"""Text of a glued numpy value (``np.float64(0.5)``, ``np.True_``, ``array([...])``): glue a Python value."""


class ChapterError(RuntimeError):
    """A chapter failed to execute; the message names the chapter and the cell."""


@dataclass(frozen=True)
class HygieneProblem:
    """One problem found in a chapter notebook."""

    path: Path
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def _read_notebook(path: Path) -> nbformat.NotebookNode:
    try:
        return nbformat.read(str(path), as_version=4)
    except Exception as exc:  # nbformat raises several unrelated types for unreadable files
        raise ChapterError(f"{path}: not a readable notebook ({exc})") from None


def _has_parameters_cell(nb: nbformat.NotebookNode) -> bool:
    return any(
        cell.cell_type == "code" and "parameters" in cell.get("metadata", {}).get("tags", [])
        for cell in nb.cells
    )


def check_committed(paths: list[Path]) -> list[HygieneProblem]:
    """Problems of committed chapters: stored outputs or execution counts, no ``parameters`` cell."""
    problems = []
    for path in paths:
        nb = _read_notebook(path)
        if not _has_parameters_cell(nb):
            problems.append(HygieneProblem(path, "no code cell tagged 'parameters'"))
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if cell.get("outputs"):
                problems.append(HygieneProblem(path, f"cell {index} holds outputs (strip them before committing)"))
            elif cell.get("execution_count") is not None:
                problems.append(HygieneProblem(path, f"cell {index} holds an execution count"))
    return problems


def check_executed(paths: list[Path]) -> list[HygieneProblem]:
    """Problems of executed chapters: any error output, any value glued as a numpy repr.

    Cells are numbered as in the committed chapter. A glued numpy scalar pastes as ``np.float64(0.5)``
    and breaks a formatted ``{glue:text}`` only at the profile where it occurs; it is flagged wherever it
    is glued, so that every profile catches it.
    """
    problems = []
    for path in paths:
        nb = _read_notebook(path)
        for index, cell in enumerate(nb.cells):
            for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
                source_index = _source_cell_index(nb, index)
                if output.get("output_type") == "error":
                    problems.append(
                        HygieneProblem(path, f"cell {source_index} has an error output: {output.get('ename')}: "
                                             f"{output.get('evalue')}")
                    )
                name = output.get("metadata", {}).get("scrapbook", {}).get("name")
                text = output.get("data", {}).get(GLUE_MIME_PREFIX + "text/plain", "")
                if name is not None and NUMPY_REPR.search(str(text)):
                    problems.append(HygieneProblem(path, f"cell {source_index} glues {name!r} as a numpy value "
                                                         f"({str(text)[:40]}): glue float(...), int(...) or "
                                                         f".tolist() instead"))
    return problems


def missing_images(html: Path) -> list[str]:
    """Images the built pages refer to that are not in the book: ``"page: src"`` per missing file."""
    missing = []
    for page in sorted(html.rglob("*.html")):
        for src in re.findall(r'<img[^>]*?\ssrc="([^"]+)"', page.read_text(errors="replace")):
            if re.match(r"[a-z][a-z0-9+.-]*:", src) or (page.parent / src).resolve().exists():
                continue
            missing.append(f"{page.relative_to(html)}: {src}")
    return missing


def toc_chapters(book_root: Path) -> list[Path]:
    """All files named in ``_toc.yml``, in reading order, as paths relative to ``book_root``."""
    toc = yaml.safe_load((book_root / "_toc.yml").read_text())
    entries: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key in ("root", "file"):
                if key in node:
                    entries.append(str(node[key]))
            for key in ("parts", "chapters", "sections"):
                for child in node.get(key, []) or []:
                    walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(toc)
    paths = []
    for entry in entries:
        candidates = [book_root / entry] if Path(entry).suffix else [
            book_root / f"{entry}{suffix}" for suffix in (".ipynb", ".md")
        ]
        found = [c for c in candidates if c.exists()]
        if not found:
            raise ChapterError(f"_toc.yml names '{entry}', but no such file exists under {book_root}")
        paths.append(found[0].relative_to(book_root))
    return paths


def _source_cell_index(nb: nbformat.NotebookNode, executed_index: int) -> int:
    """Map a cell index of an executed notebook back to the committed notebook.

    papermill injects a parameters cell, and on failure error-marker cells; neither is in the chapter.
    """
    added = [i for i, c in enumerate(nb.cells)
             if {"injected-parameters", "papermill-error-cell-tag"} & set(c.get("metadata", {}).get("tags", []))]
    return executed_index - sum(1 for i in added if i < executed_index)


def execute_chapter(path: Path, out_path: Path, parameters: dict | None = None,
                    cwd: Path | None = None, timeout: int | None = None) -> Path:
    """Execute one chapter with papermill into ``out_path``; raise ChapterError naming the failing cell."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    path, out_path = Path(path), Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(
            str(path), str(out_path), parameters=parameters or {}, kernel_name="python3",
            cwd=str(cwd or path.parent), progress_bar=False, execution_timeout=timeout,
        )
    except PapermillExecutionError as exc:
        source = _read_notebook(path)
        tagged = [i for i, c in enumerate(source.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
        # papermill injects its parameters cell right after the tagged one; later cells shift by one
        shift = 1 if parameters and tagged and exc.cell_index > tagged[0] else 0
        cell = exc.cell_index - shift
        first_line = next((line for line in exc.source.splitlines() if line.strip()), "")
        raise ChapterError(
            f"{path}: cell {cell} failed with {exc.ename}: {exc.evalue.strip()} (cell starts: {first_line!r})"
        ) from None
    return out_path


def _set_assignment(source: str, name: str, value: str) -> str | None:
    """``source`` with the one-line assignment ``name = ...`` set to ``value`` (its comment kept); None if absent."""
    import ast
    import re

    pattern = re.compile(rf"^(?P<lead>{re.escape(name)}\s*=\s*)(?P<value>.*?)(?P<comment>\s+#.*)?$")
    lines = source.splitlines()
    for index, line in enumerate(lines):
        match = pattern.match(line)
        if match is None:
            continue
        try:
            ast.parse(match["value"], mode="eval")
        except SyntaxError:
            return None  # a multi-line value: leave it alone
        lines[index] = f"{match['lead']}{value}{match['comment'] or ''}"
        return "\n".join(lines)
    return None


def show_run_parameters(path: Path) -> None:
    """Show the parameters an executed chapter ran with in its own ``parameters`` cell.

    papermill injects a cell with the values it was given after the chapter's parameters cell. Where
    every injected value replaces a one-line assignment of the parameters cell (whose comments
    explain the parameters), the values are written there and the injected cell is tagged
    ``remove-cell``; otherwise the injected cell stays on the page. The notebook is rewritten atomically.
    """
    import ast

    path = Path(path)
    nb = _read_notebook(path)
    tags_of = [cell.get("metadata", {}).get("tags", []) for cell in nb.cells]
    own = next((i for i, tags in enumerate(tags_of) if "parameters" in tags), None)
    injected = next((i for i, tags in enumerate(tags_of) if "injected-parameters" in tags), None)
    if own is None or injected is None:
        return
    source = nb.cells[own].source
    for node in ast.parse(nb.cells[injected].source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            return
        updated = _set_assignment(source, node.targets[0].id, ast.get_source_segment(nb.cells[injected].source,
                                                                                      node.value))
        if updated is None:
            return
        source = updated
    nb.cells[own].source = source
    nb.cells[injected].metadata["tags"] = [*tags_of[injected], "remove-cell"]
    scratch = path.with_name(f".{path.name}.tmp")
    nbformat.write(nb, str(scratch))
    scratch.replace(path)


def read_glued(path: Path) -> dict[str, object]:
    """The values a chapter glued with ``myst_nb.glue``, by name (JSON-able values are decoded)."""
    nb = _read_notebook(Path(path))
    values: dict[str, object] = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name is None:
                continue
            data = output.get("data", {})
            if GLUE_MIME_PREFIX + "application/json" in data:
                values[name] = data[GLUE_MIME_PREFIX + "application/json"]
            elif GLUE_MIME_PREFIX + "text/plain" in data:
                text = data[GLUE_MIME_PREFIX + "text/plain"]
                values[name] = _parse_plain(text)
    return values


def _parse_plain(text: str) -> object:
    """Decode the text/plain repr of a glued value where it is a number, a string or a literal."""
    import ast

    stripped = text.strip()
    for prefix in ("np.float64(", "np.float32(", "np.int64(", "np.int32(", "np.True_", "np.False_"):
        if stripped.startswith(prefix):
            stripped = stripped[len(prefix):].rstrip(")") if prefix.endswith("(") else prefix[3:-1]
    try:
        return ast.literal_eval(stripped)
    except (ValueError, SyntaxError):
        return stripped


def stage_book(book_root: Path, staging: Path) -> None:
    """Copy the book's sources (config, table of contents, bibliography, chapters) into ``staging``."""
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for name in BOOK_FILES:
        shutil.copy2(book_root / name, staging / name)
    for name in BOOK_DIRS:
        if (book_root / name).is_dir():
            shutil.copytree(book_root / name, staging / name)
    for rel in toc_chapters(book_root):
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel.suffix != ".ipynb":
            shutil.copy2(book_root / rel, staging / rel)
    images = book_root / "chapters" / "images"
    if images.is_dir():
        shutil.copytree(images, staging / "chapters" / "images")


def build(book_root: Path, profile: str, staging: Path, html_out: Path) -> int:
    """Check, execute every chapter at ``profile`` and build the HTML; return a process exit code."""
    chapters = toc_chapters(book_root)
    notebooks = [book_root / rel for rel in chapters if rel.suffix == ".ipynb"]
    problems = check_committed(notebooks)
    if problems:
        print("Committed chapters are not clean:", *map(str, problems), sep="\n  ", file=sys.stderr)
        return 1

    stage_book(book_root, staging)
    failures: list[str] = []
    timings: list[tuple[str, float]] = []
    for rel in chapters:
        if rel.suffix != ".ipynb":
            continue
        started = time.perf_counter()
        print(f"[book] executing {rel} (profile={profile})", flush=True)
        try:
            execute_chapter(book_root / rel, staging / rel, {"profile": profile}, cwd=(book_root / rel).parent)
            show_run_parameters(staging / rel)
        except ChapterError as exc:
            failures.append(str(exc))
            print(f"[book] FAILED {exc}", file=sys.stderr, flush=True)
        timings.append((str(rel), time.perf_counter() - started))
    print("[book] chapter execution times (s):", flush=True)
    for rel, seconds in timings:
        print(f"  {seconds:8.1f}  {rel}", flush=True)
    print(f"  {sum(s for _, s in timings):8.1f}  total", flush=True)

    executed = [staging / rel for rel in chapters if rel.suffix == ".ipynb" and (staging / rel).exists()]
    failures += [str(p) for p in check_executed(executed) if not any(str(p.path.relative_to(staging)) in f
                                                                     for f in failures)]
    if failures:
        print("\nThe book was not built: chapters failed.", *failures, sep="\n  ", file=sys.stderr)
        return 1

    command = [
        str(Path(sys.executable).parent / "jupyter-book"), "build", str(staging), "--all", "-W", "-n",
        "--keep-going", "--path-output", str(html_out),
    ]
    print("[book] " + " ".join(command), flush=True)
    result = subprocess.run(command, check=False)
    if result.returncode != 0:
        print("\nThe HTML build failed (Sphinx warnings are errors); see the warnings above.", file=sys.stderr)
        return result.returncode
    missing = missing_images(html_out / "_build" / "html")
    if missing:
        print("\nPages refer to images that are not in the book (a figure pasted from another page must be "
              "shown on that page too):", *missing, sep="\n  ", file=sys.stderr)
        return 1
    print(f"[book] built {html_out / '_build' / 'html' / 'index.html'}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: ``build`` or ``check``."""
    parser = argparse.ArgumentParser(prog="python -m volbias.bookbuild", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build_parser = sub.add_parser("build", help="execute every chapter and build the HTML")
    build_parser.add_argument("--profile", default=os.environ.get("PROFILE", "cpu"))
    build_parser.add_argument("--root", type=Path, default=Path.cwd())
    check_parser = sub.add_parser("check", help="check committed chapters (no outputs, a parameters cell)")
    check_parser.add_argument("paths", nargs="*", type=Path)
    check_parser.add_argument("--executed", action="store_true", help="check for error outputs instead")
    args = parser.parse_args(argv)

    if args.command == "build":
        root = args.root.resolve()
        return build(root, args.profile, root / "_staging", root)
    paths = [p for arg in (args.paths or [Path("chapters")])
             for p in (sorted(arg.rglob("*.ipynb")) if arg.is_dir() else [arg])
             if ".ipynb_checkpoints" not in p.parts]
    try:
        problems = (check_executed if args.executed else check_committed)(paths)
    except ChapterError as exc:
        print(exc, file=sys.stderr)
        return 1
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"checked {len(paths)} chapter(s): {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
