"""The built book in a real browser (headless Chromium, driven by Playwright): every page is checked
as a reader would see it, offline, at the theme's default layout in a 1400 px wide window, and a screenshot of
it is written for review.

Checks per page: every table fits its text column (the theme's full-width layout: the page) and shows all
its columns without horizontal scrolling, named by its caption; nothing else wider than the text column or
the page (other wide content must scroll in its own box); every image loaded; every math element typeset by
the book's own MathJax (no raw TeX left in the text); no visible code line running out of its block;
nothing fetched from the network.

- ``make test`` builds a tiny book with the repository's ``_config.yml``, ``_static/`` and landing page (a
  results chapter that glues the landing page's values and uses the table, figure and glue helpers) into a
  temporary folder and checks it; the checks themselves are tested on hand-made broken pages.
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
VIEWPORT = {"width": 1400, "height": 900}
"""The reader's window: the theme's default layout at this width has both sidebars."""
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
  const wideLayout = '.full-width, .full_width, .tag_full-width, .tag_full_width';
  for (const table of article.querySelectorAll('table')) {
    if (!visible(table)) continue;
    const caption = table.querySelector('caption');
    const header = [...table.querySelectorAll('th')].slice(0, 4).map((th) => th.textContent.trim()).join(', ');
    const name = caption ? `"${caption.textContent.trim().replace(/\s+/g, ' ').slice(0, 90)}"`
                         : `without a caption (columns: ${header.slice(0, 80)})`;
    let scrolls = null;
    for (let box = table; box && box !== article && !scrolls; box = box.parentElement)
      if (getComputedStyle(box).overflowX !== 'visible' && box.scrollWidth > box.clientWidth + 1) scrolls = box;
    const right = table.closest(wideLayout) ? page : column.right;
    const edge = table.getBoundingClientRect().right;
    if (scrolls)
      problems.push(`table ${name} needs horizontal scrolling: ${scrolls.scrollWidth - scrolls.clientWidth} px hidden`);
    else if (edge > right + 1)
      problems.push(`table ${name} passes the text column by ${Math.round(edge - right)} px`);
  }
  const reported = [];
  for (const el of article.querySelectorAll('*')) {
    if (!visible(el) || el.closest('table') || reported.some((r) => r.contains(el))) continue;
    let clipped = false;
    for (let up = el.parentElement; up && up !== article; up = up.parentElement)
      if (getComputedStyle(up).overflowX !== 'visible') { clipped = true; break; }
    if (clipped) continue;
    const box = el.getBoundingClientRect();
    const right = el.closest(`${wideLayout}, .margin, aside`) ? page : column.right;
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
  .full-width { width: 136%; max-width: 136%; }
  pre { white-space: pre-wrap; }
</style></head><body><article>
  <p>Text.</p>
  <div class="scroll"><div style="min-width: 1500px">a wide printout that scrolls in its box</div></div>
  <table class="scroll"><caption>A table that fits.</caption><tr><th>group</th><th>bias</th></tr>
    <tr><td>A</td><td>+6.3 % [-2.0, +14.1]</td></tr></table>
  <table class="scroll full-width"><caption>A full-width table.</caption>
    <tr><td style="min-width: 780px">wider than the column, within the full width</td></tr></table>
  <pre>x = 1  # a code line long enough to wrap inside its block ....................................................</pre>
  <img src="IMAGE" width="200">
</article></body></html>"""

