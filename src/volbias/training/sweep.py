"""sweep: every combination of tasks x losses x folds x seeds, one run directory each, skipping finished runs."""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

from tqdm import tqdm

from .config import RunConfig
from .run import RunResult, is_complete, run


def sweep_configs(tasks: Sequence[str], losses: Sequence[str], folds: Sequence[int], seeds: Sequence[int],
                  profile: str = "cpu", device: str = "auto",
                  task_options: Mapping[str, Mapping[str, Any]] | None = None,
                  loss_options: Mapping[str, Mapping[str, Any]] | None = None,
                  training: Mapping[str, Any] | None = None) -> list[RunConfig]:
    """The validated configs of a sweep; ``task_options`` / ``loss_options`` are keyed by task / loss name."""
    task_options = task_options or {}
    loss_options = loss_options or {}
    return [
        RunConfig.from_dict({"task": task, "loss": loss, "fold": fold, "seed": seed, "profile": profile,
                             "device": device, "task_options": dict(task_options.get(task, {})),
                             "loss_options": dict(loss_options.get(loss, {})), "training": dict(training or {})},
                            source=f"sweep {task}/{loss}/fold{fold}/seed{seed}")
        for task, loss, fold, seed in itertools.product(tasks, losses, folds, seeds)
    ]


def sweep(tasks: Sequence[str], losses: Sequence[str], folds: Sequence[int], seeds: Sequence[int],
          out_root: str | os.PathLike[str], profile: str = "cpu", device: str = "auto",
          task_options: Mapping[str, Mapping[str, Any]] | None = None,
          loss_options: Mapping[str, Mapping[str, Any]] | None = None,
          training: Mapping[str, Any] | None = None, progress: bool = True) -> list[RunResult]:
    """Run every combination into ``out_root/<task>/<loss>/fold<k>-seed<s>``; finished runs are skipped."""
    configs = sweep_configs(tasks, losses, folds, seeds, profile, device, task_options, loss_options, training)
    out_root = Path(out_root)
    results = []
    done = sum(is_complete(out_root / c.run_name()) for c in configs)
    bar = tqdm(configs, desc="sweep", disable=not progress, initial=0, total=len(configs))
    if progress and done:
        bar.write(f"{done} of {len(configs)} runs already complete; skipping them")
    for config in bar:
        bar.set_postfix_str(config.run_name())
        results.append(run(config, out_root / config.run_name(), progress=progress))
    bar.close()
    return results
