"""nnU-Net v2's prediction export, reproduced for the audit's tests, and its check against nnU-Net itself.

``pip install nnunetv2`` would replace the project's CPU torch by a CUDA build, so the tests do not depend on
it.  :func:`export_case` instead reproduces, step by step, what nnunetv2 2.8.1 does to one case between
reading the image and writing ``<case>.npz``, ``<case>.pkl`` and ``<case><file_ending>``:

- its reader-writers (``nnunetv2/imageio``): ``SimpleITKIO`` and ``SimpleITKIOWithReorient`` (SimpleITK,
  ``DICOMOrient`` to RAS and back), ``NibabelIO`` and ``NibabelIOWithReorient`` (nibabel ``as_reoriented``),
  with the properties each stores;
- the preprocessing that fixes the frame of the network's output (``DefaultPreprocessor.run_case_npy``):
  ``transpose_forward`` of the plans, then cropping to a bounding box;
- ``export_prediction_from_logits`` with ``save_probabilities=True``: softmax (label-based) or sigmoid
  (region-based) of the logits, argmax or the ``regions_class_order`` loop for the segmentation, the crop
  reverted (probabilities of the background channel 1 outside it for softmax), ``transpose_backward``,
  ``np.savez_compressed(probabilities=float32)``, the properties pickled, the segmentation written by the
  reader-writer.

The network's output is made from known probabilities on the image file's voxel grid: they are written as a
NIfTI file with the image's header and read by the same reader-writer, so the logits lie in the frame the
network would have worked in.  ``test_writer_matches_nnunet`` runs nnunetv2's own functions on the same
input where nnunetv2 can be imported (it is skipped elsewhere) and requires identical files.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

IO_CLASSES = ("SimpleITKIO", "SimpleITKIOWithReorient", "NibabelIO", "NibabelIOWithReorient")


def write_image(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    """A NIfTI file with ``data`` in stored (i, j, k) order and ``affine`` (RAS+, mm), as a scanner export."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.asarray(data), affine)
    img.header.set_xyzt_units(xyz="mm")
    nib.save(img, path)
    return path


def read_images(path: Path, io: str) -> tuple[np.ndarray, dict]:
    """``io().read_images((path,))`` of nnunetv2 2.8.1: the (1, a, b, c) array and the properties."""
    if io in ("SimpleITKIO", "SimpleITKIOWithReorient"):
        image = sitk.ReadImage(str(path))
        if io == "SimpleITKIOWithReorient":
            original = sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(image.GetDirection())
            image = sitk.DICOMOrient(image, "RAS")
        stuff = {"spacing": image.GetSpacing(), "origin": image.GetOrigin(), "direction": image.GetDirection()}
        if io == "SimpleITKIOWithReorient":
            stuff["original_orientation"] = original
        spacing = list(np.abs(list(image.GetSpacing())[::-1]))
        return sitk.GetArrayFromImage(image)[None].astype(np.float32), {"sitk_stuff": stuff, "spacing": spacing}
    img = nib.load(path)
    if io == "NibabelIO":
        stuff = {"original_affine": img.affine}
    else:
        original_affine = img.affine
        img = img.as_reoriented(io_orientation(original_affine))
        stuff = {"original_affine": original_affine, "reoriented_affine": img.affine}
    spacing = [float(i) for i in img.header.get_zooms()[::-1]]
    return img.get_fdata().transpose((2, 1, 0))[None].astype(np.float32), {"nibabel_stuff": stuff, "spacing": spacing}


def write_seg(seg: np.ndarray, path: Path, properties: dict, io: str) -> None:
    """``io().write_seg(seg, path, properties)`` of nnunetv2 2.8.1."""
    if io in ("SimpleITKIO", "SimpleITKIOWithReorient"):
        dtype = np.uint8 if io == "SimpleITKIOWithReorient" or np.max(seg) < 255 else np.uint16
        image = sitk.GetImageFromArray(seg.astype(dtype, copy=False))
        image.SetSpacing(properties["sitk_stuff"]["spacing"])
        image.SetOrigin(properties["sitk_stuff"]["origin"])
        image.SetDirection(properties["sitk_stuff"]["direction"])
        if io == "SimpleITKIOWithReorient":
            image = sitk.DICOMOrient(image, properties["sitk_stuff"]["original_orientation"])
        sitk.WriteImage(image, str(path), True)
        return
    seg = seg.transpose((2, 1, 0)).astype(np.uint8 if np.max(seg) < 255 else np.uint16, copy=False)
    stuff = properties["nibabel_stuff"]
    if io == "NibabelIO":
        nib.save(nib.Nifti1Image(seg, affine=stuff["original_affine"]), path)
        return
    image = nib.Nifti1Image(seg, affine=stuff["reoriented_affine"])
    back = ornt_transform(axcodes2ornt("RAS"), io_orientation(stuff["original_affine"]))
    nib.save(image.as_reoriented(back), path)