WIDE_CELL = '<tr><td style="min-width: 900px; white-space: nowrap">the bias of the thresholded volume</td></tr>'


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
    (("<p>Text.</p>", f'<table class="scroll"><caption>Verdicts, cut.</caption>{WIDE_CELL}</table>'),
     'table "Verdicts, cut." needs horizontal scrolling'),
    (("<p>Text.</p>", f'<div class="scroll"><table><caption>In a box.</caption>{WIDE_CELL}</table></div>'),
     'table "In a box." needs horizontal scrolling'),
    (("<p>Text.</p>", f'<div style="overflow: hidden"><table><caption>Hidden.</caption>{WIDE_CELL}</table></div>'),
     'table "Hidden." needs horizontal scrolling'),
    (("<p>Text.</p>", f"<table><caption>Too wide.</caption>{WIDE_CELL}</table>"),
     'table "Too wide." passes the text column by'),
    (("<p>Text.</p>", f"<table><tr><th>group</th><th>p (Holm)</th></tr>{WIDE_CELL}</table>"),
     "table without a caption (columns: group, p (Holm)) passes the text column"),
    (("min-width: 780px", "min-width: 1500px"), 'table "A full-width table." needs horizontal scrolling'),
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


# --- a tiny book built with the book's own configuration and landing page ----------------------------

TINY_PAGES = ("chapters/intro.md", "chapters/references.md")
"""Pages of the real book in the tiny book; the landing page's other links get stub pages."""

TINY_CELLS = [
    ("markdown", "# Results in small\n\nInline math $\\sum_i p_i$ and a glued sentence: {glue:md}`tiny_sentence:myst`.\n"
                 "{numref}`fig-tiny-curve` shows a curve, and {glue:md}`headline-summary:myst`", []),
    ("code", "profile = 'cpu'", ["parameters"]),
    ("code", "import numpy as np\nimport pandas as pd\nfrom IPython.display import Markdown, display\n"
             "from myst_nb import glue\n\nfrom volbias.analysis import headline, plots, present, verdict_figure\n\n"
             "plots.use_book_style()\nnan = float('nan')\n"
             "glue('tiny_sentence', Markdown('the expected volume $\\\\sum_i p_i$ is unbiased'), display=False)",
     ["hide-input"]),
    ("code", "fig, axes = plots.new_figure(3)\nfor ax, loss in zip(axes, ['ce', 'sd', 'ce-sd']):\n"
             "    ax.plot(np.arange(10), np.arange(10) ** 1.5, color=plots.loss_colour(loss), label=loss)\n"
             "    ax.set(xlabel='a long axis label in readable type', ylabel='another readable label')\n"
             "plots.glue_figure('fig-tiny-curve', fig)", ["hide-input"]),
    ("markdown", ":::{glue:figure} fig-tiny-curve\n:name: fig-tiny-curve\nThree panels, two per row.\n:::", []),
    ("code", "x = 1  # " + "a long comment line " * 8, []),
    ("code", "groups = ['book (cpu): synthetic, independent noise, sigma/R = 0.9', 'book (cpu): LIDC, all nodules']\n"
             "wide = pd.DataFrame({'group': groups, 'loss': ['ce', 'sd'], 'n': [4, 4],\n"
             "                     'bias_soft': [0.063, -0.2], 'bias_soft_ci_low': [-0.02, -0.3],\n"
             "                     'bias_soft_ci_high': [0.141, -0.1], 'bias_hard': [0.1, -0.25],\n"
             "                     'bias_hard_ci_low': [0.01, -0.36], 'bias_hard_ci_high': [0.2, -0.14],\n"
             "                     'p': [0.0004, 0.0345], 'p_holm': [0.0008, 0.0345], 'version': ['0.1.0+g1a2b3c4d'] * 2})\n"
             "codes = present.short_labels(groups)\n"
             "columns = {'group': present.text('group', codes), 'loss': present.text('loss', present.LOSS_NAMES),\n"
             "           'n': present.count('cases'), 'bias_soft': present.estimate('bias of the soft volume', as_percent=True),\n"
             "           'bias_hard': present.estimate('bias of the thresholded volume', as_percent=True),\n"
             "           'p': present.p_value('p'), 'p_holm': present.p_value('p (Holm)'), 'version': 'code version'}\n"
             "display(present.legend(codes, caption='Groups.'),\n"
             "        present.table(wide, {c: columns[c] for c in ('group', 'loss', 'n', 'bias_soft')}, caption='Inline.'),\n"
             "        *present.split_table(wide, columns, keys=['group', 'loss'],\n"
             "                             parts=[['n', 'bias_soft', 'bias_hard'], ['p', 'p_holm', 'version']],\n"
             "                             captions=['Volume bias.', 'Tests.'], ci='below'),\n"
             "        present.table(wide.assign(note=['a note that is long enough to need the full width ' * 3] * 2),\n"
             "                      {**columns, 'note': 'note'}, caption='Full width.', ci='below', layout='full-width'))",
     ["hide-input"]),
    ("code", "theory = headline.theory_curves((0.1, 0.5, 0.9), (0.5,), n_cases=2)\n"
             "measured = pd.DataFrame([('phantoms', 'a', 0.5, 0.2, 0.1, 0.3, 'sd', 'thresholded'),\n"
             "                         ('LIDC', 'b', 0.24, 0.0, -0.05, 0.05, 'ce', 'soft')],\n"
             "                        columns=list(headline.MEASURED_COLUMNS))\n"
             "plots.glue_figure('fig-headline', headline.headline_figure(theory, measured))\n"
             "verdicts = pd.DataFrame([('1', 'SD gives higher Dice', 'A', 0.02, 0.01, 0.03, nan, nan, 'dice', 'yes'),\n"
             "                         ('2', 'SD biases the volume', 'B', 0.1, nan, nan, -0.05, 0.05, 'percent', 'underpowered'),\n"
             "                         ('3', 'SD leaves the volume', 'C', 0.01, nan, nan, -0.05, 0.05, 'percent', 'not tested')],\n"
             "                        columns=list(verdict_figure.REQUIRED_COLUMNS))\n"
             "plots.glue_figure('fig-results-verdicts', verdict_figure.verdict_forest(verdicts))\n"
             "counts = verdicts['verdict'].value_counts()\n"
             "for verdict in ('yes', 'no', 'inconclusive', 'underpowered', 'not tested'):\n"
             "    glue(f'verdict-count-{verdict.replace(\" \", \"-\")}', int(counts.get(verdict, 0)), display=False)\n"
             "glue('headline-summary', headline.Summary('Soft Dice **biases** the volume.'), display=False)",
     ["hide-input"]),
    ("markdown", ":::{glue:figure} fig-headline\n:name: fig-headline\nThe headline.\n:::\n\n"
                 ":::{glue:figure} fig-results-verdicts\n:name: fig-results-verdicts\nThe verdicts.\n:::", []),
]


