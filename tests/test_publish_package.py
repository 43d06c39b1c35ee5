"""The installable package: wheel and sdist that twine accepts, registry files in the wheel, the version."""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

import volbias
from publish_build import build_dist

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def dist(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and the wheel, built by ``python -m build`` as a release builds them."""
    return build_dist(repo_root, tmp_path_factory.mktemp("package"))


def _pyproject(repo_root: Path) -> dict:
    return tomllib.loads((repo_root / "pyproject.toml").read_text())


def test_wheel_and_sdist_pass_twine_check(dist: Path, repo_root: Path) -> None:
    version = _pyproject(repo_root)["project"]["version"]
    files = sorted(p.name for p in dist.iterdir())
    assert files == [f"volbias-{version}-py3-none-any.whl", f"volbias-{version}.tar.gz"]
    result = subprocess.run([str(BIN / "twine"), "check", "--strict", *map(str, dist.iterdir())],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_wheel_carries_every_registry_file_and_the_declared_metadata(dist: Path, repo_root: Path) -> None:
    wheel = next(dist.glob("*.whl"))
    registry = repo_root / "src" / "volbias" / "registry"
    on_disk = {f"volbias/registry/{p.name}" for p in registry.iterdir() if p.is_file() and p.suffix != ".pyc"}
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert on_disk <= names, f"missing from the wheel: {sorted(on_disk - names)}"
        for name in on_disk:
            assert archive.read(name) == (repo_root / "src" / name).read_bytes(), name
        metadata = Parser().parsestr(archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode())
    project = _pyproject(repo_root)["project"]
    assert metadata["Version"] == project["version"]
    urls = dict(u.split(", ", 1) for u in metadata.get_all("Project-URL"))
    assert urls == project["urls"]
    assert 'extra == "book"' in " ".join(metadata.get_all("Requires-Dist"))
    with tarfile.open(next(dist.glob("*.tar.gz"))) as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if "/" in m.name}
    assert {f"src/{name}" for name in on_disk} <= members and "pyproject.toml" in members


def test_volbias_version_prints_the_version_of_pyproject(repo_root: Path) -> None:
    version = _pyproject(repo_root)["project"]["version"]
    result = subprocess.run([str(BIN / "volbias"), "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == f"volbias {version}"
    assert volbias.__version__ == version, "the installed metadata is stale: reinstall (make env)"
