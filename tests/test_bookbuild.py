"""The book's build pipeline: chapter hygiene, execution errors named by chapter and cell, glued values."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from volbias import bookbuild


def _notebook(path: Path, cells: list[tuple[str, str, list[str]]]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, source, tags in cells:
        cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
        if tags:
            cell.metadata["tags"] = tags
        nb.cells.append(cell)
    nbformat.write(nb, str(path))
    return path


def test_committed_chapters_are_clean(repo_root: Path) -> None:
    chapters = sorted((repo_root / "chapters").rglob("*.ipynb"))
    assert chapters, "the book has no notebook chapters"
    assert bookbuild.check_committed(chapters) == []


def test_every_toc_entry_exists_and_notebooks_have_parameters(repo_root: Path) -> None:
    entries = bookbuild.toc_chapters(repo_root)
    assert entries[0] == Path("chapters/intro.md")
    assert entries[1] == Path("chapters/cite.md"), "'How to cite' must come first in the table of contents"
    notebooks = [repo_root / e for e in entries if e.suffix == ".ipynb"]
    assert notebooks
    for path in notebooks:
        nb = nbformat.read(str(path), as_version=4)
        assert nb.metadata["kernelspec"]["name"] == "python3", path
        colab = [c for c in nb.cells if c.cell_type == "code" and "google.colab" in c.source]
        assert colab and nb.cells.index(colab[0]) < 3, f"{path}: the Colab install cell must come first"


def test_hygiene_flags_outputs_counts_and_missing_parameters(tmp_path: Path) -> None:
    dirty = _notebook(tmp_path / "dirty.ipynb", [("code", "x = 1", [])])
    nb = nbformat.read(str(dirty), as_version=4)
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    nb.cells[0].execution_count = 1
    nbformat.write(nb, str(dirty))
    problems = [str(p) for p in bookbuild.check_committed([dirty])]
    assert any("no code cell tagged 'parameters'" in p for p in problems)
    assert any("cell 0 holds outputs" in p for p in problems)

    counted = _notebook(tmp_path / "counted.ipynb", [("code", "profile = 'cpu'", ["parameters"])])
    nb = nbformat.read(str(counted), as_version=4)
    nb.cells[0].execution_count = 3
    nbformat.write(nb, str(counted))
    assert [p.problem for p in bookbuild.check_committed([counted])] == ["cell 0 holds an execution count"]


def test_failing_cell_is_named_by_chapter_and_cell(tmp_path: Path) -> None:
    chapter = _notebook(tmp_path / "broken.ipynb", [
        ("markdown", "# Broken", []),
        ("code", "profile = 'cpu'", ["parameters"]),
        ("code", "# the work\nraise ValueError('deliberate failure')", []),
    ])
    with pytest.raises(bookbuild.ChapterError) as info:
        bookbuild.execute_chapter(chapter, tmp_path / "out" / "broken.ipynb", {"profile": "smoke"})
    message = str(info.value)
    assert str(chapter) in message
    assert "cell 2" in message  # the cell index of the committed notebook, not of papermill's copy
    assert "ValueError: deliberate failure" in message
    executed = tmp_path / "out" / "broken.ipynb"
    assert [p.problem.split(":")[0] for p in bookbuild.check_executed([executed])] == ["cell 2 has an error output"]


def test_parameters_are_injected_and_glued_values_read_back(tmp_path: Path) -> None:
    chapter = _notebook(tmp_path / "glue.ipynb", [
        ("code", "profile = 'cpu'\nn = 3", ["parameters"]),
        ("code", "from myst_nb import glue\nimport numpy as np\n"
                 "glue('profile_used', profile, display=False)\n"
                 "glue('total', float(np.arange(n).sum()), display=False)\n"
                 "glue('count', int(n), display=False)", []),
    ])
    out = bookbuild.execute_chapter(chapter, tmp_path / "glue-out.ipynb", {"profile": "smoke", "n": 5})
    glued = bookbuild.read_glued(out)
    assert glued == {"profile_used": "smoke", "total": 10.0, "count": 5}


def test_the_page_shows_the_parameters_a_chapter_ran_with(tmp_path: Path) -> None:
    chapter = _notebook(tmp_path / "params.ipynb", [
        ("code", "profile = 'cpu'  # the profile\nn = 3\nsizes = {\n    'a': 1,\n}", ["parameters"]),
        ("code", "total = n * 2", []),
    ])
    out = bookbuild.execute_chapter(chapter, tmp_path / "ran.ipynb", {"profile": "smoke", "n": 5})
    bookbuild.show_run_parameters(out)
    cells = nbformat.read(str(out), as_version=4).cells
    assert cells[0].source == 'profile = "smoke"  # the profile\nn = 5\nsizes = {\n    \'a\': 1,\n}'
    assert "remove-cell" in cells[1].metadata["tags"] and "injected-parameters" in cells[1].metadata["tags"]
    # a value the parameters cell sets over several lines is not rewritten: the injected cell stays visible
    out = bookbuild.execute_chapter(chapter, tmp_path / "ran2.ipynb", {"sizes": {"b": 2}})
    bookbuild.show_run_parameters(out)
    cells = nbformat.read(str(out), as_version=4).cells
    assert cells[0].source.startswith("profile = 'cpu'") and "remove-cell" not in cells[1].metadata["tags"]


def test_build_fails_before_html_when_a_chapter_raises(repo_root: Path, tmp_path: Path) -> None:
    book = tmp_path / "book"
    (book / "chapters").mkdir(parents=True)
    for name in bookbuild.BOOK_FILES:
        shutil.copy2(repo_root / name, book / name)
    (book / "_toc.yml").write_text("format: jb-book\nroot: chapters/intro\nchapters:\n  - file: chapters/bad\n")
    (book / "chapters" / "intro.md").write_text("# Intro\n")
    _notebook(book / "chapters" / "bad.ipynb", [
        ("code", "profile = 'cpu'", ["parameters"]),
        ("code", "1 / 0", []),
    ])
    result = subprocess.run([sys.executable, "-m", "volbias.bookbuild", "build", "--profile", "smoke",
                             "--root", str(book)], capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert "chapters/bad.ipynb: cell 1 failed with ZeroDivisionError" in result.stderr
    assert not (book / "_build" / "html" / "index.html").exists()


def test_check_command_exit_codes(tmp_path: Path) -> None:
    clean = _notebook(tmp_path / "clean.ipynb", [("code", "profile = 'cpu'", ["parameters"])])
    missing = _notebook(tmp_path / "missing.ipynb", [("code", "x = 1", [])])
    run = lambda *args: subprocess.run([sys.executable, "-m", "volbias.bookbuild", "check", *map(str, args)],
                                       capture_output=True, text=True, check=False)
    assert run(clean).returncode == 0
    failed = run(clean, missing)
    assert failed.returncode == 1 and "missing.ipynb: no code cell tagged 'parameters'" in failed.stderr


def test_values_glued_as_numpy_scalars_are_flagged_at_any_profile(tmp_path: Path) -> None:
    chapter = _notebook(tmp_path / "numpy.ipynb", [
        ("code", "profile = 'cpu'", ["parameters"]),
        ("code", "from myst_nb import glue\nimport numpy as np\nvalues = np.array([0.25, 0.75])\n"
                 "glue('as_python', float(values.mean()), display=False)\n"
                 "glue('as_list', values.tolist(), display=False)\n"
                 "glue('sentence', 'np.float64 is a type', display=False)", []),
        ("code", "glue('as_numpy', values.mean(), display=False)\nglue('flag', values.mean() > 0, display=False)\n"
                 "glue('listed', list(values), display=False)", []),
    ])
    out = bookbuild.execute_chapter(chapter, tmp_path / "numpy-out.ipynb", {"profile": "smoke"})
    problems = [p.problem for p in bookbuild.check_executed([out])]
    flagged = sorted(re.search(r"glues '(\w+)'", p)[1] for p in problems)
    assert flagged == ["as_numpy", "flag", "listed"]
    assert all(p.startswith("cell 2 ") for p in problems)
    assert bookbuild.read_glued(out)["as_numpy"] == 0.5  # still readable by the tests


def test_missing_images_are_named_by_page(tmp_path: Path) -> None:
    html = tmp_path / "html"
    (html / "chapters").mkdir(parents=True)
    (html / "_images").mkdir()
    (html / "_images" / "shown.png").write_bytes(b"png")
    (html / "chapters" / "intro.html").write_text(
        '<img alt="x" src="../_images/shown.png" /><img src="../_images/pasted.png" />'
        '<img src="data:image/png;base64,AAAA" /><img class="logo" src="https://example.org/logo.png">')
    (html / "index.html").write_text('<img src="_images/shown.png">')
    assert bookbuild.missing_images(html) == ["chapters/intro.html: ../_images/pasted.png"]


def test_a_figure_pasted_from_a_page_that_does_not_show_it_fails_the_build(repo_root: Path, tmp_path: Path) -> None:
    book = tmp_path / "book"
    (book / "chapters").mkdir(parents=True)
    for name in bookbuild.BOOK_FILES:
        shutil.copy2(repo_root / name, book / name)
    (book / "_toc.yml").write_text("format: jb-book\nroot: chapters/intro\nchapters:\n  - file: chapters/results\n")
    (book / "chapters" / "intro.md").write_text("# Intro\n\n:::{glue} fig-pasted\n:doc: results.ipynb\n:::\n\n"
                                                "{glue:text}`results.ipynb::count:d` verdicts.\n")
    _notebook(book / "chapters" / "results.ipynb", [
        ("markdown", "# Results", []),
        ("code", "profile = 'cpu'", ["parameters"]),
        ("code", "import matplotlib.pyplot as plt\nfrom myst_nb import glue\nfig, ax = plt.subplots(figsize=(1, 1))\n"
                 "glue('fig-pasted', fig, display=False)\nplt.close(fig)\nglue('count', 3, display=False)", []),
    ])
    result = subprocess.run([sys.executable, "-m", "volbias.bookbuild", "build", "--profile", "smoke",
                             "--root", str(book)], capture_output=True, text=True, check=False)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Pages refer to images that are not in the book" in result.stderr
    assert re.search(r"chapters/intro\.html: \.\./_images/[0-9a-f]{64}\.png", result.stderr)
    assert '<span class="pasted-text">3</span> verdicts' in (book / "_build/html/chapters/intro.html").read_text()
