"""Fixtures for the data-layer tests: tiny NIfTI/PNG files written in the official layouts, isolated caches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from data_layouts import (
    BRATS_CASES, IS17_AFFINE, IS17_CASES, IS17_TOKENS, IS18_CASES, IS18_TOKENS, SAMPLE_IDS, blob_label,
    channel_values, disk, write_nifti, write_png,
)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """Every test gets its own cache directory."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("VOLBIAS_CACHE_DIR", str(cache))
    return cache


@pytest.fixture
def mirror(data_mirror, monkeypatch) -> Path:
    """Point VOLBIAS_DATA_MIRROR at the shared read-only mirror (which must hold the BraTS sample)."""
    root = data_mirror.require("brats18-sample")
    monkeypatch.setenv("VOLBIAS_DATA_MIRROR", str(root))
    return root


@pytest.fixture(scope="session")
def lidc_cache(data_cache) -> Path:
    """A cache shared by the LIDC loads of a session (the first load reads 13 150 PNGs once; the mirror's
    verification has already remembered their digests there)."""
    return data_cache


@pytest.fixture
def brats_root(tmp_path) -> Path:
    """Two BraTS 2018 cases in the official layout; seg uses the labels {0, 1, 2, 4}."""
    root = tmp_path / "MICCAI_BraTS_2018_Data_Training"
    seg = blob_label() * 2
    seg[6, 5, 4] = 4
    seg[6, 5, 5] = 1
    for grade, cid in BRATS_CASES.items():
        for k, m in enumerate(("flair", "t1", "t1ce", "t2")):
            write_nifti(root / grade / cid / f"{cid}_{m}.nii.gz", channel_values(k))
        write_nifti(root / grade / cid / f"{cid}_seg.nii.gz", seg.astype(np.int16))
    return root


@pytest.fixture
def isles17_root(tmp_path) -> Path:
    """Two ISLES 2017 training cases in the challenge layout (.nii per modality, one folder each)."""
    root = tmp_path / "ISLES2017_Training"
    for case, sid in IS17_CASES.items():
        for k, token in enumerate(IS17_TOKENS):
            name = f"VSD.Brain.XX.O.{token}.{int(sid) + k}"
            write_nifti(root / case / name / f"{name}.nii", channel_values(k), IS17_AFFINE)
        name = f"VSD.Brain.XX.O.OT.{int(sid) + 9}"
        write_nifti(root / case / name / f"{name}.nii", blob_label().astype(np.uint8), IS17_AFFINE)
    return root


@pytest.fixture
def isles18_root(tmp_path) -> Path:
    """Two ISLES 2018 training cases (CT_4DPWI present and ignored); CT is -100 in the first 3 x-slices."""
    root = tmp_path / "ISLES2018_Training" / "TRAINING"
    for case, sid in IS18_CASES.items():
        for k, token in enumerate((*IS18_TOKENS, "CT_4DPWI")):
            name = f"SMIR.Brain.XX.O.{token}.{int(sid) + k}"
            data = channel_values(k)
            if token == "CT":
                data[:3] = -100.0
            write_nifti(root / case / name / f"{name}.nii", data)
        name = f"SMIR.Brain.XX.O.OT.{int(sid) + 9}"
        write_nifti(root / case / name / f"{name}.nii", blob_label().astype(np.uint8))
    return root.parent


@pytest.fixture
def sample_root(tmp_path) -> Path:
    """Three cases in the public BraTS sample layout (FLAIR, T1, GT_W, subject_id.txt)."""
    root = tmp_path / "brats18-sample"
    for k, sid in enumerate(SAMPLE_IDS):
        d = root / f"case_{k}"
        write_nifti(d / "FLAIR.nii.gz", channel_values(0))
        write_nifti(d / "T1.nii.gz", channel_values(1))
        write_nifti(d / "GT_W.nii.gz", blob_label())
        (d / "subject_id.txt").write_text(f"Case_id: {sid}\nSubject_id: {sid}")
    return root


@pytest.fixture
def lidc_root(tmp_path) -> Path:
    """Two patients in the LIDC-IDRI slices layout; nodule-0 of patient 1 has two slices (slice-5 larger)."""
    root = tmp_path / "lidc"
    rng = np.random.default_rng(0)
    layout = {
        ("LIDC-IDRI-0001", "nodule-0"): {"slice-4": (3, 3, 0, 0), "slice-5": (6, 5, 4, 0)},
        ("LIDC-IDRI-0001", "nodule-1"): {"slice-2": (4, 4, 4, 4)},
        ("LIDC-IDRI-0002", "nodule-0"): {"slice-9": (5, 0, 0, 0)},
    }
    for (pid, nod), slices in layout.items():
        for sl, radii in slices.items():
            write_png(root / pid / nod / "images" / f"{sl}.png", rng.integers(0, 256, (128, 128)))
            for r, rad in enumerate(radii):
                write_png(root / pid / nod / f"mask-{r}" / f"{sl}.png", disk(rad) if rad else np.zeros((128, 128)))
    return root

