"""Benchmark of the data layer: BraTS sample (10 cases, 2 mm) cold and from cache; LIDC cold and warm.

Usage: python benchmarks/bench_data.py [--spacing 2.0] [--skip-lidc]
Reads the public samples from $VOLBIAS_DATA_MIRROR (default: ../shared/data next to the repository);
every run uses a fresh temporary cache, so "cold" includes sha256 verification, reading and resampling.
Targets: BraTS sample cold < 60 s, from cache < 5 s.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spacing", type=float, default=2.0, help="grid in mm (paper: 2.0)")
    parser.add_argument("--skip-lidc", action="store_true", help="only benchmark the BraTS sample")
    args = parser.parse_args()
    default_mirror = Path(__file__).resolve().parents[2] / "shared" / "data"
    os.environ.setdefault("VOLBIAS_DATA_MIRROR", str(default_mirror))

    from volbias.data import load_task

    rows = []
    with tempfile.TemporaryDirectory(prefix="volbias-bench-") as cache:
        task, cold = timed(load_task, "BR18-sample", spacing=args.spacing, cache_dir=cache)
        _, warm = timed(load_task, "BR18-sample", spacing=args.spacing, cache_dir=cache)
        shape = task.cases[0].image.shape
        rows += [
            {"task": "BR18-sample", "cases": len(task), "grid": f"{args.spacing:g} mm", "shape": str(shape),
             "run": "cold", "seconds": cold, "target_s": 60.0},
            {"task": "BR18-sample", "cases": len(task), "grid": f"{args.spacing:g} mm", "shape": str(shape),
             "run": "cache", "seconds": warm, "target_s": 5.0},
        ]
        if not args.skip_lidc:
            lidc, cold = timed(load_task, "LIDC", cache_dir=cache)
            _, warm = timed(load_task, "LIDC", cache_dir=cache)
            for run, sec in (("cold", cold), ("cache", warm)):
                rows.append({"task": "LIDC", "cases": len(lidc), "grid": "pixels", "shape": "(1, 128, 128)",
                             "run": run, "seconds": sec, "target_s": float("nan")})
    table = pd.DataFrame(rows)
    table["ok"] = table.apply(lambda r: "" if pd.isna(r.target_s) else ("yes" if r.seconds < r.target_s else "NO"),
                              axis=1)
    print(f"CPU cores: {os.cpu_count()}; mirror: {os.environ['VOLBIAS_DATA_MIRROR']}")
    print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}"))


if __name__ == "__main__":
    main()
