"""Training the paper's network: run configs, loss schedules, resumable runs and sweeps.

``run(config, out_dir)`` trains one fold with one loss schedule and writes its run directory (see
:mod:`volbias.training.run`); ``sweep(...)`` runs tasks x losses x folds x seeds.
"""

from .config import ConfigError, RunConfig
from .run import RunResult, is_complete, run
from .schedules import plan_stages, split_schedule
from .sweep import sweep, sweep_configs

__all__ = ["ConfigError", "RunConfig", "RunResult", "is_complete", "plan_stages", "run", "split_schedule",
           "sweep", "sweep_configs"]
