"""The built book in a real browser (headless Chromium, driven by Playwright): every page is checked
as a reader would see it, offline, and a screenshot of it is written for review.

Checks per page: nothing wider than the text column or the page (wide content must scroll in its own
box), every image loaded, every math element typeset by the book's own MathJax (no raw TeX left in the
text), no visible code line running out of its block, nothing fetched from the network.

- ``make test`` builds a tiny book with the repository's ``_config.yml`` and ``_static/`` (a chapter
  that uses the table, figure and glue helpers) into a temporary folder and checks it; the checks
  themselves are tested on hand-made broken pages.
- ``make check-browser`` (CI, after ``make book``) checks every page of the real build instead:
  ``VOLBIAS_BOOK_HTML=_build/html``; screenshots go to ``_build/screenshots/`` (or
  ``$VOLBIAS_SCREENSHOTS``) with ``report.txt``, which also lists figures shown shrunk.

Chromium is the Debian package ``chromium`` (``.ci/run`` installs it; ``$VOLBIAS_CHROMIUM`` overrides
the path); Playwright drives it, no browser is downloaded. Without a Chromium these tests are skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest

from volbias import bookbuild

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1280, "height": 900}
TIMEOUT_MS = 180_000
"""Limit of each page load, script and screenshot: a first load in a fresh Chromium on a busy 2-core machine
(the test suite runs two workers) has taken over 30 s, playwright's default."""
SKIPPED_PAGES = {"genindex.html", "search.html"}
SHRUNK_FIGURE = 0.8
"""A figure shown at less than this fraction of its size is listed in the report (labels get small)."""

PAGE_CHECK = r"""
async () => {
  const problems = [], warnings = [];
  const describe = (el) => {
    const cls = typeof el.className === 'string' && el.className ? '.' + el.className.trim().split(/\s+/).join('.') : '';
    const text = (el.textContent || '').trim().replace(/\s+/g, ' ').slice(0, 50);
    return `<${el.tagName.toLowerCase()}${cls}> "${text}"`;
  };
  const visible = (el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== 'hidden';
  if (document.fonts) await document.fonts.ready;
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  const images = [...document.images];
  images.forEach((img) => { img.loading = 'eager'; });
  await Promise.all(images.map((img) => img.complete ? null : new Promise((done) => {
    img.addEventListener('load', done); img.addEventListener('error', done); setTimeout(done, 10000);
  })));
  for (const img of images) {
    if (!(img.complete && img.naturalWidth > 0)) problems.push(`image not loaded: ${img.getAttribute('src')}`);
    else if (visible(img) && img.getBoundingClientRect().width < SHRUNK * img.naturalWidth)
      warnings.push(`figure shown at ${Math.round(100 * img.getBoundingClientRect().width / img.naturalWidth)} % `
                    + `of its size: ${img.getAttribute('src')}`);
  }
  for (const el of document.querySelectorAll('.math')) {
    if (!el.querySelector('mjx-container')) problems.push(`math not typeset: ${describe(el)}`);
    else if (el.querySelector('mjx-merror')) problems.push(`math with a TeX error: ${describe(el)}`);
  }
  const article = document.querySelector('article') || document.body;
  const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    if (node.parentElement.closest('pre, code, script, style, mjx-container, .math, textarea')) continue;
    if (/\\\(|\\\[|\$\$|\$(?=[^$]*\\[A-Za-z])[^$\s][^$]*\$/.test(node.textContent) && visible(node.parentElement))
      problems.push(`raw TeX in the text: ${describe(node.parentElement)}`);
  }
  const page = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth > page + 1)
    problems.push(`the page scrolls sideways: ${document.documentElement.scrollWidth} px > ${page} px`);
  const column = article.getBoundingClientRect();
  const reported = [];
  for (const el of article.querySelectorAll('*')) {
    if (!visible(el) || reported.some((r) => r.contains(el))) continue;
    let clipped = false;
    for (let up = el.parentElement; up && up !== article; up = up.parentElement)
      if (getComputedStyle(up).overflowX !== 'visible') { clipped = true; break; }
    if (clipped) continue;
    const box = el.getBoundingClientRect();
    const right = el.closest('.full-width, .margin, aside') ? page : column.right;
    if (box.width > 0 && box.right > right + 1) {
      reported.push(el);
      problems.push(`${describe(el)} overruns the column by ${Math.round(box.right - right)} px`);
    }
  }
  for (const pre of article.querySelectorAll('pre')) {
    if (visible(pre) && pre.scrollWidth > pre.clientWidth + 1)
      problems.push(`code runs out of its block by ${pre.scrollWidth - pre.clientWidth} px: ${describe(pre)}`);
  }
  return {problems: problems.slice(0, 30), warnings};
}
""".replace("SHRUNK", str(SHRUNK_FIGURE))


