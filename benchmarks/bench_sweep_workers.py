"""Wall time of the smoke grid with ``volbias sweep --workers 1`` versus ``--workers 2`` on this machine.

The grid is the paper's four loss schedules (CE, SD, CE-CE, CE-SD) x 5 folds on the 2D synthetic phantoms at
the smoke profile: 20 short runs. Each worker count runs the whole grid from scratch into a fresh directory,
through the command line (worker start-up included), ``--repeats`` times; the table gives the median wall
time, the throughput and the ratio to one worker, and how far the two grids' results are apart (on CPU a run
with another number of torch threads is not bit-identical: its sums are added in another order).

Usage: python benchmarks/bench_sweep_workers.py [--workers 1 2] [--repeats 1] [--epochs 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    import volbias  # noqa: F401
except ImportError:  # running from a source checkout without installation
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

LOSSES = ["ce", "sd", "ce-ce", "ce-sd"]
FOLDS = ["0", "1", "2", "3", "4"]


def sweep_seconds(out: Path, workers: int, epochs: int) -> float:
    """Wall seconds of one sweep of the smoke grid into ``out`` (which must not hold runs yet)."""
    command = [sys.executable, "-m", "volbias.cli", "sweep", "--tasks", "synthetic", "--losses", *LOSSES,
               "--folds", *FOLDS, "--profile", "smoke", "--device", "cpu", "--task-options", "{dims: 2}",
               "--training", f"{{epochs: {epochs}}}", "--out", str(out), "--workers", str(workers), "--quiet"]
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=1, help="sweeps per worker count (median is reported)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (3: the smoke profile's)")
    args = parser.parse_args()

    import pandas as pd

    from volbias.training import collect
    from volbias.training.launchers import cpu_count

    n_runs = len(LOSSES) * len(FOLDS)
    rows, tables = [], {}
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        for workers in args.workers:
            times = []
            for repeat in range(args.repeats):
                out = Path(tmp) / f"w{workers}-r{repeat}"
                times.append(sweep_seconds(out, workers, args.epochs))
            tables[workers] = collect(out, write=False).results.sort_values(["run_name", "case_id"])
            wall = statistics.median(times)
            rows.append({"workers": workers, "threads per run": max(1, cpu_count() // workers),
                         "runs": n_runs, "wall s (median)": round(wall, 1),
                         "runs per minute": round(60 * n_runs / wall, 1)})
    table = pd.DataFrame(rows)
    table["time vs 1 worker"] = (table["wall s (median)"] / table["wall s (median)"].iloc[0]).round(2)
    print(f"smoke grid: synthetic 2D x {len(LOSSES)} losses x {len(FOLDS)} folds, {args.epochs} epochs per run; "
          f"{cpu_count()} CPU threads; {args.repeats} sweep(s) per worker count")
    print(table.to_string(index=False))
    first = tables[args.workers[0]].reset_index(drop=True)
    for workers in args.workers[1:]:
        other = tables[workers].reset_index(drop=True)
        rel = ((other.pred_volume_soft - first.pred_volume_soft).abs() / first.pred_volume_soft).max()
        dice = (other.dice - first.dice).abs().max()
        print(f"--workers {workers} vs {args.workers[0]}: max relative soft-volume difference {rel:.2e}, "
              f"max Dice difference {dice:.4f}")


if __name__ == "__main__":
    main()