def _stub_pages(intro: str) -> list[str]:
    """The pages the landing page links to ({doc}`name`) that the tiny book does not have."""
    names = dict.fromkeys(re.findall(r"\{doc\}`([^`<]+)`", intro))
    return [name for name in names if f"chapters/{name}.md" not in TINY_PAGES and name != "results"]


@pytest.fixture(scope="module")
def tiny_book(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small book built with the repository's configuration, style sheet and landing page; its HTML folder.

    Its results chapter glues what the landing page pastes (headline figure, summary, verdict counts) and
    uses the table, figure and glue helpers.
    """
    root = tmp_path_factory.mktemp("tiny-book")
    for name in ("_config.yml", "references.bib", *TINY_PAGES):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo_root / name, root / name)
    shutil.copytree(repo_root / "_static", root / "_static")
    stubs = _stub_pages((root / "chapters" / "intro.md").read_text())
    for name in stubs:
        (root / "chapters" / f"{name}.md").write_text(f"# {name}\n\nA stand-in for the chapter '{name}'.\n")
    files = ["results", *stubs, "references"]
    (root / "_toc.yml").write_text("format: jb-book\nroot: chapters/intro\nchapters:\n"
                                   + "".join(f"  - file: chapters/{name}\n" for name in files))
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for kind, source, tags in TINY_CELLS:
        cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
        cell.metadata["tags"] = tags
        nb.cells.append(cell)
    nbformat.write(nb, str(root / "chapters" / "results.ipynb"))
    code = bookbuild.build(root, "smoke", root / "_staging", root)
    assert code == 0, "the tiny book did not build (see the captured output)"
    return root / "_build" / "html"


def test_tiny_book_reads_well_offline(browser: Browser, tiny_book: Path) -> None:
    page = tiny_book / "chapters" / "results.html"
    html = page.read_text()
    assert re.search(r'src="[./]*_static/mathjax/tex-chtml\.js', html), "MathJax is not served from the book"
    assert "cdn.jsdelivr" not in html
    assert (tiny_book / "_static" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").is_dir()
    report = browser.check(page.as_uri(), tiny_book.parent / "screenshots" / "results.png")
    assert report.problems == []
    # the figure is numbered, captioned and referenced by its number; the tables have no index column
    assert re.search(r'<span class="caption-number">Fig\. 1 </span>', html)
    assert re.search(r'href="#fig-tiny-curve"[^>]*><span class="std std-numref">Fig\. 1</span>', html)
    table = html[html.index("<caption>Inline."):]
    table = table[:table.index("</table>")]
    assert "+6.3 % [-2.0, +14.1]" in table and "cross-entropy (CE)" in table
    assert "row_heading" not in table and "blank level0" not in table
    assert "+6.3 %<br>[-2.0, +14.1]" in html[html.index("<caption>Volume bias."):]
    # the glued sentence's math became a math element (typeset: the page check above); no injected parameters
    assert re.search(r'the expected volume <span class="math', html)
    assert "# Parameters" not in html


def test_the_landing_page_shows_what_the_results_chapter_glued(browser: Browser, tiny_book: Path) -> None:
    intro = (tiny_book / "chapters" / "intro.html").read_text()
    results = (tiny_book / "chapters" / "results.html").read_text()
    images = re.findall(r'<img[^>]*src="([^"]*_images/[0-9a-f]{64}\.png)"', intro)
    assert len(images) == 1 and images[0] in results  # the Results chapter's headline figure itself
    assert "Soft Dice <strong>biases</strong> the volume." in intro
    counts = re.findall(r'<span class="pasted-text">(\d+)</span>', intro)
    assert counts == ["1", "0", "0", "1", "1"]  # yes, no, inconclusive, underpowered, not tested as glued
    assert re.search(r'href="results.html#fig-headline"', intro)
    report = browser.check((tiny_book / "chapters" / "intro.html").as_uri())
    assert report.problems == []


@pytest.mark.parametrize(("table", "expected"), [
    ('<div class="cell_output"><div class="output"><table class="volbias-table"><caption>A cut table.</caption>'
     "WIDE</table></div></div>", 'table "A cut table." needs horizontal scrolling'),
    ('<div class="cell_output"><div class="output"><table class="volbias-table full-width">'
     "<caption>Cut at full width.</caption>WIDE</table></div></div>", 'table "Cut at full width." needs horizontal'),
    ("<table><caption>Past the column.</caption>WIDE</table>", 'table "Past the column." passes the text column'),
])
def test_a_cut_table_fails_on_a_page_of_the_book(browser: Browser, tiny_book: Path, table: str,
                                                 expected: str) -> None:
    """A table too wide for the column, put into a built page of the book (the theme's real layout)."""
    page = tiny_book / "chapters" / "results.html"
    row = "<tr>" + "".join(f'<td style="white-space: nowrap">column {k}: the bias of the thresholded volume</td>'
                           for k in range(6)) + "</tr>"
    article = '<article class="bd-article">'
    html = page.read_text()
    assert article in html
    cut = page.with_name("cut.html")
    cut.write_text(html.replace(article, article + table.replace("WIDE", row), 1))
    report = browser.check(cut.as_uri())
    cut.unlink()
    assert any(expected in problem for problem in report.problems), report.problems


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
