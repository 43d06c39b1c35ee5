"""The release archive, packed from a small but real build: a chapter executed by papermill that glues its
claims table, a built-HTML folder and a runs directory with finished runs."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from volbias.bookbuild import execute_chapter
from volbias.publish import release
from volbias.publish.metadata import read_metadata
from volbias.publish.sync import sync

CLAIMS = [  # longer than pandas' display width, with a missing value, as the real verdict table may be
    {"claim": 1, "group": "synthetic, independent noise, sigma/R = 0.5",
     "our result": "SD - CE Dice = +0.041 [+0.012, +0.070], Wilcoxon p = 0.0039, n = 24 (not truncated)",
     "agrees?": "yes", "p_holm": 0.0117},
    {"claim": 3, "group": "BR18-sample", "our result": "SD hard +2.0% [-10.1%, +14.3%]",
     "agrees?": "inconclusive", "p_holm": None},
]
METADATA_FILES = ("pyproject.toml", "README.md", "CITATION.cff", ".zenodo.json", "_config.yml", "references.bib",
                  "chapters/cite.md", "templates/chapter.ipynb", "LICENSE")


def _results_chapter(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    install = nbformat.v4.new_code_cell("%pip install volbias", metadata={"tags": ["remove-cell"]})
    parameters = nbformat.v4.new_code_cell('profile = "cpu"', metadata={"tags": ["parameters"]})
    work = nbformat.v4.new_code_cell(
        "import json\nimport pandas as pd\nfrom myst_nb import glue\n"
        f"verdict = pd.DataFrame.from_records(json.loads({json.dumps(CLAIMS)!r}))\n"
        f'glue("{release.CLAIMS_GLUE}", verdict.to_json(orient="records"), display=False)\nverdict')
    shown = nbformat.v4.new_code_cell("object()")  # its text form holds a memory address
    nb.cells = [nbformat.v4.new_markdown_cell("# Results"), install, parameters, work, shown]
    nbformat.write(nb, str(path))


def _run(runs: Path, name: str, cases: pd.DataFrame) -> None:
    run_dir = runs / name
    run_dir.mkdir(parents=True)
    cases.to_csv(run_dir / "cases.csv", index=False)
    (run_dir / "config.yaml").write_text("task: synthetic\nloss: ce\nprofile: smoke\ntask_options: {dims: 2}\n")
    (run_dir / "DONE").write_text("")


def _cases(loss: str, n: int) -> pd.DataFrame:
    return pd.DataFrame({"task": "synthetic", "loss": loss, "fold": 0, "seed": 0,
                         "case_id": [f"c{i}" for i in range(n)],
                         "dice": 0.5, "true_volume": 10.0, "expected_volume": 9.5, "pred_volume_soft": 9.0,
                         "pred_volume_hard": 11.0, "voxel_volume_ml": 1.0})


@pytest.fixture(scope="module")
def built(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A project root holding an executed smoke build (``_staging``, ``_build/html``) and its runs."""
    root = tmp_path_factory.mktemp("project")
    for rel in METADATA_FILES:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo_root / rel, root / rel)
    (root / "_toc.yml").write_text("format: jb-book\nroot: chapters/cite\nchapters:\n  - file: chapters/results\n")
    _results_chapter(root / "chapters" / "results.ipynb")
    sync(root)  # this copy's chapter gets the install cell that pyproject.toml implies
    execute_chapter(root / "chapters/results.ipynb", root / "_staging/chapters/results.ipynb", {"profile": "smoke"})
    html = root / "_build" / "html"
    (html / "_images").mkdir(parents=True)
    (html / "index.html").write_text('<html><body><img src="_images/figure.png"></body></html>')
    (html / "_images" / "figure.png").write_bytes(bytes(range(256)) * 4)
    (html / "_sources" / "chapters").mkdir(parents=True)
    shutil.copy2(root / "_staging/chapters/results.ipynb", html / "_sources/chapters/results.ipynb")
    runs = root / "runs" / "smoke"
    _run(runs / "controlled_uncertainty" / "smoke", "synthetic-ce-f0-s0", _cases("ce", 3))
    _run(runs / "training" / "smoke", "synthetic-sd-f0-s0", _cases("sd", 2))
    (runs / "unfinished").mkdir()
    _cases("ce", 5).to_csv(runs / "unfinished" / "cases.csv", index=False)  # no DONE marker: not archived
    stored = root / "data" / "results"
    _run(stored / "demo-set" / "lidc" / "cpu", "lidc-ce-f0-s0", _cases("ce", 2))
    (stored / "demo-set" / "manifest.json").write_text('{"commit": "abc", "versions": {}, "hardware": {}, "seed": 0}')
    (stored / "README.md").write_text("what a result set is\n")  # not a set: not archived
    return root, runs


def _pack(built: tuple[Path, Path], out: Path, epoch: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)
    return release.build_release(built[0], "smoke", built[1], out)


