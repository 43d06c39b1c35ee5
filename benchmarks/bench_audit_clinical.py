"""Benchmark of ``volbias audit`` at clinical size: nnU-Net folders of 512 x 512 x 300 CT cases with 3 channels.

Usage: python benchmarks/bench_audit_clinical.py [--cases 20] [--shape 512 512 300] [--workers 1 2] [--keep DIR]

Writes (not timed) an nnU-Net v2 prediction folder as ``nnUNetv2_predict --save_probabilities`` leaves it for a
model with background, liver and tumour: ``<case>.npz`` (float32 softmax, ``(3, z, y, x)``, about 1 GB in
memory), ``<case>.pkl`` (SimpleITKIO's properties), ``<case>.nii.gz`` (the argmax segmentation),
``dataset.json`` and ``plans.json``, and the reference label maps.  Every case is one smooth phantom (an organ
with a lesion, float32 noise on the logits so that the archives compress as a network's maps do) moved by a
different shift.  Then times, in fresh processes, ``volbias audit --channel 1 2`` (the union of liver and
tumour, with nnU-Net's argmax volume) at each ``--workers`` value, and ``nnUNetv2_evaluate_folder`` on the
same folder where nnunetv2 can be imported (it reads only the segmentations).  Peak memory is the largest
summed resident memory of the command's process tree, sampled every 0.1 s.  The inputs are deleted at the
end unless ``--keep`` is given (20 cases take about 13 GB of disk).
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import psutil
from tqdm import tqdm

LABELS = {"background": 0, "liver": 1, "tumour": 2}
SPACING = (0.78, 0.78, 1.5)  # x, y, z in mm


def base_logits(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Logits ``(3, z, y, x)`` float32 of a liver-sized ellipsoid holding a lesion, with noise."""
    x, y, z = shape
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.ogrid[:z, :y, :x]
    organ = np.sqrt(((xx - 0.45 * x) / (0.22 * x)) ** 2 + ((yy - 0.5 * y) / (0.18 * y)) ** 2
                    + ((zz - 0.5 * z) / (0.25 * z)) ** 2).astype(np.float32)
    lesion = np.sqrt(((xx - 0.4 * x) / 18.0) ** 2 + ((yy - 0.5 * y) / 15.0) ** 2
                     + ((zz - 0.5 * z) / 10.0) ** 2).astype(np.float32)
    logits = np.empty((3, z, y, x), np.float32)
    logits[0] = 8.0 * (organ - 1.0)
    logits[1] = 8.0 * (1.0 - organ)
    logits[2] = 6.0 * (1.0 - lesion) + logits[1]
    logits += rng.normal(0.0, 0.3, size=logits.shape).astype(np.float32)
    return logits


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the first axis, in place, float32."""
    logits -= logits.max(axis=0, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=0, keepdims=True)
    return logits


def write_folder(root: Path, n_cases: int, shape: tuple[int, int, int]) -> None:
    """The nnU-Net prediction folder ``root/pred`` and the references ``root/ref`` (see the module docstring)."""
    pred, ref = root / "pred", root / "ref"
    pred.mkdir(parents=True)
    ref.mkdir()
    (pred / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": LABELS,
                                                   "numTraining": n_cases, "file_ending": ".nii.gz"}, indent=4))
    (pred / "plans.json").write_text(json.dumps({"image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2],
                                                 "transpose_backward": [0, 1, 2]}, indent=4))
    probabilities = softmax(base_logits(shape))
    affine = np.diag([-SPACING[0], -SPACING[1], SPACING[2], 1.0])  # LPS-stored, as from a DICOM conversion
    for k in tqdm(range(n_cases), desc="writing cases", unit="case"):
        case = f"case_{k:03d}"
        shifted = np.roll(probabilities, shift=(3 * k, 2 * k, -2 * k), axis=(1, 2, 3))
        np.savez_compressed(pred / f"{case}.npz", probabilities=shifted)
        properties = {"sitk_stuff": {"spacing": SPACING, "origin": (0.0, 0.0, 0.0),
                                     "direction": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)},
                      "spacing": list(SPACING[::-1]), "shape_before_cropping": shifted.shape[1:],
                      "bbox_used_for_cropping": [[0, s] for s in shifted.shape[1:]]}
        with (pred / f"{case}.pkl").open("wb") as handle:
            pickle.dump(properties, handle)
        segmentation = shifted.argmax(axis=0).astype(np.uint8).transpose(2, 1, 0)
        nib.save(nib.Nifti1Image(segmentation, affine), pred / f"{case}.nii.gz")
        reference = np.roll(segmentation, shift=(1, 0, 0), axis=(0, 1, 2))  # a reference one voxel off
        nib.save(nib.Nifti1Image(reference, affine), ref / f"{case}.nii.gz")
        del shifted, segmentation, reference


def measure(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall time (s) and peak resident memory (GB) of ``command``'s process tree."""
    peak = 0
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env)
    watched = psutil.Process(process.pid)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            try:
                tree = [watched, *watched.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.1)

    start = time.perf_counter()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = process.wait()
    wall = time.perf_counter() - start
    done.set()
    sampler.join()
    if code != 0:
        raise SystemExit(f"{' '.join(command)}: exit status {code}")
    return wall, peak / 1e9