@dataclass
class PageReport:
    """What the browser found on one page."""

    page: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    screenshot: Path | None = None


def find_chromium() -> str | None:
    """The Chromium executable: ``$VOLBIAS_CHROMIUM`` or the system's chromium on the PATH."""
    candidates = [os.environ.get("VOLBIAS_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"),
                  shutil.which("google-chrome")]
    return next((c for c in candidates if c and Path(c).exists()), None)


class Browser:
    """One headless Chromium with a fresh profile; pages are opened offline (only local files load)."""

    def __init__(self, executable: str) -> None:
        from playwright.sync_api import sync_playwright

        self._profile = tempfile.TemporaryDirectory(prefix="volbias-chromium-")
        self._playwright = sync_playwright().start()
        self.context = self._playwright.chromium.launch_persistent_context(
            self._profile.name, executable_path=executable, headless=True, args=CHROMIUM_FLAGS,
            viewport=VIEWPORT)
        self.context.set_default_timeout(TIMEOUT_MS)

    def check(self, url: str, screenshot: Path | None = None) -> PageReport:
        """Open ``url``, run the page checks, and write a full-page screenshot to ``screenshot``."""
        report = PageReport(url)
        page = self.context.new_page()

        def offline(route) -> None:  # noqa: ANN001 - playwright's Route
            if route.request.url.startswith(("file:", "data:", "blob:", "about:")):
                route.continue_()
            else:
                report.problems.append(f"fetched from the network (blocked): {route.request.url}")
                route.abort()

        page.route("**/*", offline)
        page.on("requestfailed", lambda request: report.problems.append(
            f"could not load {request.url}") if request.url.startswith("file:") else None)
        # a script error is noted, not failed: the theme's own scripts raise one (thebe loaded twice)
        page.on("pageerror", lambda error: report.warnings.append(f"script error: {error}"))
        try:
            page.goto(url, wait_until="load")
            found = page.evaluate(PAGE_CHECK)
            report.problems += found["problems"]
            report.warnings += found["warnings"]
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)
                report.screenshot = screenshot
        finally:
            page.close()
        return report

    def close(self) -> None:
        """Stop the browser and remove its profile."""
        self.context.close()
        self._playwright.stop()
        self._profile.cleanup()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = find_chromium()
    if executable is None:
        pytest.skip("no Chromium found: install the Debian package 'chromium' (apt-get install -y chromium) "
                    "or set VOLBIAS_CHROMIUM to a Chromium executable")
    started = Browser(executable)
    yield started
    started.close()


def book_pages(html: Path) -> list[Path]:
    """The content pages of a built book (no redirects, index or search pages)."""
    pages = []
    for path in sorted(html.rglob("*.html")):
        rel = path.relative_to(html)
        if rel.parts[0].startswith("_") or rel.name in SKIPPED_PAGES:
            continue
        if 'http-equiv="Refresh"' in path.read_text(errors="replace")[:2000]:
            continue
        pages.append(path)
    return pages


def check_book(browser: Browser, html: Path, screenshots: Path) -> list[PageReport]:
    """Check every page of the book built in ``html``; write screenshots and ``report.txt`` to ``screenshots``."""
    reports = []
    for path in book_pages(html):
        rel = path.relative_to(html)
        shot = screenshots / (str(rel.with_suffix("")).replace(os.sep, "__") + ".png")
        report = browser.check(path.resolve().as_uri(), shot)
        report.page = str(rel)
        reports.append(report)
    screenshots.mkdir(parents=True, exist_ok=True)
    lines = []
    for report in reports:
        lines.append(f"{report.page}: {len(report.problems)} problems, screenshot {report.screenshot.name}")
        lines += [f"  problem: {p}" for p in report.problems] + [f"  note: {w}" for w in report.warnings]
    (screenshots / "report.txt").write_text("\n".join(lines) + "\n")
    return reports


