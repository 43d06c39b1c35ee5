"""Training throughput on this machine: the full loop of ``volbias.training.run`` versus the model alone.

The full loop includes batch assembly (epoch plan, rater choice, crops), the loss schedule and logging; the
"model alone" loop repeats forward, loss, backward and optimiser step on one pre-loaded batch of the same
shape. The data pipeline's share is 1 - (full / model alone). Also prints the peak resident memory of the
process and the peak Python-level allocation (tracemalloc; tensors allocated by torch are not seen by it).

Usage: python benchmarks/bench_training.py [--task synthetic] [--dims 2] [--profile cpu] [--epochs 10] [--threads 1]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

try:
    import volbias  # noqa: F401
except ImportError:  # running from a source checkout without installation
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


REPEATS = 5  # timings are medians over repeats: the machine may be shared


def model_alone_steps_per_second(config, steps: int) -> tuple[float, tuple[int, ...], int]:  # noqa: ANN001
    """Median steps/s of forward + loss + backward + optimiser step on one pre-loaded batch, and the batch's
    shape and the network's parameter count: the network, the batch and the last stage's loss and optimiser
    come from :func:`volbias.training.run.prepare_training`, as in the run itself."""
    import torch

    from volbias.training.batches import iterate_batches, plan_epoch
    from volbias.training.run import prepare_training

    profile = config.resolved_profile()
    setup = prepare_training(config, profile, torch.device("cpu"))
    image, target, mask = next(iterate_batches(setup.train, plan_epoch(setup.train, setup.generator),
                                               profile.batch_size))
    loss_fn, optimizer, scheduler, _ = setup.stage_objects(setup.stages[-1])
    model = setup.model
    model.train()
    rates = []
    for repeat in range(REPEATS + 1):  # the first repeat warms up
        start = time.perf_counter()
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(image), target, mask)
            loss.backward()
            optimizer.step()
            scheduler.step()
        if repeat:
            rates.append(steps / (time.perf_counter() - start))
    parameters = sum(p.numel() for p in model.parameters())
    return statistics.median(rates), tuple(image.shape), parameters


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="synthetic")
    parser.add_argument("--dims", type=int, default=None, help="synthetic task dimensionality (2 or 3)")
    parser.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "gpu"])
    parser.add_argument("--loss", default="sd")
    parser.add_argument("--epochs", type=int, default=None, help="shorten the run (default: the profile's)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args(argv)

    import pandas as pd
    import torch

    from volbias.training import RunConfig, run

    torch.set_num_threads(args.threads)
    training = {"epochs": args.epochs} if args.epochs else {}
    config = RunConfig.from_dict({
        "task": args.task, "task_options": {"dims": args.dims} if args.dims else {}, "loss": args.loss,
        "fold": 0, "seed": 0, "profile": args.profile, "device": "cpu", "training": training})

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = run(config, Path(tmp) / "run")
        wall = time.perf_counter() - started
        summary = result.summary
        log = pd.read_csv(result.train_log)
        # Python-level allocations, traced in a separate two-epoch run (tracing slows the loop down)
        tracemalloc.start()
        short = RunConfig.from_dict({**config.to_dict(), "training": {**training, "epochs": 2}})
        run(short, Path(tmp) / "traced")
        _, python_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    steps_per_epoch = summary["steps_this_call"] / summary["epochs_completed"]
    full = statistics.median(steps_per_epoch / log.seconds)  # per-epoch throughput of the full loop
    alone, batch_shape, parameters = model_alone_steps_per_second(config, steps=max(5, round(steps_per_epoch * 2)))
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # ru_maxrss is in KiB on Linux

    rows = [
        ("task / profile / loss", f"{args.task}{'' if not args.dims else f' {args.dims}D'} / {args.profile} / {args.loss}"),
        ("torch threads", str(args.threads)),
        ("batch shape", " x ".join(map(str, batch_shape))),
        ("network parameters", f"{parameters:,}"),
        ("epochs / steps", f"{summary['epochs_completed']} / {summary['steps_this_call']}"),
        ("run wall time (s, incl. data and validation)", f"{wall:.1f}"),
        ("full loop steps/s (median over epochs)", f"{full:.2f}"),
        ("model alone steps/s (pre-loaded batch, median)", f"{alone:.2f}"),
        ("data pipeline share of a step (1 - full/alone)", f"{1 - full / alone:.1%}"),
        ("peak resident memory (MB)", f"{peak_rss_mb:.0f}"),
        ("peak Python allocations, 2-epoch run (MB)", f"{python_peak / 2**20:.1f}"),
    ]
    width = max(len(k) for k, _ in rows)
    print(f"{'quantity'.ljust(width)} | value\n{'-' * width}-|------")
    for key, value in rows:
        print(f"{key.ljust(width)} | {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