def nnunet_evaluator() -> list[str] | None:
    """The command of nnU-Net's ``nnUNetv2_evaluate_folder``, or None where nnunetv2 cannot be imported."""
    if shutil.which("nnUNetv2_evaluate_folder"):
        return ["nnUNetv2_evaluate_folder"]
    probe = subprocess.run([sys.executable, "-c", "import nnunetv2.evaluation.evaluate_predictions"],
                           capture_output=True)
    if probe.returncode != 0:
        return None
    return [sys.executable, "-c", "import sys; from nnunetv2.evaluation.evaluate_predictions import "
            "evaluate_folder_entry_point as m; sys.argv[0] = 'nnUNetv2_evaluate_folder'; m()"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 300], metavar=("X", "Y", "Z"))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--keep", type=Path, default=None, help="write the inputs here and keep them (reused)")
    args = parser.parse_args()
    shape = tuple(args.shape)
    rows = []
    with tempfile.TemporaryDirectory(prefix="volbias-bench-clinical-") as scratch:
        root = args.keep or Path(scratch)
        if not (root / "pred").is_dir():
            write_folder(root, args.cases, shape)
        size_gb = sum(p.stat().st_size for p in (root / "pred").glob("*.npz")) / 1e9
        for workers in args.workers:
            out = root / f"report-{workers}"
            shutil.rmtree(out, ignore_errors=True)
            wall, peak = measure([sys.executable, "-m", "volbias.cli", "audit", "--pred", str(root / "pred"), "--ref",
                                  str(root / "ref"), "--out", str(out), "--channel", "1", "2", "--quiet",
                                  "--workers", str(workers)])
            rows.append({"command": f"volbias audit --workers {workers}", "seconds": wall,
                         "s per case": wall / args.cases, "peak memory (GB)": peak})
        evaluator = nnunet_evaluator()
        if evaluator is not None:
            for workers in args.workers:
                wall, peak = measure([*evaluator, str(root / "ref"), str(root / "pred"), "-djfile",
                                      str(root / "pred" / "dataset.json"), "-pfile", str(root / "pred" / "plans.json"),
                                      "-o", str(root / f"nnunet-{workers}.json"), "-np", str(workers)])
                rows.append({"command": f"nnUNetv2_evaluate_folder -np {workers}", "seconds": wall,
                             "s per case": wall / args.cases, "peak memory (GB)": peak})
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{args.cases} cases of {' x '.join(map(str, shape))} voxels, 3 channels float32 ({size_gb:.1f} GB of .npz); "
          f"CPU cores: {os.cpu_count()}; load average at the end: {load}")
    if evaluator is None:
        print("nnUNetv2_evaluate_folder: nnunetv2 cannot be imported here, not run")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.2f}"))


if __name__ == "__main__":
    main()
