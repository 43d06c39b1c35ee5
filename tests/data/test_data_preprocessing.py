"""Preprocessing: resampling grid and interpolation, label binarisation, mask rule, normalisation, crop/pad."""

from __future__ import annotations

import numpy as np
import pytest
from data_layouts import write_nifti

from volbias.data import get_spec, load_task
from volbias.data.preprocessing import patch_size, preprocess, resample


def test_resample_is_linear_in_world_coordinates():
    """A ramp in voxel index x stays the same ramp when evaluated at the new voxel centres."""
    affine = np.array([[-1.0, 0, 0, 30], [0, 1.5, 0, -4], [0, 0, 3.0, 2], [0, 0, 0, 1]])
    shape = (30, 20, 10)
    ramp = np.broadcast_to(np.arange(shape[0], dtype=np.float32)[:, None, None], shape)[None]
    out, new_affine = resample(np.ascontiguousarray(ramp), affine, 2.0)
    np.testing.assert_allclose(np.abs(np.diag(new_affine)[:3]), [2.0, 2.0, 2.0])
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in out.shape[1:]], indexing="ij"), -1).reshape(-1, 3)
    world = idx @ new_affine[:3, :3].T + new_affine[:3, 3]
    source = (world - affine[:3, 3]) @ np.linalg.inv(affine[:3, :3]).T
    inside = np.all((source >= 0) & (source <= np.array(shape) - 1), axis=1)
    np.testing.assert_allclose(out[0].reshape(-1)[inside], source[inside, 0], atol=1e-3)


def test_label_binarised_and_volume_kept():
    spec = get_spec("BR18-sample")
    shape = (40, 40, 40)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"))
    ball = (np.sqrt(((grid - 19.5) ** 2).sum(0)) <= 12).astype(np.float32)
    image = np.stack([np.full(shape, 500.0, np.float32), np.full(shape, 700.0, np.float32)])
    out = preprocess(image, ball, np.eye(4), spec, 2.0, crop="none")
    assert set(np.unique(out["label"])) <= {0.0, 1.0}
    assert out["label"].sum() * 8 == pytest.approx(ball.sum(), rel=0.05)  # ml preserved at 2 mm
    np.testing.assert_allclose(out["image"][:, 5, 5, 5], [(500 - 420.884688) / 1320.645043,
                                                         (700 - 568.786868) / 1160.682202], rtol=1e-5)


def test_mask_rule_flair_positive():
    spec = get_spec("BR18-sample")
    flair = np.zeros((20, 20, 20), np.float32)
    flair[4:16, 4:16, 4:16] = 300.0
    out = preprocess(np.stack([flair, flair]), np.zeros_like(flair), np.eye(4), spec, 1.0, crop="none")
    np.testing.assert_array_equal(out["mask"], flair > 0)


@pytest.mark.parametrize("spacing, size", [(2.0, (136, 136, 82)), (4.0, (68, 68, 41))])
def test_paper_patch(spacing, size):
    assert patch_size(spacing) == size
    spec = get_spec("BR18-sample")
    flair = np.ones((30, 30, 30), np.float32)
    out = preprocess(np.stack([flair, flair]), np.zeros_like(flair), np.eye(4), spec, spacing, crop="paper")
    assert out["image"].shape == (2, *size) and out["mask"].shape == size and out["label"].shape == size
    # the mask holds exactly the grid points inside the source's extent (0..29 mm); padding lies outside
    assert out["mask"].sum() == (np.floor(29 / spacing) + 1) ** 3
    # padding carries the raw background 0, i.e. -shift / scale after normalisation
    np.testing.assert_allclose(out["image"][:, 0, 0, 0], [-420.884688 / 1320.645043, -568.786868 / 1160.682202],
                               rtol=1e-5)


def test_foreground_crop_is_the_mask_bounding_box():
    spec = get_spec("BR18-sample")
    flair = np.zeros((20, 20, 20), np.float32)
    flair[3:9, 5:15, 2:19] = 10.0
    out = preprocess(np.stack([flair, flair]), np.zeros_like(flair), np.eye(4), spec, 1.0, crop="foreground")
    assert out["image"].shape == (2, 6, 10, 17) and out["mask"].all()


def test_load_records_grid(sample_root):
    task = load_task("BR18-sample", root=sample_root, spacing=3.0)
    case = task.cases[0]
    assert case.spacing == (3.0, 3.0, 3.0) and case.meta["grid_mm"] == 3.0 and task.spec.spacing_mm == 3.0
    assert case.image.shape == (2, *patch_size(3.0))
    assert case.voxel_volume_ml == pytest.approx(0.027)
    assert case.expected_volume == pytest.approx(case.label.sum() * 0.027)


def test_native_spacing_from_the_affine(tmp_path, sample_root):
    affine = np.diag([0.5, 0.5, 0.5, 1.0])
    for name in ("FLAIR", "T1", "GT_W"):
        path = sample_root / "case_0" / f"{name}.nii.gz"
        import nibabel as nib

        write_nifti(path, np.asarray(nib.load(path).dataobj), affine)
    case = load_task("BR18-sample", root=sample_root, spacing=1.0, crop="none").cases[0]
    assert case.meta["native_spacing"] == (0.5, 0.5, 0.5)
    assert np.all(np.abs((np.array(case.image.shape[1:]) - 1) * 1.0 - (np.array([12, 10, 8]) - 1) * 0.5) <= 1.0)
