"""Sources, mirror and download: sha256 lists, verification, a tampered file is refused. Never uses the network."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from volbias.data import DataError, load_task
from volbias.data import cache as cache_module
from volbias.data import fetch
from volbias.data.fetch import BRATS_SAMPLE_URL, REQUIRE_DATA_ENV, SOURCES, download, locate, sha256_list, verify


@pytest.fixture(scope="module")
def shared_data(data_mirror) -> Path:
    """The mirror root; this module reads its brats18-sample folder only (checked on its own)."""
    return data_mirror.require("brats18-sample")


def read_sums(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        digest, rel = line.split(maxsplit=1)
        out[rel.removeprefix("./")] = digest
    return out


@pytest.mark.parametrize("name", ["brats18-sample", "lidc-idri-slices"])
def test_sha256_lists_match_the_mirror(data_mirror, name):
    sums = read_sums(data_mirror.require(name) / name / "SHA256SUMS")
    sums.pop("LICENSE.Pulmoseg", None)
    assert sha256_list(name) == sums


def link_mirror(shared_data: Path, tmp_path: Path) -> Path:
    """A mirror of the BraTS sample made of symbolic links to the shared files."""
    mirror = tmp_path / "mirror"
    for rel in sha256_list("brats18-sample"):
        target = mirror / "brats18-sample" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(shared_data / "brats18-sample" / rel)
    return mirror


def tamper(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.unlink()
    path.write_bytes(bytes(data))


def no_download(monkeypatch) -> None:
    """Make any download attempt fail the test: a mirror folder is used as it is, or refused."""
    def refuse(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(fetch, "download", refuse)


def test_tampered_mirror_file_is_refused(shared_data, tmp_path, monkeypatch):
    mirror = link_mirror(shared_data, tmp_path)
    monkeypatch.setenv("VOLBIAS_DATA_MIRROR", str(mirror))
    no_download(monkeypatch)
    bad = mirror / "brats18-sample" / "case_3" / "T1.nii.gz"
    tamper(bad)
    with pytest.raises(DataError, match="sha256 mismatch") as info:
        load_task("BR18-sample", max_cases=1, spacing=4.0)
    assert str(bad) in str(info.value)


def test_verification_is_remembered_until_a_file_changes(shared_data, tmp_path, monkeypatch, isolated_cache):
    """Verified digests are remembered in the (isolated) cache; a file whose modification time changed is
    hashed again, even with the same content, and a changed content is named."""
    mirror = link_mirror(shared_data, tmp_path)
    monkeypatch.setenv("VOLBIAS_DATA_MIRROR", str(mirror))
    folder, verified = locate("brats18-sample")
    assert verified and folder == mirror / "brats18-sample"
    hashed: list[Path] = []
    real = cache_module.sha256_file

    def counting(path):
        hashed.append(Path(path))
        return real(path)

    with monkeypatch.context() as patch:
        patch.setattr(cache_module, "sha256_file", counting)
        verify(folder, sha256_list("brats18-sample"))  # all digests come from the cache
        assert hashed == []
        touched = folder / "case_3" / "T1.nii.gz"
        content = touched.read_bytes()
        touched.unlink()  # a link to the shared file: replaced by a copy (same content, another time stamp)
        touched.write_bytes(content)
        os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
        verify(folder, sha256_list("brats18-sample"))
        assert hashed == [touched]
    assert os.environ["VOLBIAS_CACHE_DIR"] == str(isolated_cache)  # still the test's own cache
    bad = folder / "case_0" / "subject_id.txt"
    tamper(bad)
    with pytest.raises(DataError, match=str(bad)):
        verify(folder, sha256_list("brats18-sample"))


def test_missing_mirror_file_is_named(shared_data, tmp_path, monkeypatch):
    mirror = link_mirror(shared_data, tmp_path)
    monkeypatch.setenv("VOLBIAS_DATA_MIRROR", str(mirror))
    no_download(monkeypatch)  # a partial mirror is an error, never a reason to download
    gone = mirror / "brats18-sample" / "case_9" / "GT_W.nii.gz"
    gone.unlink()
    with pytest.raises(DataError, match=str(gone)):
        load_task("BR18-sample")


def copying_downloader(shared_data: Path, calls: list[str], corrupt: bool = False):
    """A pooch downloader that serves the pinned URLs from the local mirror instead of the network."""

    def fetch(url: str, output_file, pooch_obj, check_only: bool = False):
        assert url.startswith(BRATS_SAMPLE_URL)
        calls.append(url)
        data = (shared_data / "brats18-sample" / url[len(BRATS_SAMPLE_URL):]).read_bytes()
        if corrupt:
            data = data[::-1]
        if hasattr(output_file, "write"):
            output_file.write(data)
        else:
            Path(output_file).write_bytes(data)

    return fetch


def test_download_path_with_pooch(shared_data, tmp_path, monkeypatch):
    monkeypatch.delenv("VOLBIAS_DATA_MIRROR", raising=False)
    monkeypatch.delenv(REQUIRE_DATA_ENV, raising=False)  # CI forbids downloads; this test serves them locally
    calls: list[str] = []
    folder = download("brats18-sample", tmp_path / "cache", copying_downloader(shared_data, calls))
    assert len(calls) == len(sha256_list("brats18-sample"))
    assert (folder / "case_0" / "FLAIR.nii.gz").read_bytes() == (
        shared_data / "brats18-sample" / "case_0" / "FLAIR.nii.gz").read_bytes()
    # already downloaded and verified: no further requests, and load_task uses the download
    download("brats18-sample", tmp_path / "cache", copying_downloader(shared_data, calls))
    assert len(calls) == len(sha256_list("brats18-sample"))
    task = load_task("BR18-sample", max_cases=1, spacing=4.0, cache_dir=tmp_path / "cache")
    assert task.cases[0].meta["verified"] and str(folder) in task.cases[0].meta["source"]


def test_tampered_download_is_refused(shared_data, tmp_path, monkeypatch):
    monkeypatch.delenv("VOLBIAS_DATA_MIRROR", raising=False)
    with pytest.raises(DataError, match="download failed") as info:
        download("brats18-sample", tmp_path / "cache", copying_downloader(shared_data, [], corrupt=True))
    assert BRATS_SAMPLE_URL in str(info.value)
    assert not list((tmp_path / "cache" / "downloads").rglob("*.nii.gz"))


@pytest.mark.parametrize("task, source", [("IS17", "isles2017"), ("IS18", "isles2018"), ("BR18", "brats2018")])
def test_unavailable_sets_explain_how_to_get_them(task, source, tmp_path, monkeypatch):
    monkeypatch.setenv("VOLBIAS_DATA_MIRROR", str(tmp_path))
    with pytest.raises(DataError) as info:
        load_task(task)
    assert SOURCES[source].folder in str(info.value) and "root=" in str(info.value)


def test_mirror_folder_of_official_layout_is_used(brats_root, monkeypatch):
    monkeypatch.setenv("VOLBIAS_DATA_MIRROR", str(brats_root.parent))
    task = load_task("BR18", crop="none")
    assert len(task) == 2 and not task.cases[0].meta["verified"]
    assert os.fspath(brats_root) in task.cases[0].meta["source"]


def test_root_copy_is_not_hash_checked(shared_data, tmp_path):
    root = tmp_path / "mine"
    shutil.copytree(shared_data / "brats18-sample" / "case_8", root / "case_8")
    task = load_task("BR18-sample", root=root, spacing=4.0)
    assert [c.id for c in task] == ["Brats18_CBICA_AQN_1"] and not task.cases[0].meta["verified"]


@pytest.mark.parametrize("name, task", [("brats18-sample", "BR18-sample"), ("lidc-idri-slices", "LIDC")])
def test_required_data_missing_from_the_mirror_is_an_error_not_a_download(name, task, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    (mirror / "other-data-set").mkdir(parents=True)  # a mirror, but without this data set
    monkeypatch.setenv("VOLBIAS_DATA_MIRROR", str(mirror))
    monkeypatch.setenv(REQUIRE_DATA_ENV, "1")
    no_download(monkeypatch)
    with pytest.raises(DataError, match=rf"{mirror / name}: not found, and {REQUIRE_DATA_ENV}=1 forbids"):
        load_task(task, cache_dir=tmp_path / "cache")
    monkeypatch.setenv("VOLBIAS_DATA_MIRROR", str(tmp_path / "nowhere"))  # no mirror at all
    with pytest.raises(DataError, match=rf"{tmp_path / 'nowhere' / name}: not found"):
        load_task(task, cache_dir=tmp_path / "cache")


def test_without_the_requirement_a_missing_data_set_is_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("VOLBIAS_DATA_MIRROR", str(tmp_path / "nowhere"))
    monkeypatch.delenv(REQUIRE_DATA_ENV, raising=False)
    asked = []
    monkeypatch.setattr(fetch, "download", lambda name, cache_dir, downloader: asked.append(name) or tmp_path)
    monkeypatch.setattr(fetch, "verify", lambda folder, expected, cache_dir: None)
    assert locate("lidc-idri-slices") == (tmp_path, True) and asked == ["lidc-idri-slices"]


def test_the_test_suite_checks_each_data_folder_on_its_own(shared_data, tmp_path, monkeypatch):
    """tests/data_mirror.py: an absent folder skips, or fails under VOLBIAS_REQUIRE_DATA=1 naming the folder;
    a folder with a missing or changed file fails (a partial mirror)."""
    from data_mirror import DataMirror

    partial = link_mirror(shared_data, tmp_path)  # holds brats18-sample only
    mirror = DataMirror(partial, tmp_path / "cache")
    monkeypatch.delenv(REQUIRE_DATA_ENV, raising=False)
    assert mirror.require("brats18-sample") == partial
    with pytest.raises(pytest.skip.Exception, match="lidc-idri-slices: not in the data mirror"):
        mirror.require("brats18-sample", "lidc-idri-slices")
    monkeypatch.setenv(REQUIRE_DATA_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=rf"{REQUIRE_DATA_ENV}=1 and .*lidc-idri-slices: not in the"):
        mirror.require("lidc-idri-slices")
    (partial / "brats18-sample" / "case_4" / "T1.nii.gz").unlink()
    with pytest.raises(pytest.fail.Exception, match=r"partial data mirror: .*case_4/T1.nii.gz: missing file"):
        DataMirror(partial, tmp_path / "cache").require("brats18-sample")
    (partial / "brats18-sample" / "case_4" / "T1.nii.gz").symlink_to(shared_data / "brats18-sample/case_4/T1.nii.gz")
    tamper(partial / "brats18-sample" / "case_5" / "GT_W.nii.gz")
    with pytest.raises(pytest.fail.Exception, match=r"partial data mirror: .*case_5/GT_W.nii.gz: sha256 mismatch"):
        DataMirror(partial, tmp_path / "cache").require("brats18-sample")
