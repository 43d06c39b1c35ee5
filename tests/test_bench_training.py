"""The training benchmark measures like with like: its model-alone loop runs the run's own network on a batch
of the run's own shape (both come from ``volbias.training.run.prepare_training``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from volbias.training import RunConfig, run
from volbias.training.checkpoint import load_checkpoint

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_training.py"


def test_model_alone_sees_the_runs_network_and_batch_shape(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("bench_training", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    config = RunConfig.from_dict({"task": "BR18-sample", "loss": "sd", "fold": 0, "seed": 0, "profile": "smoke",
                                  "device": "cpu", "training": {"epochs": 1}})
    torch.set_num_threads(1)
    _, shape, parameters = bench.model_alone_steps_per_second(config, steps=1)
    result = run(config, tmp_path / "run")
    summary = result.summary
    assert shape == (config.resolved_profile().batch_size, 2, *summary["train_shape"])  # FLAIR and T1
    state = load_checkpoint(result.out_dir / "checkpoints" / "last.pt")["model"]
    assert parameters == sum(tensor.numel() for tensor in state.values())
