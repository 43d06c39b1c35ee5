"""The files of a run directory: their schema and their readers, in one place.

:func:`volbias.training.run` writes them (see its module docstring); everything that reads them — ``collect``,
the analysis, the result sets, the audit's export — reads them through this module:

- ``cases.csv``: one row per held-out case, columns :data:`CASE_COLUMNS` in that order (more may follow:
  ``dice_raters`` for multi-rater data, ``expected_dice`` for phantoms); volumes in the case's own unit
  (``volume_unit``: ml, or pixels / voxels where the data have no physical spacing), written once by the
  training code from :attr:`volbias.data.case.Case.volume_unit`;
- ``train_log.csv``: one row per epoch (:data:`TRAIN_LOG_COLUMNS`);
- ``summary.json``: timing and throughput; ``config.yaml``: the run's configuration; ``DONE``: the marker.

A run's convergence is not read from a file: :func:`read_run` recomputes it from ``train_log.csv`` with the
current rule (:mod:`volbias.training.convergence`), so a changed rule never needs retraining.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from .convergence import Convergence, assess

CASE_COLUMNS: tuple[str, ...] = (
    "task", "loss", "fold", "seed", "case_id", "split", "dice", "true_volume", "expected_volume",
    "pred_volume_soft", "pred_volume_hard", "voxel_volume_ml", "volume_unit", "profile",
)
"""Columns every ``cases.csv`` written by the training code has, in this order."""

REQUIRED_CASE_COLUMNS: tuple[str, ...] = (
    "task", "loss", "fold", "seed", "case_id", "dice", "true_volume", "expected_volume",
    "pred_volume_soft", "pred_volume_hard", "voxel_volume_ml",
)
"""Columns a ``cases.csv`` must hold to be read (tables made by hand or by older versions may lack the rest)."""

TRAIN_LOG_COLUMNS: tuple[str, ...] = (
    "epoch", "stage", "loss", "train_loss", "train_dice", "soft_volume_ratio", "null_loss", "null_dice", "lr",
    "seconds",
)
"""Columns of ``train_log.csv``, one row per epoch."""

RUN_FILES: tuple[str, ...] = ("config.yaml", "cases.csv", "train_log.csv", "summary.json")
"""The files that make a run's record (what a stored result set keeps of each run)."""

DONE = "DONE"


def flatten_options(options: Mapping[str, Any] | None, prefix: str) -> dict[str, Any]:
    """Flatten a (possibly nested) options mapping into ``{prefix.key: value}`` columns."""
    flat: dict[str, Any] = {}
    for key, value in (options or {}).items():
        name = f"{prefix}.{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_options(value, name))
        else:
            flat[name] = value
    return flat


def setting_label(options: Mapping[str, Any] | None) -> str:
    """A canonical, readable label of a run's task options, e.g. ``"noise=shift, sigma=2.0"``."""
    flat = flatten_options(options, "")
    return ", ".join(f"{key[1:]}={flat[key]}" for key in sorted(flat)) or "default"


def read_cases(path: str | Path) -> pd.DataFrame:
    """Read one ``cases.csv`` and check that it has the required columns."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such cases.csv")
    frame = pd.read_csv(path, dtype={"case_id": str})
    missing = [col for col in REQUIRED_CASE_COLUMNS if col not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {missing}")
    return frame


def read_train_log(run_dir: str | Path) -> pd.DataFrame:
    """A run's ``train_log.csv`` (an empty table when the run has none)."""
    path = Path(run_dir) / "train_log.csv"
    return pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=list(TRAIN_LOG_COLUMNS))


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """A run's ``config.yaml`` as a mapping (empty when the run has none)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return {}
    config = yaml.safe_load(path.read_text()) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: expected a mapping")
    return config


def read_summary(run_dir: str | Path) -> dict[str, Any]:
    """A run's ``summary.json`` (empty when missing or unreadable)."""
    path = Path(run_dir) / "summary.json"
    try:
        value = json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def run_convergence(run_dir: str | Path) -> Convergence:
    """The convergence rule applied now to a run's train log (the final stage's loss read from the log)."""
    log = read_train_log(run_dir)
    final_loss = str(log["loss"].iloc[-1]) if len(log) and "loss" in log.columns else "loss"
    return assess(log, final_loss)


def read_run(run_dir: str | Path) -> pd.DataFrame:
    """Cases of one finished run directory, with its configuration and convergence attached as columns.

    Adds ``run`` (the directory name), ``run_dir``, ``profile``, ``setting`` (label of the task options), one
    ``task_options.<key>`` / ``loss_options.<key>`` / ``training.<key>`` column per option the config sets, and
    ``converged`` / ``convergence`` from :func:`run_convergence` (replacing any recorded at training time).
    """
    run_dir = Path(run_dir)
    frame = read_cases(run_dir / "cases.csv")
    config = read_config(run_dir)
    frame["run"] = run_dir.name
    frame["run_dir"] = str(run_dir)
    frame["profile"] = config.get("profile", frame["profile"].iloc[0] if "profile" in frame and len(frame)
                                  else "unknown")
    frame["setting"] = setting_label(config.get("task_options"))
    extra = flatten_options(config.get("task_options"), "task_options")
    extra.update(flatten_options(config.get("loss_options"), "loss_options"))
    extra.update(flatten_options(config.get("training"), "training"))
    for column, value in extra.items():
        frame[column] = str(value) if isinstance(value, (list, tuple)) else value  # one cell per row
    convergence = run_convergence(run_dir)
    frame["converged"] = convergence.converged
    frame["convergence"] = convergence.reason
    return frame


def find_runs(root: str | Path) -> list[Path]:
    """Finished run directories (holding ``cases.csv`` and a ``DONE`` marker) below ``root``, sorted."""
    root = Path(root)
    if not root.exists():
        return []
    return sorted(p.parent for p in root.rglob("cases.csv") if (p.parent / DONE).exists())


def empty_cases(extra: Iterable[str] = ()) -> pd.DataFrame:
    """A cases table without rows: the columns :func:`read_run` gives, plus ``extra``."""
    return pd.DataFrame(columns=[*CASE_COLUMNS, "run", "run_dir", "setting", "converged", "convergence", *extra])


def load_runs(roots: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """Concatenate the cases of every finished run below one or several roots (empty frame if none)."""
    if isinstance(roots, (str, Path)):
        roots = [roots]
    frames = [read_run(run) for root in roots for run in find_runs(root)]
    return pd.concat(frames, ignore_index=True) if frames else empty_cases()
