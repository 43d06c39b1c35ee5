"""The preprocessed-volume cache: a second load does no resampling; keys follow files and settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
from data_layouts import channel_values, write_nifti

from volbias.data import DataError, load_task
from volbias.data import preprocessing


def forbid_resampling(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("resampling was called")

    monkeypatch.setattr(preprocessing, "resample", boom)


def test_second_load_does_no_resampling(sample_root, monkeypatch, isolated_cache):
    first = load_task("BR18-sample", root=sample_root, spacing=2.0)
    assert list((isolated_cache / "preprocessed" / "BR18-sample").glob("*.npz"))
    forbid_resampling(monkeypatch)
    second = load_task("BR18-sample", root=sample_root, spacing=2.0)
    for a, b in zip(first, second):
        assert a.id == b.id and a.meta == b.meta
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.label, b.label)
        np.testing.assert_array_equal(a.mask, b.mask)


def test_new_settings_or_changed_file_miss_the_cache(sample_root, monkeypatch):
    load_task("BR18-sample", root=sample_root, spacing=2.0)
    forbid_resampling(monkeypatch)
    with pytest.raises(AssertionError):
        load_task("BR18-sample", root=sample_root, spacing=3.0)
    with pytest.raises(AssertionError):
        load_task("BR18-sample", root=sample_root, spacing=2.0, crop="none")
    write_nifti(sample_root / "case_1" / "T1.nii.gz", channel_values(1) + 1)
    with pytest.raises(AssertionError):
        load_task("BR18-sample", root=sample_root, spacing=2.0)


def test_cache_dir_option(sample_root, tmp_path):
    load_task("BR18-sample", root=sample_root, cache_dir=tmp_path / "elsewhere", crop="none")
    assert len(list((tmp_path / "elsewhere" / "preprocessed" / "BR18-sample").glob("*.npz"))) == 3


def test_nothing_is_written_when_an_input_is_bad(sample_root, isolated_cache):
    data = channel_values(1)
    data[0, 0, 0] = np.nan
    write_nifti(sample_root / "case_2" / "T1.nii.gz", data)
    with pytest.raises(DataError):
        load_task("BR18-sample", root=sample_root)
    assert not list(isolated_cache.glob("preprocessed/**/*.npz"))


@pytest.mark.parametrize("damage", ["truncate", "flip a byte", "not an npz", "empty"])
def test_corrupt_cache_file_is_recomputed_and_replaced(sample_root, monkeypatch, isolated_cache, damage):
    first = load_task("BR18-sample", root=sample_root, spacing=2.0)
    entries = sorted((isolated_cache / "preprocessed" / "BR18-sample").glob("*.npz"))
    assert len(entries) == 3
    bad = entries[1]
    raw = bad.read_bytes()
    bad.write_bytes({"truncate": raw[: len(raw) // 2], "flip a byte": raw[:300] + bytes([raw[300] ^ 0xFF]) + raw[301:],
                     "not an npz": b"this is not an npz file", "empty": b""}[damage])
    resampled = []
    original = preprocessing.resample
    monkeypatch.setattr(preprocessing, "resample", lambda *a, **k: resampled.append(1) or original(*a, **k))
    second = load_task("BR18-sample", root=sample_root, spacing=2.0)
    assert resampled  # only the damaged case was preprocessed again ...
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.label, b.label)
    assert bad.read_bytes() == raw  # ... and its entry written anew
    forbid_resampling(monkeypatch)
    load_task("BR18-sample", root=sample_root, spacing=2.0)


@pytest.mark.parametrize("book", ["{not json", "[1, 2, 3]", '{"case_0/T1.nii.gz": [1, 2]}'])
def test_corrupt_digest_book_is_rebuilt(sample_root, isolated_cache, book):
    first = load_task("BR18-sample", root=sample_root, spacing=2.0)
    (digest_book,) = (isolated_cache / "digests").glob("*.json")
    digest_book.write_text(book)
    again = load_task("BR18-sample", root=sample_root, spacing=2.0)
    assert [c.id for c in again] == [c.id for c in first]
    np.testing.assert_array_equal(again.cases[1].image, first.cases[1].image)
    size = (sample_root / "case_1" / "T1.nii.gz").stat().st_size
    assert json.loads(digest_book.read_text())["case_1/T1.nii.gz"][0] == size