def test_archive_holds_the_build_and_its_checksums_verify(built, tmp_path: Path, monkeypatch) -> None:
    root, runs = built
    target = _pack(built, tmp_path / "dist", "1700000000", monkeypatch)
    meta = read_metadata(root)
    assert target.name == f"volbias-{meta.version}-book-smoke.zip"
    with zipfile.ZipFile(target) as archive:
        archive.extractall(tmp_path / "unpacked")
        assert {info.date_time for info in archive.infolist()} == {(2023, 11, 14, 22, 13, 20)}
    folder = tmp_path / "unpacked" / target.stem
    listed = {}
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        digest, rel = line.split("  ", 1)
        listed[rel] = digest
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {"SHA256SUMS"}
    assert set(listed) == on_disk
    assert {"html/index.html", "html/_images/figure.png", "notebooks/chapters/results.ipynb", "tables/cases.csv",
            "tables/claims.csv", "CITATION.cff", ".zenodo.json", "README.md", "results/demo-set/manifest.json",
            "results/demo-set/lidc/cpu/lidc-ce-f0-s0/cases.csv"} <= on_disk
    assert not any(name.startswith("results/README") for name in on_disk)
    verified = subprocess.run(["sha256sum", "--check", "--strict", "SHA256SUMS"], cwd=folder, capture_output=True,
                              text=True)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert (folder / "CITATION.cff").read_bytes() == (root / "CITATION.cff").read_bytes()
    assert (folder / ".zenodo.json").read_bytes() == (root / ".zenodo.json").read_bytes()

    claims = pd.read_csv(folder / "tables" / "claims.csv")
    assert claims.to_dict("records")[0] == CLAIMS[0]
    assert claims["p_holm"].isna().tolist() == [False, True]

    cases = pd.read_csv(folder / "tables" / "cases.csv")
    assert len(cases) == 5  # 3 + 2 cases of the finished runs; the unfinished run is left out
    assert sorted(cases.run_dir.unique()) == ["controlled_uncertainty/smoke/synthetic-ce-f0-s0",
                                              "training/smoke/synthetic-sd-f0-s0"]
    assert cases.groupby("loss").size().to_dict() == {"ce": 3, "sd": 2}

    executed = nbformat.read(str(folder / "notebooks/chapters/results.ipynb"), as_version=4)
    assert executed.metadata.papermill.parameters == {"profile": "smoke"}
    assert "start_time" not in executed.metadata.papermill and "duration" not in executed.metadata.papermill
    assert all("start_time" not in cell.metadata.get("papermill", {}) for cell in executed.cells)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert [c.id for c in injected] == ["injected-parameters"]
    staged = nbformat.read(str(root / "_staging/chapters/results.ipynb"), as_version=4)
    shown = staged.cells[-1].outputs[0].data["text/plain"]
    assert " at 0x" in shown and "start_time" in staged.metadata.papermill, "the build itself is left as it was"
    assert executed.cells[-1].outputs[0].data["text/plain"] == shown.split(" at 0x")[0] + ">"
    assert (folder / "html/_sources/chapters/results.ipynb").read_bytes() == \
        (folder / "notebooks/chapters/results.ipynb").read_bytes()
    readme = (folder / "README.md").read_text()
    assert f"release {meta.version}" in readme and "`smoke` profile" in readme and "(2 runs, 5 rows)" in readme


def test_packing_twice_gives_the_same_bytes_and_the_time_stamp_only_changes_the_zip(
        built, tmp_path: Path, monkeypatch) -> None:
    first = _pack(built, tmp_path / "a", "1700000000", monkeypatch)
    second = _pack(built, tmp_path / "b", "1700000000", monkeypatch)
    later = _pack(built, tmp_path / "c", "1800000000", monkeypatch)
    assert first.read_bytes() == second.read_bytes()
    assert hashlib.sha256(later.read_bytes()).digest() != hashlib.sha256(first.read_bytes()).digest()
    sums = [zipfile.ZipFile(p).read(f"{p.stem}/SHA256SUMS") for p in (first, later)]
    assert sums[0] == sums[1]


def test_a_build_at_another_profile_is_refused(built, tmp_path: Path) -> None:
    with pytest.raises(release.ReleaseError, match="executed at profile 'smoke', not 'cpu'"):
        release.build_release(built[0], "cpu", built[1], tmp_path)
    assert not list(tmp_path.iterdir()), "nothing is written for a refused release"


def test_stale_metadata_and_missing_runs_are_refused(built, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(built[0], root)
    version = read_metadata(root).version
    (root / "CITATION.cff").write_text((root / "CITATION.cff").read_text().replace(f"\nversion: {version}\n",
                                                                                   "\nversion: 9.9.9\n"))
    with pytest.raises(release.ReleaseError, match=r"CITATION.cff: out of step with pyproject.toml"):
        release.build_release(root, "smoke", built[1], tmp_path / "dist")
    sync(root)
    with pytest.raises(release.ReleaseError, match="no finished runs"):
        release.build_release(root, "smoke", tmp_path / "no-runs", tmp_path / "dist")
    assert not (tmp_path / "dist").exists()


def test_a_results_chapter_without_the_claims_glue_is_refused(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("1 + 1")]
    nbformat.write(nb, str(tmp_path / "results.ipynb"))
    with pytest.raises(release.ReleaseError, match=f"glues no '{release.CLAIMS_GLUE}'"):
        release.claims_table(tmp_path / "results.ipynb")
