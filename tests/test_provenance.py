"""Provenance of results: environment description and the profile table of the reproducibility page."""

from __future__ import annotations

import ast
import dataclasses
import os
from collections.abc import Mapping

import torch

from volbias import profiles
from volbias.provenance import describe_environment, profile_table


def test_environment_names_versions_and_hardware() -> None:
    env = describe_environment()
    assert env["torch"] == torch.__version__
    if not torch.cuda.is_available():
        assert env["hardware"].startswith(f"{os.cpu_count()} CPU cores")
    assert set(env) >= {"python", "volbias", "commit", "monai", "numpy", "platform"}


def read_cell(text: str, like: object) -> object:
    """A table cell read back into a value of the type of ``like`` (per-task mappings: ``task: {...}; ...``)."""
    if isinstance(like, str):
        return text
    if isinstance(like, Mapping):
        pairs = [item.split(": ", 1) for item in text.split("; ")] if text else []
        return {task: ast.literal_eval(options) for task, options in pairs}
    return ast.literal_eval(text)


def test_profile_table_reads_back_to_every_setting_of_every_profile() -> None:
    table = profile_table()
    assert list(table.columns) == list(profiles.PROFILE_NAMES)
    for name in profiles.PROFILE_NAMES:
        profile = profiles.get_profile(name)
        assert set(table.index) == {item.name for item in dataclasses.fields(profile)}
        for item in dataclasses.fields(profile):
            value = getattr(profile, item.name)
            expected = {task: dict(options) for task, options in value.items()} if isinstance(value, Mapping) \
                else value
            assert read_cell(table.loc[item.name, name], value) == expected, (name, item.name)


def test_gpu_column_states_the_papers_settings() -> None:
    """The paper's scale (paper-facts.md): full width, batch 2, Adam at 1e-3, L2 1e-5, 2 mm grid for BraTS."""
    gpu = profile_table()["gpu"]
    assert float(gpu["width"]) == 1.0 and int(gpu["batch_size"]) == 2
    assert float(gpu["lr"]) == 1e-3 and float(gpu["weight_decay"]) == 1e-5
    assert read_cell(gpu["task_overrides"], {})["BR18"]["spacing"] == 2.0
