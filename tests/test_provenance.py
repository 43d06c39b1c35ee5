"""Provenance of results: environment description and the profile table of the reproducibility page."""

from __future__ import annotations

import dataclasses
import os

import torch

from volbias import profiles
from volbias.provenance import describe_environment, profile_table


def test_environment_names_versions_and_hardware() -> None:
    env = describe_environment()
    assert env["torch"] == torch.__version__
    if not torch.cuda.is_available():
        assert env["hardware"].startswith(f"{os.cpu_count()} CPU cores")
    assert set(env) >= {"python", "volbias", "commit", "monai", "numpy", "platform"}


def test_profile_table_lists_every_setting_of_every_profile() -> None:
    table = profile_table()
    assert list(table.columns) == list(profiles.PROFILE_NAMES)
    for name in profiles.PROFILE_NAMES:
        profile = profiles.get_profile(name)
        for item in dataclasses.fields(profile):
            value = getattr(profile, item.name)
            if not isinstance(value, dict) and not hasattr(value, "items"):
                assert table.loc[item.name, name] == str(value)
