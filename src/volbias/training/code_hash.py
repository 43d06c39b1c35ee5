"""A hash of the code that decides what a training run computes, so that stored runs can be checked against it.

Two runs with the same configuration and the same hash are made by the same training code: the data loaders
and registry (folds, checksums), the network, the losses, the profiles, the training loop and the evaluation
(with the theory it calls for the phantoms' expected Dice). Code that only reads, analyses or presents runs is
not part of it, nor the convergence rule (it is re-applied to the train logs whenever runs are read).
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
"""The ``volbias`` package folder."""

TRAINING_CODE: tuple[str, ...] = (
    "data/*.py", "registry/*.json", "registry/*.txt", "models.py", "profiles.py", "metrics.py", "losses/*.py",
    "training/batches.py", "training/checkpoint.py", "training/config.py", "training/evaluation.py",
    "training/loop.py", "training/run.py", "training/schedules.py",
    "theory/_arrays.py", "theory/_checks.py", "theory/_dice_integral.py", "theory/_dice_search.py",
    "theory/blob_shift.py", "theory/expected_dice.py", "theory/poisson_binomial.py",
)
"""Files of the package (glob patterns relative to it) whose content defines the training code."""


def training_files(package: Path = PACKAGE) -> list[str]:
    """The files of :data:`TRAINING_CODE` that exist in ``package``, relative to it, sorted."""
    return sorted({p.relative_to(package).as_posix() for pattern in TRAINING_CODE for p in package.glob(pattern)})


def hash_files(names: list[str], read: Callable[[str], bytes]) -> str:
    """sha256 over the files' names and contents (``read(name)`` gives a file's bytes), first 16 hex digits."""
    digest = hashlib.sha256()
    for name in sorted(names):
        content = read(name)
        digest.update(f"{name}\0{len(content)}\0".encode())
        digest.update(content)
    return digest.hexdigest()[:16]


@lru_cache(maxsize=1)
def training_code_hash() -> str:
    """The hash of the training code this process runs."""
    return hash_files(training_files(), lambda name: (PACKAGE / name).read_bytes())


def training_code_hash_at(commit: str, repo: Path | None = None) -> str:
    """The hash of the training code as committed in ``commit`` of the git repository holding the package.

    Raises ValueError (one line) when git cannot show the commit's files.
    """
    repo = repo or PACKAGE.parents[1]
    prefix = PACKAGE.relative_to(repo).as_posix()
    listing = _git(repo, "ls-tree", "-r", "--name-only", commit, "--", prefix).decode().split()
    names = [name[len(prefix) + 1:] for name in listing]
    wanted = {name for name in names for pattern in TRAINING_CODE if Path(name).match(pattern)
              and Path(name).parent == Path(pattern).parent}
    return hash_files(sorted(wanted), lambda name: _git(repo, "show", f"{commit}:{prefix}/{name}"))


def _git(repo: Path, *args: str) -> bytes:
    try:
        result = subprocess.run(["git", *args], cwd=repo, capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as err:
        raise ValueError(f"git {' '.join(args[:2])} in {repo}: {err}") from None
    return result.stdout
