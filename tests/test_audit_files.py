"""Writers of small audit inputs (NIfTI and nnU-Net-style files) shared by the audit tests, and the tests of
the audit's readers: axis order, channels, spacing, orientation and the nnU-Net properties pickle."""

from __future__ import annotations

import pickle
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from volbias.audit.errors import AuditError
from volbias.audit.readers import (
    nnunet_affine,
    nnunet_spacing,
    read_label_nifti,
    read_probability_nifti,
    read_probability_nnunet,
)


def write_nifti(path: Path, data: np.ndarray, spacing=(1.0, 1.0, 1.0), unit: str = "mm") -> Path:
    """``data`` in nibabel's (x, y, z[, c]) order, with a diagonal affine of ``spacing`` (mm)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.asarray(data), np.diag([*spacing, 1.0]))
    img.header.set_xyzt_units(xyz=unit)
    nib.save(img, path)
    return path


def write_nnunet(folder: Path, case: str, foreground: np.ndarray, spacing=(1.0, 1.0, 1.0),
                 keys: str = "both", n_channels: int = 2) -> Path:
    """nnU-Net v2 ``--save_probabilities`` files of one case from a foreground map in (x, y, z) order.

    ``probabilities`` is (C, z, y, x) float16 (background first); the pickle holds ``spacing`` (z, y, x)
    and/or ``sitk_stuff`` (x, y, z) as nnU-Net's SimpleITK reader stores them for a NIfTI file with the
    affine ``diag(spacing)`` that :func:`write_nifti` writes (``keys``: "both", "spacing" or "sitk"):
    ITK's LPS+ direction of a RAS+ file is ``diag(-1, -1, 1)``.  Spacing-only pickles hold no orientation.
    """
    folder.mkdir(parents=True, exist_ok=True)
    fg = np.asarray(foreground, dtype=np.float64).transpose(2, 1, 0)
    channels = [1.0 - fg, fg] if n_channels == 2 else [1.0 - fg] + [fg / (n_channels - 1)] * (n_channels - 1)
    np.savez_compressed(folder / f"{case}.npz", probabilities=np.stack(channels).astype(np.float16))
    properties: dict = {}
    if keys in ("both", "spacing"):
        properties["spacing"] = [float(s) for s in spacing[::-1]]
    if keys in ("both", "sitk"):
        properties["sitk_stuff"] = {"spacing": tuple(float(s) for s in spacing), "origin": (-0.0, -0.0, 0.0),
                                    "direction": (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)}
    properties["shape_before_cropping"] = tuple(int(s) for s in fg.shape)
    properties["bbox_used_for_cropping"] = [[0, int(s)] for s in fg.shape]
    with (folder / f"{case}.pkl").open("wb") as handle:
        pickle.dump(properties, handle)
    return folder / f"{case}.npz"


def asymmetric_map(shape=(6, 5, 4)) -> np.ndarray:
    """A probability map whose every voxel differs, so any axis mix-up changes it."""
    values = np.arange(1, int(np.prod(shape)) + 1, dtype=np.float64)
    return (values / (values.max() + 1)).reshape(shape)


def test_nifti_3d_map_keeps_axis_order_and_spacing(tmp_path: Path) -> None:
    prob = asymmetric_map()
    volume = read_probability_nifti(write_nifti(tmp_path / "a.nii.gz", prob.astype(np.float32), (0.5, 1.0, 2.5)))
    np.testing.assert_array_equal(volume.channels[0], prob.astype(np.float32))
    assert volume.channels.shape == (1, *prob.shape)
    assert volume.spacing == pytest.approx((0.5, 1.0, 2.5))
    np.testing.assert_allclose(volume.affine, np.diag([0.5, 1.0, 2.5, 1.0]))


def test_nifti_spacing_in_meters_is_converted_to_mm(tmp_path: Path) -> None:
    volume = read_label_nifti(write_nifti(tmp_path / "m.nii", np.zeros((2, 2, 2), np.uint8), (0.001, 0.002, 0.003),
                                          unit="meter"))
    assert volume.spacing == pytest.approx((1.0, 2.0, 3.0))


def test_nifti_softmax_channels_are_read_channel_first(tmp_path: Path) -> None:
    prob = asymmetric_map()
    stacked = np.stack([1 - prob, prob * 0.5, prob * 0.5], axis=-1).astype(np.float32)
    volume = read_probability_nifti(write_nifti(tmp_path / "s.nii.gz", stacked))
    assert volume.channels.shape == (3, *prob.shape)
    for c in range(3):
        np.testing.assert_array_equal(volume.channels[c], stacked[..., c])


def test_nifti_vector_layout_x_y_z_1_c(tmp_path: Path) -> None:
    prob = asymmetric_map()
    path = write_nifti(tmp_path / "v.nii.gz", np.stack([1 - prob, prob], axis=-1)[:, :, :, None, :].astype(np.float32))
    np.testing.assert_allclose(read_probability_nifti(path).channels[1], prob, rtol=1e-6)


@pytest.mark.parametrize("keys", ["both", "spacing", "sitk"])
def test_nnunet_probabilities_are_transposed_back_to_nibabel_order(tmp_path: Path, keys: str) -> None:
    prob = asymmetric_map()
    path = write_nnunet(tmp_path, "case", prob, spacing=(0.7, 0.9, 3.0), keys=keys)
    volume = read_probability_nnunet(path)
    assert volume.channels.shape == (2, *prob.shape)
    np.testing.assert_array_equal(volume.channels[1], prob.astype(np.float16))
    assert volume.spacing == pytest.approx((0.7, 0.9, 3.0))
    if keys == "spacing":
        assert volume.affine is None
    else:  # ITK's LPS direction diag(-1, -1, 1) is RAS+ diag(1, 1, 1)
        np.testing.assert_allclose(volume.affine, np.diag([0.7, 0.9, 3.0, 1.0]))


def test_nnunet_pickle_without_spacing(tmp_path: Path) -> None:
    path = tmp_path / "c.pkl"
    path.write_bytes(pickle.dumps({"shape_before_cropping": (2, 2, 2)}))
    with pytest.raises(AuditError, match=r"c\.pkl: no voxel spacing"):
        nnunet_spacing(path)


class _Payload:
    """A pickled object whose rebuilding would run code."""

    def __reduce__(self):
        return (print, ("this must not run",))


def test_nnunet_pickle_cannot_run_code(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"spacing": [1.0, 1.0, 1.0], "x": _Payload()}))
    with pytest.raises(AuditError, match=r"evil\.pkl: not a readable nnU-Net properties pickle"):
        nnunet_spacing(path)
    assert "this must not run" not in capsys.readouterr().out


def test_nnunet_pickle_with_numpy_values(tmp_path: Path) -> None:
    path = tmp_path / "np.pkl"
    path.write_bytes(pickle.dumps({"spacing": np.array([2.5, 1.25, 0.5]), "other": np.float64(3.0)}))
    assert nnunet_spacing(path) == pytest.approx((0.5, 1.25, 2.5))


def test_nnunet_v1_archive_is_named(tmp_path: Path) -> None:
    np.savez_compressed(tmp_path / "v1.npz", softmax=np.zeros((2, 2, 2, 2), np.float16))
    with pytest.raises(AuditError, match="nnU-Net v1 'softmax' archive"):
        read_probability_nnunet(tmp_path / "v1.npz")


def test_nnunet_nibabel_reader_affines(tmp_path: Path) -> None:
    """NibabelIO stores the file's affine; NibabelIOWithReorient the reoriented one, in which the map is stored."""
    original, reoriented = np.diag([-2.0, -1.0, 3.0, 1.0]), np.diag([2.0, 1.0, 3.0, 1.0])
    assert np.array_equal(nnunet_affine(tmp_path / "a.pkl", {"nibabel_stuff": {"original_affine": original}}),
                          original)
    stuff = {"nibabel_stuff": {"original_affine": original, "reoriented_affine": reoriented}}
    assert np.array_equal(nnunet_affine(tmp_path / "a.pkl", stuff), reoriented)


def test_nnunet_sitk_affine_of_an_oblique_lps_grid(tmp_path: Path) -> None:
    """The RAS+ affine from ITK's LPS+ origin and row-major direction, checked on the world position of one voxel
    computed by hand: x_LPS = origin + D @ (spacing * index), x_RAS = (-x, -y, z)."""
    angle = 0.3
    direction = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1.0]])
    spacing, origin, index = np.array([0.8, 0.9, 2.5]), np.array([10.0, -20.0, 30.0]), np.array([3.0, 5.0, 7.0])
    affine = nnunet_affine(tmp_path / "a.pkl", {"sitk_stuff": {"spacing": tuple(spacing), "origin": tuple(origin),
                                                               "direction": tuple(direction.ravel())}})
    lps = origin + direction @ (spacing * index)
    np.testing.assert_allclose(affine @ [*index, 1.0], [-lps[0], -lps[1], lps[2], 1.0])
