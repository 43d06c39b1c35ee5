"""Benchmark of ``volbias audit``: 100 cases of 128^3 voxels, timed end to end (the command, as a user runs it).

Usage: python benchmarks/bench_audit.py [--cases 100] [--size 128] [--format nifti|nnunet|both] [--workers 1]
[--keep DIR]
(``--keep`` keeps the inputs, and reuses inputs kept there by an earlier run.)

Every case is a realistic sparse map: an ellipsoidal blob (semi-axes 6 to 24 voxels) with a soft boundary,
``p = sigmoid((1 - r) * R / w)`` with a boundary width ``w`` of 1 to 2.5 voxels, set to 0 below 1e-3 (as
float16 storage and masking leave most of a network's background), so 1 to 8 % of the voxels are non-zero; its
reference is the blob with a boundary shifted by up to one voxel.  The inputs are written once (not timed),
as ``.nii.gz`` probability maps and label maps, or as nnU-Net ``<case>.npz`` + ``<case>.pkl``.
Target: the audit of 100 cases of 128^3 finishes within 60 s on the book's 2-core CPU machine.
Clinical sizes (512 x 512 x 300, 3 channels): ``benchmarks/bench_audit_clinical.py``.
"""

from __future__ import annotations

import argparse
import os
import pickle
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy.special import expit
from tqdm import tqdm

TARGET_S = 60.0


def blob_case(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """A soft-boundary ellipsoid (float32, mostly 0), its reference mask (uint8) and a voxel size (mm)."""
    axes = rng.uniform(6, 24, size=3)
    width = rng.uniform(1.0, 2.5)
    reach = axes * (1.0 + 7.0 * width / axes.mean()) + 1  # p < 1e-3 beyond this distance from the centre
    centre = rng.uniform(reach.max(), size - reach.max(), size=3)
    box = tuple(slice(max(int(c - h), 0), min(int(np.ceil(c + h)) + 1, size)) for c, h in zip(centre, reach))
    grid = np.ogrid[box]
    r = np.sqrt(sum(((g - c) / a) ** 2 for g, c, a in zip(grid, centre, axes)))
    prob = np.zeros((size,) * 3, np.float32)
    reference = np.zeros((size,) * 3, np.uint8)
    inside = expit((1.0 - r) * axes.mean() / width)
    prob[box] = np.where(inside < 1e-3, 0.0, inside)
    reference[box] = r < 1.0 + rng.uniform(-1, 1) / axes.mean()
    spacing = (float(rng.uniform(0.7, 1.2)),) * 2 + (float(rng.uniform(1.0, 3.0)),)
    return prob, reference, spacing


def _nifti(path: Path, data: np.ndarray, spacing: tuple[float, ...]) -> None:
    img = nib.Nifti1Image(data, np.diag([*spacing, 1.0]))
    img.header.set_xyzt_units(xyz="mm")
    nib.save(img, path)


def write_inputs(root: Path, n_cases: int, size: int, fmt: str, seed: int = 0) -> float:
    """Write the benchmark's cases under ``root/pred`` and ``root/ref``; returns the share of non-zero voxels."""
    rng = np.random.default_rng(seed)
    (root / "pred").mkdir(parents=True)
    (root / "ref").mkdir()
    nonzero = 0
    for k in tqdm(range(n_cases), desc=f"writing {fmt} cases", leave=False):
        prob, reference, spacing = blob_case(rng, size)
        nonzero += int(np.count_nonzero(prob))
        name = f"case{k:03d}"
        _nifti(root / "ref" / f"{name}.nii.gz", reference, spacing)
        if fmt == "nifti":
            _nifti(root / "pred" / f"{name}.nii.gz", prob, spacing)
        else:  # nnU-Net v2: (C, z, y, x) float16, spacing (z, y, x) in the pickle
            fg = prob.transpose(2, 1, 0)
            np.savez_compressed(root / "pred" / f"{name}.npz",
                                probabilities=np.stack([1 - fg, fg]).astype(np.float16))
            with (root / "pred" / f"{name}.pkl").open("wb") as handle:
                pickle.dump({"spacing": list(spacing[::-1]), "sitk_stuff": {"spacing": spacing}}, handle)
    return nonzero / (n_cases * size**3)


def time_audit(root: Path, workers: int = 1) -> tuple[float, float]:
    """Wall and CPU time (user + system) of ``volbias audit`` on ``root`` (a fresh process: imports included)."""
    command = [sys.executable, "-m", "volbias.cli", "audit", "--pred", str(root / "pred"), "--ref", str(root / "ref"),
               "--out", str(root / "report"), "--quiet", "--workers", str(workers)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100)
    parser.add_argument("--size", type=int, default=128, help="voxels per axis")
    parser.add_argument("--format", choices=["nifti", "nnunet", "both"], default="nifti")
    parser.add_argument("--workers", type=int, default=1, help="--workers of the audit")
    parser.add_argument("--keep", type=Path, default=None,
                        help="write the inputs and reports here and keep them (inputs found there are reused)")
    args = parser.parse_args()
    formats = ["nifti", "nnunet"] if args.format == "both" else [args.format]
    rows = []
    with tempfile.TemporaryDirectory(prefix="volbias-bench-audit-") as scratch:
        base = args.keep or Path(scratch)
        for fmt in formats:
            root = base / fmt
            if (root / "pred").is_dir():  # inputs kept by an earlier run (--keep)
                share = float("nan")
                shutil.rmtree(root / "report", ignore_errors=True)
            else:
                share = write_inputs(root, args.cases, args.size, fmt)
            wall, cpu = time_audit(root, args.workers)
            rows.append({"format": fmt, "workers": args.workers, "cases": args.cases, "shape": f"{args.size}^3",
                         "non-zero voxels": "kept" if np.isnan(share) else f"{share:.1%}", "seconds": wall, "cpu_s": cpu, "s per case": wall / args.cases,
                         "target_s": TARGET_S if args.cases == 100 and args.size == 128 else float("nan")})
    table = pd.DataFrame(rows)
    table["ok"] = ["" if np.isnan(t) else ("yes" if s < t else "NO") for s, t in zip(table.seconds, table.target_s)]
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"CPU cores: {os.cpu_count()}; load average at the end: {load}; peak memory of the audit: {peak_mb:.0f} MB")
    print("seconds: wall time of the command; cpu_s: its CPU time (user + system), which a busy machine does not inflate")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}"))


if __name__ == "__main__":
    main()
