"""Reader for the LIDC-IDRI slices release: 128 x 128 CT crops with the masks of up to 4 radiologists.

Layout (periclesanfe/Pulmoseg ``LIDC-IDRI-slices``)::

    <root>/LIDC-IDRI-<pid>/nodule-<n>/images/slice-<i>.png
    <root>/LIDC-IDRI-<pid>/nodule-<n>/mask-<r>/slice-<i>.png     r = 0..3 (empty if r did not mark it)
One slice per nodule is used: the slice with the largest mean rater area (the mirror holds just that one;
the full release holds them all and the same slice is picked). Pixel spacing is not part of the release:
spacing (1.0, 1.0) with spacing_known False, so areas are pixel counts.

Reading 13 150 PNGs takes tens of seconds, so the stacked arrays (images uint8, masks bit-packed) are
cached as one npz keyed by the files' sha256 digests; digests are remembered by size and mtime
(cache.DigestBook), so a warm load stats the files, reads one npz and builds the cases in seconds.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .cache import DigestBook, cache_root, load_arrays, save_arrays, settings_key
from .case import Case
from .errors import DataError

N_RATERS = 4
SIDE = 128
_BITS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).astype(np.float32)  # byte -> 8 floats
_NODULE = re.compile(r"^(LIDC-IDRI-\d+)/(nodule-\d+)/(images|mask-\d)/(slice-\d+)\.png$")


def list_files(root: Path) -> list[str]:
    """Relative paths of all slice PNGs under `root` in the release layout (sorted)."""
    rels = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            if name.endswith(".png"):
                rels.append(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
    rels = sorted(r for r in rels if _NODULE.match(r))
    if not rels:
        raise DataError(f"{root}: no LIDC-IDRI-*/nodule-*/images/slice-*.png files found")
    return rels


def _read_png(path: Path, mask: bool) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im.convert("L") if im.mode != "L" else im)
    except FileNotFoundError:
        raise DataError(f"{path}: missing file") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(f"{path}: not a readable PNG ({type(exc).__name__})") from None
    if arr.shape != (SIDE, SIDE):
        raise DataError(f"{path}: expected {SIDE}x{SIDE} pixels, found {arr.shape}")
    if mask and not np.all((arr == 0) | (arr == 255)):
        raise DataError(f"{path}: mask values outside {{0, 255}}")
    return arr


def _read_all(root: Path, rels: list[str]) -> dict[str, np.ndarray]:
    slices: dict[tuple[str, str], set[str]] = {}
    for rel in rels:
        pid, nod, kind, sl = _NODULE.match(rel).groups()
        if kind == "images":
            slices.setdefault((pid, nod), set()).add(sl)
    ids, images, masks, slice_names = [], [], [], []
    for (pid, nod), names in sorted(slices.items()):
        best = None
        for sl in sorted(names):
            m = np.stack([_read_png(root / pid / nod / f"mask-{r}" / f"{sl}.png", True) > 0
                          for r in range(N_RATERS)])
            if best is None or m.sum() > best[1].sum():
                best = (sl, m)
        sl, m = best
        ids.append(f"{pid}_{nod}")
        slice_names.append(sl)
        images.append(_read_png(root / pid / nod / "images" / f"{sl}.png", False))
        masks.append(np.packbits(m, axis=-1))
    return {"ids": np.array(ids), "slices": np.array(slice_names), "images": np.stack(images),
            "masks": np.stack(masks)}


def load_arrays_cached(root: Path, rels: list[str], cache_dir: str | os.PathLike[str] | None,
                       digests: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """Stacked arrays of every nodule: from the cache when the files' digests match, else read and cache.

    `digests` (relative path -> sha256) may be passed when the files were just verified against them.
    """
    if digests is None:
        digests = DigestBook(root, cache_dir).digests(rels)
    key = settings_key("lidc-slices", sorted(digests.items()))
    path = cache_root(cache_dir) / "lidc" / f"{key}.npz"
    arrays = load_arrays(path)
    if arrays is None:
        arrays = _read_all(root, rels)
        save_arrays(path, arrays)
    return arrays


def build_cases(arrays: dict[str, np.ndarray], keep: np.ndarray, crop_size: int = SIDE) -> list[Case]:
    """Cases for the selected nodule indices: image / 255, the 4 rater masks, mean rater p, label p > 0.5.

    The label is the strict majority (at least 3 of the 4 raters), the same rule ``> 0.5`` that turns a
    prediction into a mask: with ``p >= 0.5`` a calibrated prediction would lose the 2-of-4 pixels at random.

    ``crop_size`` keeps the central ``crop_size`` x ``crop_size`` pixels (the release centres each crop on its
    nodule). The arrays of all cases are allocated at once and each case holds views into them (fast for
    2630 nodules).
    """
    lo = (SIDE - crop_size) // 2
    window = (slice(None), slice(None), slice(lo, lo + crop_size), slice(lo, lo + crop_size))
    raters = _BITS[arrays["masks"][keep]].reshape(len(keep), N_RATERS, SIDE, SIDE)[window]
    marginals = raters.sum(1) / N_RATERS
    labels = (marginals > 0.5).astype(np.float32)
    images = (arrays["images"][keep].astype(np.float32)[:, None] / 255.0)[window]
    masks = np.ones((len(keep), crop_size, crop_size), dtype=bool)
    marking = raters.reshape(len(keep), N_RATERS, -1).max(-1).sum(-1)
    cases = []
    for j, i in enumerate(keep):
        cid = str(arrays["ids"][i])
        pid, nod = cid.split("_", 1)
        cases.append(Case(
            id=cid, image=images[j], label=labels[j], mask=masks[j], spacing=(1.0, 1.0), spacing_known=False,
            raters=raters[j], marginals=marginals[j],
            meta={"patient": pid, "nodule": nod, "slice": str(arrays["slices"][i]), "n_marking": int(marking[j]),
                  "grid": "pixels"},
        ))
    return cases


def n_marking(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Number of raters with a non-empty mask, per nodule."""
    return (arrays["masks"].reshape(len(arrays["masks"]), N_RATERS, -1) > 0).any(-1).sum(-1)
