"""The preprocessed-volume cache: a second load does no resampling; keys follow files and settings."""

from __future__ import annotations

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