def dataset_json(labels: dict, regions_class_order: Sequence[int] | None = None, file_ending: str = ".nii.gz",
                 io: str | None = None) -> dict:
    """A dataset.json as nnU-Net v2 writes it into the prediction folder."""
    content = {"channel_names": {"0": "CT"}, "labels": labels, "numTraining": 20, "file_ending": file_ending}
    if regions_class_order is not None:
        content["regions_class_order"] = list(regions_class_order)
    if io is not None:
        content["overwrite_image_reader_writer"] = io
    return content


def write_markers(folder: Path, dataset: dict, io: str, transpose_forward: Sequence[int] = (0, 1, 2)) -> None:
    """dataset.json, plans.json and predict_from_raw_data_args.json, as nnUNetv2_predict writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=4))
    plans = {"dataset_name": "Dataset999_Test", "plans_name": "nnUNetPlans", "image_reader_writer": io,
             "transpose_forward": list(transpose_forward),
             "transpose_backward": [int(i) for i in np.argsort(transpose_forward)]}
    (folder / "plans.json").write_text(json.dumps(plans, indent=4))
    (folder / "predict_from_raw_data_args.json").write_text(json.dumps({"save_probabilities": True}))


def _channels(dataset: dict) -> tuple[bool, list]:
    labels = {k: v for k, v in dataset["labels"].items() if k != "ignore"}
    regions = any(isinstance(v, (list, tuple)) and len(v) > 1 for v in labels.values())
    return regions, [v for v in labels.values() if v != 0 and v != [0]] if regions else sorted(labels.values())


def network_input(folder: Path, case: str, image: Path, channel_maps: Sequence[np.ndarray], io: str,
                  region_based: bool, transpose_forward: Sequence[int], bbox: Sequence[Sequence[int]] | None
                  ) -> tuple[torch.Tensor, dict]:
    """The logits a network gives that predicts ``channel_maps`` (on the image file's grid, stored order) exactly,
    in its own frame, and the properties nnU-Net keeps: read as the image is, transposed, cropped."""
    scratch = folder / ".scratch"
    header = nib.load(image)
    frames = []
    for k, values in enumerate(channel_maps):
        frames.append(read_images(write_image(scratch / f"{case}_{k}.nii.gz", values.astype(np.float32),
                                              header.affine), io)[0][0])
    _, properties = read_images(image, io)
    data = np.stack(frames).transpose([0, *[i + 1 for i in transpose_forward]])
    properties["shape_before_cropping"] = data.shape[1:]
    bbox = [[0, s] for s in data.shape[1:]] if bbox is None else [list(map(int, b)) for b in bbox]
    data = data[(slice(None), *[slice(lo, hi) for lo, hi in bbox])]
    properties["bbox_used_for_cropping"] = bbox
    properties["shape_after_cropping_and_before_resampling"] = data.shape[1:]
    p = np.clip(data.astype(np.float64), 1e-12, 1 - 1e-12)
    logits = np.log(p) - np.log1p(-p) if region_based else np.log(p)
    return torch.from_numpy(logits.astype(np.float32)), properties


def export_case(folder: Path, case: str, image: Path, channel_maps: Sequence[np.ndarray], io: str, dataset: dict,
                transpose_forward: Sequence[int] = (0, 1, 2), bbox: Sequence[Sequence[int]] | None = None,
                save_probabilities: bool = True) -> None:
    """nnU-Net's files of one case whose network predicts ``channel_maps`` (see the module docstring)."""
    folder.mkdir(parents=True, exist_ok=True)
    region_based, classes = _channels(dataset)
    logits, properties = network_input(folder, case, image, channel_maps, io, region_based, transpose_forward, bbox)
    probabilities = torch.sigmoid(logits.float()) if region_based else torch.softmax(logits.float(), 0)
    if region_based:
        segmentation = torch.zeros(probabilities.shape[1:], dtype=torch.int16)
        for i, c in enumerate(dataset["regions_class_order"]):
            segmentation[probabilities[i] > 0.5] = c
    else:
        segmentation = torch.from_numpy(probabilities.numpy().argmax(0))
    bbox = properties["bbox_used_for_cropping"]
    inside = tuple(slice(lo, hi) for lo, hi in bbox)
    seg = np.zeros(properties["shape_before_cropping"], dtype=np.uint8 if len(classes) < 255 else np.uint16)
    seg[inside] = segmentation.numpy()
    full = torch.zeros((probabilities.shape[0], *properties["shape_before_cropping"]), dtype=probabilities.dtype)
    if not region_based:
        full[0] = 1
    full[(slice(None), *inside)] = probabilities
    backward = [int(i) for i in np.argsort(transpose_forward)]
    seg = seg.transpose(backward)
    if save_probabilities:
        stored = full.numpy().transpose([0, *[i + 1 for i in backward]])
        np.savez_compressed(folder / f"{case}.npz", probabilities=stored)
        with (folder / f"{case}.pkl").open("wb") as handle:
            pickle.dump(properties, handle)
    write_seg(seg, folder / f"{case}{dataset['file_ending']}", properties, io)


def _nnunet_available() -> bool:
    try:
        import nnunetv2.inference.export_prediction  # noqa: F401
    except Exception:  # not installed, or installed without its dependencies
        return False
    return True


@pytest.mark.skipif(not _nnunet_available(), reason="nnunetv2 cannot be imported here")
@pytest.mark.parametrize("io", IO_CLASSES)
def test_writer_matches_nnunet(tmp_path: Path, io: str) -> None:
    """nnunetv2's export_prediction_from_logits and reader-writers write the same files as :func:`export_case`."""
    from nnunetv2.inference.export_prediction import export_prediction_from_logits
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    rng = np.random.default_rng(0)
    shape = (9, 7, 5)
    affine = np.array([[0.0, 0.0, -2.5, 40.0], [-0.8, 0.0, 0.0, 10.0], [0.0, 0.9, 0.0, -5.0], [0, 0, 0, 1.0]])
    image = write_image(tmp_path / "image.nii.gz", rng.normal(size=shape).astype(np.float32), affine)
    fg = rng.uniform(size=shape)
    maps = [(1 - fg) / 2, (1 - fg) / 2, fg]
    dataset = dataset_json({"background": 0, "a": 1, "b": 2})
    transpose = (2, 0, 1)
    bbox = [[1, 4], [0, 8], [1, 6]]
    export_case(tmp_path / "mine", "c", image, maps, io, dataset, transpose, bbox)
    logits, properties = network_input(tmp_path / "theirs", "c", image, maps, io, False, transpose, bbox)
    plans = {"dataset_name": "Dataset999_Test", "plans_name": "nnUNetPlans", "original_median_spacing_after_transp":
             [1.0, 1.0, 1.0], "original_median_shape_after_transp": [5, 5, 5], "image_reader_writer": io,
             "transpose_forward": list(transpose), "transpose_backward": [int(i) for i in np.argsort(transpose)],
             "configurations": {"3d_fullres": {"data_identifier": "x", "preprocessor_name": "DefaultPreprocessor",
                                               "batch_size": 2, "patch_size": [4, 4, 4], "median_image_size_in_voxels":
                                               [5, 5, 5], "spacing": [float(s) for s in
                                                                      np.array(properties["spacing"])[list(transpose)]],
                                               "normalization_schemes": ["ZScoreNormalization"],
                                               "use_mask_for_norm": [False], "resampling_fn_data":
                                               "resample_data_or_seg_to_shape", "resampling_fn_seg":
                                               "resample_data_or_seg_to_shape", "resampling_fn_data_kwargs":
                                               {"is_seg": False, "order": 3, "order_z": 0,
                                                "force_separate_z": None}, "resampling_fn_seg_kwargs":
                                               {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
                                               "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
                                               "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1,
                                                                                      "order_z": 0,
                                                                                      "force_separate_z": None},
                                               "architecture": {"network_class_name": "x", "arch_kwargs": {},
                                                                "_kw_requires_import": []},
                                               "batch_dice": False}},
             "experiment_planner_used": "x", "label_manager": "LabelManager",
             "foreground_intensity_properties_per_channel": {}}
    manager = PlansManager(plans)
    (tmp_path / "theirs").mkdir(exist_ok=True)
    export_prediction_from_logits(logits, properties, manager.get_configuration("3d_fullres"), manager, dataset,
                                  str(tmp_path / "theirs" / "c"), save_probabilities=True)
    with np.load(tmp_path / "mine" / "c.npz") as mine, np.load(tmp_path / "theirs" / "c.npz") as theirs:
        np.testing.assert_allclose(mine["probabilities"], theirs["probabilities"], rtol=0, atol=1e-6)
        assert mine["probabilities"].dtype == theirs["probabilities"].dtype
    np.testing.assert_array_equal(np.asarray(nib.load(tmp_path / "mine" / "c.nii.gz").dataobj),
                                  np.asarray(nib.load(tmp_path / "theirs" / "c.nii.gz").dataobj))
    np.testing.assert_allclose(nib.load(tmp_path / "mine" / "c.nii.gz").affine,
                               nib.load(tmp_path / "theirs" / "c.nii.gz").affine, atol=1e-6)
