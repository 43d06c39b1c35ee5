"""sweep: every combination of tasks x losses x folds x seeds, one run directory each, run by a launcher.

Complete runs are skipped, so an interrupted or partly failed sweep is finished by running it again; see
:mod:`volbias.training.launchers` for the launchers and :mod:`volbias.training.collect` for the results.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from .config import RunConfig
from .grid import sweep_cells
from .launchers import SweepReport, launch


def sweep_configs(tasks: Sequence[str], losses: Sequence[str], folds: Sequence[int], seeds: Sequence[int],
                  profile: str = "cpu", device: str = "auto",
                  task_options: Mapping[str, Mapping[str, Any]] | None = None,
                  loss_options: Mapping[str, Mapping[str, Any]] | None = None,
                  training: Mapping[str, Any] | None = None) -> list[RunConfig]:
    """The validated configs of a sweep (raises on the first invalid one); options are keyed by name."""
    cells = sweep_cells(tasks, losses, folds, seeds, profile, device, task_options, loss_options, training)
    return [cell.config() for cell in cells]


def sweep(tasks: Sequence[str], losses: Sequence[str], folds: Sequence[int], seeds: Sequence[int],
          out_root: str | os.PathLike[str], profile: str = "cpu", device: str = "auto",
          task_options: Mapping[str, Mapping[str, Any]] | None = None,
          loss_options: Mapping[str, Mapping[str, Any]] | None = None,
          training: Mapping[str, Any] | None = None, progress: bool = True, launcher: str = "local",
          workers: int = 1, cpus_per_run: int | None = None, slurm: Any = None) -> SweepReport:
    """Run every combination into ``out_root/<task>/<loss>/fold<k>-seed<s>``; complete runs are skipped.

    ``launcher``, ``workers``, ``cpus_per_run`` and ``slurm`` (a :class:`volbias.training.cluster.SlurmOptions`)
    are those of :func:`volbias.training.launchers.launch`. A failed run is recorded in its ``ERROR`` file and
    the sweep goes on; the report lists it.
    """
    cells = sweep_cells(tasks, losses, folds, seeds, profile, device, task_options, loss_options, training)
    return launch(cells, out_root, launcher=launcher, workers=workers, cpus_per_run=cpus_per_run, slurm=slurm,
                  progress=progress)