# --- the checks catch what they should ---------------------------------------------------------------

GOOD_PAGE = """<!doctype html><html><head><style>
  body { margin: 0; } article { width: 600px; margin: 0 auto; }
  .scroll { display: block; overflow-x: auto; max-width: 100%; }
  pre { white-space: pre-wrap; }
</style></head><body><article>
  <p>Text.</p>
  <table class="scroll"><tr><td style="min-width: 1500px">a wide table that scrolls in its box</td></tr></table>
  <pre>x = 1  # a code line long enough to wrap inside its block ....................................................</pre>
  <img src="IMAGE" width="200">
</article></body></html>"""


def _write(tmp_path: Path, name: str, html: str) -> str:
    png = tmp_path / "dot.png"
    if not png.exists():
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(1, 1), dpi=50)
        fig.savefig(png)
        plt.close(fig)
    path = tmp_path / name
    path.write_text(html.replace("IMAGE", png.name))
    return path.as_uri()


def test_a_clean_page_passes(browser: Browser, tmp_path: Path) -> None:
    report = browser.check(_write(tmp_path, "good.html", GOOD_PAGE), tmp_path / "shots" / "good.png")
    assert report.problems == []
    assert (tmp_path / "shots" / "good.png").stat().st_size > 1000


@pytest.mark.parametrize(("change", "expected"), [
    (("<p>Text.</p>", '<div style="width: 900px">a wide block</div>'), "overruns the column by 300 px"),
    (("white-space: pre-wrap", "white-space: pre"), "code runs out of its block"),
    (('src="IMAGE"', 'src="missing.png"'), "image not loaded: missing.png"),
    (("<p>Text.</p>", '<p><span class="math">\\(\\sum_i p_i\\)</span></p>'), "math not typeset"),
    (("<p>Text.</p>", "<p>glued as text: \\(\\sum_i p_i\\)</p>"), "raw TeX in the text"),
    (("<p>Text.</p>", "<p>glued as text: $\\sum_i p_i$</p>"), "raw TeX in the text"),
    (("</article>", '</article><script src="https://cdn.invalid/mathjax.js"></script>'),
     "fetched from the network (blocked): https://cdn.invalid/mathjax.js"),
    (("<body>", '<body><div style="width: 3000px">wider than the window</div>'), "the page scrolls sideways"),
])
def test_each_check_catches_its_problem(browser: Browser, tmp_path: Path, change: tuple[str, str],
                                        expected: str) -> None:
    old, new = change
    assert old in GOOD_PAGE
    report = browser.check(_write(tmp_path, "bad.html", GOOD_PAGE.replace(old, new)))
    assert any(expected in problem for problem in report.problems), report.problems


# --- a tiny book built with the book's own configuration ---------------------------------------------

TINY_TOC = "format: jb-book\nroot: chapters/tiny\n"
TINY_CELLS = [
    ("markdown", "# A tiny chapter\n\nInline math $\\sum_i p_i$ and a glued sentence: {glue:md}`tiny_sentence:myst`.\n"
                 "{numref}`fig-tiny-curve` shows a curve.", []),
    ("code", "profile = 'cpu'", ["parameters"]),
    ("code", "import numpy as np\nimport pandas as pd\nfrom IPython.display import Markdown\n"
             "from myst_nb import glue\n\nfrom volbias.analysis import plots, present\n\nplots.use_book_style()\n"
             "glue('tiny_sentence', Markdown('the expected volume $\\\\sum_i p_i$ is unbiased'), display=False)",
     ["hide-input"]),
    ("code", "fig, axes = plots.new_figure(3)\nfor ax, loss in zip(axes, ['ce', 'sd', 'ce-sd']):\n"
             "    ax.plot(np.arange(10), np.arange(10) ** 1.5, color=plots.loss_colour(loss), label=loss)\n"
             "    ax.set(xlabel='a long axis label in readable type', ylabel='another readable label')\n"
             "plots.glue_figure('fig-tiny-curve', fig)", ["hide-input"]),
    ("markdown", ":::{glue:figure} fig-tiny-curve\n:name: fig-tiny-curve\nThree panels, two per row.\n:::", []),
    ("code", "x = 1  # " + "a long comment line " * 8, []),
    ("code", "wide = pd.DataFrame({'task': ['LIDC'] * 2, 'loss': ['ce', 'sd'], 'n': [4, 4],\n"
             "                     'bias_soft': [0.063, -0.2], 'bias_soft_ci_low': [-0.02, -0.3],\n"
             "                     'bias_soft_ci_high': [0.141, -0.1]})\n"
             "for k in range(8):\n    wide[f'a long column header number {k}'] = ['a long cell value'] * 2\n"
             "present.table(wide, {'task': present.text('task', present.TASK_NAMES),\n"
             "    'loss': present.text('loss', present.LOSS_NAMES), 'n': present.count('cases'),\n"
             "    'bias_soft': present.estimate('bias', as_percent=True),\n"
             "    **{c: c for c in wide.columns if c.startswith('a long')}})", []),
]


