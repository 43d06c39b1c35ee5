"""load_task: one entry point for every task of the registry."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from tqdm import tqdm

from . import readers_lidc
from .cache import DigestBook, cache_root, load_arrays, save_arrays, settings_key
from .case import Case, TaskData
from .errors import DataError
from .fetch import locate, sha256_list
from .nifti import SourceCase, check_headers, read_case
from .preprocessing import CROPS, preprocess
from .readers_brats import find_brats18, find_brats18_sample
from .readers_isles import find_isles17, find_isles18
from .registry import PRIVATE_MESSAGE, TaskSpec, derived_folds, get_spec, paper_fold_of
from .synthetic import make_phantoms

PathLike = str | os.PathLike[str]

_NIFTI_SOURCES = {
    "BR18": ("brats2018", find_brats18),
    "IS17": ("isles2017", find_isles17),
    "IS18": ("isles2018", find_isles18),
    "BR18-sample": ("brats18-sample", find_brats18_sample),
}


def _positive(name: str, value: Any) -> None:
    if value is not None and (not isinstance(value, (int, float)) or value <= 0):
        raise DataError(f"option {name}={value!r}: must be a positive number")


def _preprocessed(spec: TaskSpec, folder: Path, sources: list[SourceCase], spacing: float, crop: str,
                  cache_dir: PathLike | None) -> dict[str, dict[str, np.ndarray]]:
    """Preprocessed arrays per case id: cached ones are read back, the others are checked (all headers
    first, then each case's data) and preprocessed, and written to the cache only once all passed.

    Cache keys combine the settings with the sha256 of every source file (hashed once, then remembered
    by size and mtime in the cache's digest book)."""
    book = DigestBook(folder, cache_dir)
    settings = {"task": spec.name, "spacing": spacing, "crop": crop, "shifts": spec.shifts, "scales": spec.scales,
                "mask": [spec.mask_channel, spec.mask_threshold]}
    keys = {sc.id: settings_key(settings, sc.id, [book.digest(str(p.relative_to(folder))) for p in sc.files])
            for sc in sources}
    book.save()
    store = cache_root(cache_dir) / "preprocessed" / spec.name
    arrays = {sc.id: load_arrays(store / f"{keys[sc.id]}.npz") for sc in sources}
    todo = [sc for sc in sources if arrays[sc.id] is None]
    for sc in todo:
        check_headers(sc)
    fresh = {}
    for sc in tqdm(todo, desc=f"preprocessing {spec.name}", disable=None):
        image, label, affine = read_case(sc)
        out = preprocess(image, label, affine, spec, spacing, crop)
        out["native_spacing"] = np.asarray(nib.affines.voxel_sizes(affine))
        out["native_shape"] = np.asarray(image.shape[1:])
        fresh[sc.id] = out
    for cid, out in fresh.items():
        save_arrays(store / f"{keys[cid]}.npz", out)
    arrays.update(fresh)
    return arrays


def _load_nifti_task(spec: TaskSpec, root: PathLike | None, spacing: float | None = None,
                     max_cases: int | None = None, cache_dir: PathLike | None = None,
                     crop: str = "paper") -> TaskData:
    _positive("spacing", spacing)
    _positive("max_cases", max_cases)
    if crop not in CROPS:
        raise DataError(f"option crop={crop!r}: must be one of {', '.join(CROPS)}")
    source, finder = _NIFTI_SOURCES[spec.name]
    folder, verified = locate(source, root, cache_dir)
    sources = finder(folder)[: int(max_cases) if max_cases else None]
    paper = paper_fold_of("BR18" if spec.name == "BR18-sample" else spec.name)
    for sc in sources:
        if spec.folds_source == "paper" and sc.id not in paper:
            raise DataError(f"{sc.label.parent}: case {sc.id} is not in the paper's {spec.name} folds")
    grid = float(spacing if spacing is not None else spec.spacing_mm)
    arrays = _preprocessed(spec, folder, sources, grid, crop, cache_dir)
    cases = []
    for sc in sources:
        a = arrays[sc.id]
        cases.append(Case(
            id=sc.id, image=a["image"], label=a["label"], mask=a["mask"], spacing=tuple(map(float, a["spacing"])),
            meta={**sc.meta, "task": spec.name, "grid_mm": grid, "crop": crop, "paper_fold": paper.get(sc.id),
                  "native_spacing": tuple(map(float, a["native_spacing"])),
                  "native_shape": tuple(map(int, a["native_shape"])),
                  "resampled_shape": tuple(map(int, a["resampled_shape"])), "verified": verified,
                  "source": str(sc.images[0].parent)},
        ))
    ids = [c.id for c in cases]
    if spec.folds_source == "paper":
        folds = [[cid for cid in sorted(ids) if paper[cid] == k] for k in range(5)]
    else:
        folds = derived_folds(ids, seed=0)
    return TaskData(spec.name, dataclasses.replace(spec, spacing_mm=grid), cases, folds)


def _load_lidc(spec: TaskSpec, root: PathLike | None, max_cases: int | None = None, min_raters: int = 1,
               seed: int = 0, crop_size: int = readers_lidc.SIDE, cache_dir: PathLike | None = None) -> TaskData:
    _positive("max_cases", max_cases)
    if min_raters not in (1, 2, 3, 4):
        raise DataError(f"option min_raters={min_raters!r}: must be 1, 2, 3 or 4")
    if not isinstance(crop_size, int) or not 8 <= crop_size <= readers_lidc.SIDE:
        raise DataError(f"option crop_size={crop_size!r}: must be an integer from 8 to {readers_lidc.SIDE}")
    folder, verified = locate("lidc-idri-slices", root, cache_dir)
    if verified:  # the files were just checked against the package's sha256 list
        digests = sha256_list("lidc-idri-slices")
        arrays = readers_lidc.load_arrays_cached(folder, sorted(digests), cache_dir, digests)
    else:
        arrays = readers_lidc.load_arrays_cached(folder, readers_lidc.list_files(folder), cache_dir)
    keep = np.flatnonzero(readers_lidc.n_marking(arrays) >= min_raters)
    if max_cases is not None and max_cases < len(keep):
        keep = np.sort(np.random.default_rng(seed).choice(keep, size=int(max_cases), replace=False))
    cases = readers_lidc.build_cases(arrays, keep, crop_size)
    for c in cases:
        c.meta["verified"] = verified
    folds = derived_folds([c.id for c in cases], seed=seed, groups=[c.meta["patient"] for c in cases])
    return TaskData(spec.name, spec, cases, folds)


def _load_synthetic(spec: TaskSpec, root: PathLike | None, max_cases: int | None = None,
                    cache_dir: PathLike | None = None, **options: Any) -> TaskData:
    """Phantoms are generated in milliseconds, so they are not cached (cache_dir is accepted and unused).

    ``n_test`` fresh phantoms from an independent random stream form the task's test set (no fold holds them).
    """
    if root is not None:
        raise DataError(f"{root}: the synthetic task is generated and reads no data directory")
    _positive("max_cases", max_cases)
    n_test = int(options.pop("n_test", 0))
    if n_test < 0:
        raise DataError(f"option n_test={n_test}: must be non-negative")
    if max_cases is not None:
        options["n_cases"] = min(int(max_cases), int(options.get("n_cases", max_cases)))
    cases = make_phantoms(**options)
    test = make_phantoms(**{**options, "n_cases": n_test}, stream="test") if n_test else []
    folds = derived_folds([c.id for c in cases], seed=int(options.get("seed", 0)))
    return TaskData(spec.name, dataclasses.replace(spec, dims=cases[0].image.ndim - 1), cases, folds, test)


def load_task(name: str, root: PathLike | None = None, **options: Any) -> TaskData:
    """Load a task of the registry (see list_tasks) as preprocessed cases with 5 folds.

    root: folder of the user's own copy in the official layout (default: the mirror
    $VOLBIAS_DATA_MIRROR, else a verified download for the public samples). Common options: spacing
    (grid in mm, default the paper's 2 mm), max_cases, cache_dir, crop ("paper", "foreground", "none").
    LIDC: max_cases, min_raters, seed, crop_size (central crop in pixels). synthetic: dims, radius, sigma, noise, n_cases, size, contrast,
    image_noise, n_raters, n_blobs, seed, n_test (fresh test phantoms). Bad input raises DataError naming the offending file.
    """
    spec = get_spec(name)
    if not spec.public:
        raise DataError(f"task {name}: {PRIVATE_MESSAGE[name]}")
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        raise DataError(f"option {unknown[0]!r}: unknown for task {name}; known: {', '.join(spec.options)}")
    if name == "LIDC":
        return _load_lidc(spec, root, **options)
    if name == "synthetic":
        return _load_synthetic(spec, root, **options)
    return _load_nifti_task(spec, root, **options)
