"""GPU check: train the gpu profile on one fold of the 3D synthetic task for a fixed time and report throughput.

Self-contained (no external data). Usage::

    python benchmarks/gpu_check.py                      # 180 s on the GPU, gpu profile
    python benchmarks/gpu_check.py --budget 10 --device cpu --profile smoke   # quick check anywhere

Prints one table: steps/s, voxels/s, peak GPU memory, AMP, data placement, and the cases.csv summary of the
validation fold (trained for the budget only, so the metrics show the state reached, not converged values).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

try:
    import volbias  # noqa: F401
except ImportError:  # running from a source checkout without installation
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=180.0, help="training wall-clock budget in seconds")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    parser.add_argument("--profile", default="gpu", choices=["smoke", "cpu", "gpu"])
    parser.add_argument("--dims", type=int, default=3, choices=[2, 3], help="synthetic task dimensionality")
    parser.add_argument("--loss", default="ce-sd")
    parser.add_argument("--no-amp", action="store_true", help="train in float32")
    parser.add_argument("--out", default=None, help="run directory (default: a temporary one)")
    args = parser.parse_args(argv)

    import torch

    from volbias.training import RunConfig, run

    config = RunConfig.from_dict({
        "task": "synthetic", "task_options": {"dims": args.dims}, "loss": args.loss, "fold": 0, "seed": 0,
        "profile": args.profile, "device": args.device,
        "training": {"max_train_seconds": args.budget, "amp": not args.no_amp, "checkpoint_every": 10 ** 6},
    })
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="volbias-gpu-check-"))
    started = time.perf_counter()
    result = run(config, out / "run", progress=True)
    wall = time.perf_counter() - started
    summary = result.summary
    cases = result.cases()
    profile = config.resolved_profile()
    device_name = torch.cuda.get_device_name(torch.device(args.device)) if args.device.startswith("cuda") else "cpu"

    rows = [
        ("device", device_name),
        ("torch", torch.__version__),
        ("profile / width / batch", f"{args.profile} / {profile.width} / {profile.batch_size}"),
        ("sample shape (voxels)", " x ".join(map(str, summary["train_shape"]))),
        ("training cases / validation cases", f"{summary['n_train']} / {summary['n_val']}"),
        ("AMP", summary["amp"]),
        ("training data on device", summary["data_on_device"]),
        ("epochs / steps in budget", f"{summary['epochs_completed']} / {summary['steps_this_call']}"),
        ("training seconds", f"{summary['train_seconds_this_call']:.1f}"),
        ("steps/s", f"{summary['steps_per_second']:.2f}"),
        ("voxels/s (forward+backward)", f"{summary['voxels_per_second']:.3g}"),
        ("peak GPU memory (GB)", "n/a" if summary["peak_gpu_memory_gb"] is None
         else f"{summary['peak_gpu_memory_gb']:.2f}"),
        ("validation seconds", f"{summary['eval_seconds']:.1f}"),
        ("wall seconds (incl. data)", f"{wall:.1f}"),
        ("mean Dice (validation)", f"{cases.dice.mean():.3f}"),
        ("mean expected volume", f"{cases.expected_volume.mean():.1f}"),
        ("mean soft / hard predicted volume", f"{cases.pred_volume_soft.mean():.1f} / {cases.pred_volume_hard.mean():.1f}"),
        ("run directory", str(result.out_dir)),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"\n{'quantity'.ljust(width)} | value\n{'-' * width}-|------")
    for key, value in rows:
        print(f"{key.ljust(width)} | {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
