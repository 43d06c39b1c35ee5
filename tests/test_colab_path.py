"""The Colab path: a chapter opened on its own in a fresh runtime that has torch, its install cell installing the
library.

The runtime is a new virtual environment holding only torch and a Jupyter kernel (what Colab has that matters
here); an IPython start-up file marks ``google.colab`` as imported, as Colab's kernel does, so the chapter's
install cell runs for real: it pip-installs the pinned release, found as the wheel built from this checkout
(``PIP_FIND_LINKS``) with its dependencies from the package index. The chapter is copied alone into an empty
folder and executed there with papermill at the smoke profile, reading the real data from the mirror. A
chapter that needs a file of the repository, or a module the release does not install, fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from publish_build import build_dist
from volbias.bookbuild import check_executed, read_glued

BIN = Path(sys.executable).parent
CHAPTER = Path("chapters/data.ipynb")
"""The chapter run on the Colab path: cheap at the smoke profile and it reads both real data sets."""
COLAB_STANDIN = (
    "# Stands in for Google Colab, whose kernel has imported google.colab before the first cell runs.\n"
    "import sys, types\n"
    'sys.modules["google.colab"] = types.ModuleType("google.colab")\n'
)


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(command[:4])}...:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def colab_like_runtime(folder: Path) -> Path:
    """A fresh virtual environment with only torch (the version of this environment) and a Jupyter kernel."""
    _run([sys.executable, "-m", "venv", str(folder)], timeout=300)
    python = folder / "bin" / "python"
    torch_release = f"torch=={torch.__version__.split('+')[0]}"
    _run([str(python), "-m", "pip", "install", "-q", "--no-compile", torch_release, "ipykernel"], timeout=1200)
    return python


def kernel_spec(jupyter_dir: Path, python: Path, ipython_dir: Path) -> str:
    """A kernel named ``colab`` that runs ``python`` with the google.colab stand-in; returns its name."""
    startup = ipython_dir / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-colab.py").write_text(COLAB_STANDIN)
    spec = jupyter_dir / "kernels" / "colab"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab-like runtime", "language": "python", "env": {"IPYTHONDIR": str(ipython_dir)},
    }))
    return "colab"


def _torch_state(runtime: Path) -> list[tuple[str, int]]:
    """The runtime's installed torch: its dist-info folder and the time stamps of its RECORD and package
    (a reinstall or an upgrade changes them)."""
    site = next((runtime / "lib").glob("python3*/site-packages"))
    return [(p.relative_to(site).as_posix(), p.stat().st_mtime_ns)
            for p in sorted(site.glob("torch-*.dist-info/RECORD")) + [site / "torch" / "__init__.py"]]


@pytest.mark.slow
def test_a_chapter_runs_alone_in_a_fresh_colab_like_runtime(repo_root: Path, data_mirror, tmp_path: Path) -> None:
    mirror = data_mirror.require("brats18-sample", "lidc-idri-slices", "paper-splits")
    version = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]["version"]
    wheels = build_dist(repo_root, tmp_path / "package")
    python = colab_like_runtime(tmp_path / "runtime")
    torch_before = _torch_state(tmp_path / "runtime")
    assert len(torch_before) == 2
    kernel = kernel_spec(tmp_path / "jupyter", python, tmp_path / "ipython")

    notebook_dir = tmp_path / "colab"
    notebook_dir.mkdir()
    chapter = notebook_dir / CHAPTER.name
    chapter.write_bytes((repo_root / CHAPTER).read_bytes())
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "MPLBACKEND")}
    env.update({
        "JUPYTER_PATH": str(tmp_path / "jupyter"),
        "PIP_FIND_LINKS": " ".join(filter(None, [str(wheels), os.environ.get("PIP_FIND_LINKS", "")])),
        "VOLBIAS_DATA_MIRROR": str(mirror), "VOLBIAS_CACHE_DIR": str(tmp_path / "cache"),
        "VOLBIAS_RUNS_DIR": str(tmp_path / "runs"),
    })
    executed = tmp_path / "executed.ipynb"
    _run([str(BIN / "papermill"), str(chapter), str(executed), "-p", "profile", "smoke", "-k", kernel,
          "--cwd", str(notebook_dir), "--no-progress-bar", "--execution-timeout", "1200"],
         env=env, cwd=notebook_dir, timeout=2400)

    assert check_executed([executed]) == []
    outputs = [o for cell in json.loads(executed.read_text())["cells"] for o in cell.get("outputs", [])]
    assert any(mime.endswith("image/png") for o in outputs for mime in o.get("data", {})), "no figure was drawn"
    nodules = sum(1 for p in (mirror / "lidc-idri-slices").glob("*/*") if (p / "images").is_dir())
    assert read_glued(executed)["data_lidc_n_nodules"] == nodules

    installed = _run([str(python), "-c", "import volbias; print(volbias.__version__); print(volbias.__file__)"],
                     cwd=notebook_dir).stdout.split()
    assert installed[0] == version, "the install cell installed another version than the book's"
    assert Path(installed[1]).is_relative_to(tmp_path / "runtime"), "volbias came from outside the runtime"
    assert _torch_state(tmp_path / "runtime") == torch_before, "the install cell replaced the runtime's torch"
