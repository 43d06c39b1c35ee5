"""Soft-label training targets and the guard against reusing a run made under other profile settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from volbias import profiles
from volbias.data import load_task
from volbias.training import ConfigError, RunConfig, run
from volbias.training.batches import build_training_set

BASE = {"task": "synthetic", "loss": "ce", "fold": 0, "seed": 0, "profile": "smoke", "device": "cpu"}


def test_soft_targets_are_the_marginals_and_rater_targets_the_draws() -> None:
    cases = load_task("synthetic", n_cases=3, size=32, n_raters=3, seed=1).cases
    soft = build_training_set(cases, torch.device("cpu"), multiple=1, target_mode="soft")
    rater = build_training_set(cases, torch.device("cpu"), multiple=1, target_mode="rater")
    assert soft.targets.shape[1] == 1 and rater.targets.shape[1] == 3
    for i, case in enumerate(cases):
        np.testing.assert_allclose(soft.targets[i, 0].numpy(), case.marginals, atol=1e-7)
        np.testing.assert_array_equal(rater.targets[i].numpy(), case.raters)
    with pytest.raises(ValueError, match="targets='mean'"):
        build_training_set(cases, torch.device("cpu"), target_mode="mean")
    with pytest.raises(ConfigError, match="targets='mean' unknown"):
        RunConfig.from_dict({**BASE, "training": {"targets": "mean"}})


def test_run_dir_made_under_other_profile_settings_is_refused(tmp_path: Path, monkeypatch) -> None:
    config = RunConfig.from_dict({**BASE, "training": {"epochs": 1}})
    run(config, tmp_path / "run")
    assert run(config, tmp_path / "run").trained is False  # same settings: the finished run is reused

    smoke = profiles.get_profile("smoke")
    overrides = {**smoke.task_overrides, "synthetic": {**smoke.task_overrides["synthetic"], "n_cases": 12}}
    monkeypatch.setitem(profiles._PROFILES, "smoke", dataclasses.replace(smoke, task_overrides=overrides))
    assert config.resolved_task_options()["n_cases"] == 12
    with pytest.raises(ConfigError, match="other profile settings"):
        run(config, tmp_path / "run")
