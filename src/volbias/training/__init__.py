"""Training the paper's network: run configs, loss schedules, resumable runs and sweeps.

``run(config, out_dir)`` trains one fold with one loss schedule and writes its run directory (see
:mod:`volbias.training.run`); ``sweep(...)`` runs tasks x losses x folds x seeds through a launcher (local
worker processes, a SLURM job array, or in-process for tests; :mod:`volbias.training.launchers`), and
``collect(runs_dir)`` merges a grid's results (:mod:`volbias.training.collect`).
"""

from .cluster import SlurmOptions
from .collect import collect
from .config import ConfigError, RunConfig
from .launchers import LaunchError, SweepReport, launch
from .run import RunResult, is_complete, run
from .schedules import plan_stages, split_schedule
from .sweep import sweep, sweep_configs

__all__ = ["ConfigError", "LaunchError", "RunConfig", "RunResult", "SlurmOptions", "SweepReport", "collect",
           "is_complete", "launch", "plan_stages", "run", "split_schedule", "sweep", "sweep_configs"]
