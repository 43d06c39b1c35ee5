"""Where a result comes from: the software, the hardware and the profile of the computation."""

from __future__ import annotations

import dataclasses
import os
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str:
    try:
        result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parent, check=False, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return result.stdout.strip() or "unknown"


def describe_environment() -> dict[str, str]:
    """Versions, hardware and commit of the running computation, as short strings."""
    import monai
    import numpy
    import torch

    import volbias

    if torch.cuda.is_available():
        hardware = f"{torch.cuda.get_device_name(0)} GPU"
    else:
        hardware = f"{os.cpu_count()} CPU cores ({_cpu_model()})"
    return {
        "hardware": hardware,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "volbias": volbias.__version__,
        "commit": _git_commit(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "numpy": numpy.__version__,
    }


def profile_table() -> pd.DataFrame:
    """One column per profile (smoke, cpu, gpu), one row per setting of :mod:`volbias.profiles`."""
    from volbias.profiles import PROFILE_NAMES, get_profile

    columns = {}
    for name in PROFILE_NAMES:
        profile = get_profile(name)
        columns[name] = {}
        for item in dataclasses.fields(profile):
            value = getattr(profile, item.name)
            if isinstance(value, Mapping):
                value = "; ".join(f"{task}: {dict(options)}" for task, options in value.items())
            columns[name][item.name] = str(value)
    return pd.DataFrame(columns)