@pytest.fixture(scope="module")
def tiny_book(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-chapter book built with the repository's configuration and style sheet; its HTML folder."""
    root = tmp_path_factory.mktemp("tiny-book")
    for name in ("_config.yml", "references.bib"):
        shutil.copy2(repo_root / name, root / name)
    shutil.copytree(repo_root / "_static", root / "_static")
    (root / "_toc.yml").write_text(TINY_TOC)
    (root / "chapters").mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, source, tags in TINY_CELLS:
        cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
        cell.metadata["tags"] = tags
        nb.cells.append(cell)
    nbformat.write(nb, str(root / "chapters" / "tiny.ipynb"))
    code = bookbuild.build(root, "smoke", root / "_staging", root)
    assert code == 0, "the tiny book did not build (see the captured output)"
    return root / "_build" / "html"


def test_tiny_book_reads_well_offline(browser: Browser, tiny_book: Path) -> None:
    page = tiny_book / "chapters" / "tiny.html"
    html = page.read_text()
    assert re.search(r'src="[./]*_static/mathjax/tex-chtml\.js', html), "MathJax is not served from the book"
    assert "cdn.jsdelivr" not in html
    assert (tiny_book / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()
    report = browser.check(page.as_uri(), tiny_book.parent / "screenshots" / "tiny.png")
    assert report.problems == []
    # the figure is numbered, captioned and referenced by its number; the table has no index column
    assert re.search(r'<span class="caption-number">Fig\. 1 </span>', html)
    assert re.search(r'href="#fig-tiny-curve"[^>]*><span class="std std-numref">Fig\. 1</span>', html)
    table = html[html.index('class="volbias-table"'):]
    table = table[:table.index("</table>")]
    assert "+6.3 % [-2.0, +14.1]" in table and "cross-entropy (CE)" in table
    assert "row_heading" not in table and "blank level0" not in table
    # the glued sentence's math became a math element (typeset: the page check above); no injected parameters
    assert re.search(r'the expected volume <span class="math', html)
    assert "# Parameters" not in html


def _book_under_test(request: pytest.FixtureRequest) -> tuple[Path, Path]:
    built = os.environ.get("VOLBIAS_BOOK_HTML")
    html = Path(built) if built else request.getfixturevalue("tiny_book")
    if not (html / "index.html").is_file() and not any(html.rglob("*.html")):
        raise FileNotFoundError(f"{html}: no built book here (run `make book` first)")
    shots = Path(os.environ.get("VOLBIAS_SCREENSHOTS", html.parent / "screenshots"))
    return html, shots


def test_every_page_of_the_book(browser: Browser, request: pytest.FixtureRequest) -> None:
    """Every page of ``$VOLBIAS_BOOK_HTML`` (``make check-browser``), else of the tiny book."""
    html, shots = _book_under_test(request)
    reports = check_book(browser, html, shots)
    assert reports, f"{html}: no pages found"
    failing = [f"{r.page}:\n    " + "\n    ".join(r.problems) for r in reports if r.problems]
    assert not failing, "pages that do not read well (see " + str(shots / "report.txt") + "):\n" + "\n".join(failing)
    assert all(r.screenshot and r.screenshot.stat().st_size > 1000 for r in reports)
