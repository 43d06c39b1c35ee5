"""Building blocks of training: profiles, configs, schedules, batch sampling, checkpoints."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from volbias.data import Case
from volbias.profiles import get_profile
from volbias.training import ConfigError, RunConfig, plan_stages
from volbias.training.batches import build_training_set, iterate_batches, plan_epoch
from volbias.training.checkpoint import load_checkpoint, restore_rng_states, rng_states, save_checkpoint
from volbias.training.schedules import build_optimizer

BASE = {"task": "synthetic", "loss": "ce", "fold": 0, "seed": 0, "profile": "smoke", "device": "cpu"}


def test_profiles_and_overrides() -> None:
    smoke, cpu, gpu = (get_profile(n) for n in ("smoke", "cpu", "gpu"))
    assert smoke.epochs < cpu.epochs < gpu.epochs and gpu.width == 1.0
    assert get_profile("cpu", epochs=3).epochs == 3
    with pytest.raises(ValueError, match="unknown profile"):
        get_profile("tpu")
    with pytest.raises(ValueError, match="unknown setting"):
        get_profile("cpu", momentum=0.9)
    # per-task data and training settings, overridden by the config
    config = RunConfig.from_dict({**BASE, "task": "BR18-sample", "profile": "cpu", "task_options": {"spacing": 6.0}})
    assert config.resolved_task_options()["spacing"] == 6.0
    task_training = get_profile("cpu").task_training["BR18-sample"]
    assert config.resolved_profile().epochs == task_training["epochs"] != get_profile("cpu").epochs
    assert config.resolved_profile().width == task_training["width"] != get_profile("cpu").width
    config3d = RunConfig.from_dict({**BASE, "profile": "cpu", "task_options": {"dims": 3}, "training": {"epochs": 7}})
    assert config3d.resolved_task_options()["size"] == 27 and config3d.resolved_profile().epochs == 7


def test_config_round_trip_and_errors(tmp_path: Path) -> None:
    config = RunConfig.from_dict({**BASE, "loss_options": {"reduction": "batch"}})
    path = tmp_path / "c.yaml"
    path.write_text(config.to_yaml())
    assert RunConfig.from_yaml(path) == config
    with pytest.raises(ConfigError, match="missing key"):
        RunConfig.from_dict({"task": "synthetic"})
    with pytest.raises(ConfigError, match="device='tpu'"):
        RunConfig.from_dict({**BASE, "device": "tpu"})
    path.write_text("task: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        RunConfig.from_yaml(path)


def test_plan_stages() -> None:
    (single,) = plan_stages("sd", {"eps": 1.0}, 10, 0.5)
    assert (single.loss, single.first_epoch, single.last_epoch, dict(single.options)) == ("sd", 0, 10, {"eps": 1.0})
    first, second = plan_stages("ce-sd", {"eps": 1.0}, 10, 0.3)
    assert (first.loss, first.epochs, dict(first.options)) == ("ce", 3, {})
    assert (second.loss, second.first_epoch, second.epochs, dict(second.options)) == ("sd", 3, 7, {"eps": 1.0})
    assert [s.loss for s in plan_stages("ce-dml", {}, 4, 0.5)] == ["ce", "dml"]
    with pytest.raises(ValueError, match="unknown"):
        plan_stages("sd-ce", {}, 10, 0.5)


def test_step_schedule_divides_by_ten_after_four_and_six_sevenths() -> None:
    model = torch.nn.Linear(2, 1)
    optimizer, scheduler = build_optimizer(model, 0.7, 0.0, "step", epochs=7, steps_per_epoch=100)
    rates = []
    for _ in range(700):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    rates = np.array(rates)
    steps_at = {0.7: np.sum(np.isclose(rates, 0.7)), 0.07: np.sum(np.isclose(rates, 0.07)),
                0.007: np.sum(np.isclose(rates, 0.007))}
    assert steps_at == {0.7: 400, 0.07: 200, 0.007: 100}  # 300/525, 150/525, 75/525 of the 700 steps
    assert np.all(np.diff(rates) <= 0)


def test_cosine_schedule_reaches_one_percent() -> None:
    model = torch.nn.Linear(2, 1)
    optimizer, scheduler = build_optimizer(model, 0.1, 0.0, "cosine", epochs=2, steps_per_epoch=5)
    for _ in range(10):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.001)


def _cases(n: int, raters: int) -> list[Case]:
    cases = []
    for i in range(n):
        shape = (5 + i, 7)
        draws = np.stack([np.full(shape, 10 * i + r, dtype=np.float32) for r in range(raters)])
        cases.append(Case(id=f"c{i}", image=np.full((1, *shape), float(i), np.float32), label=draws[0],
                          mask=np.ones(shape, bool), spacing=(1.0, 1.0), raters=draws))
    return cases


def test_batches_sample_one_rater_per_case_and_pad_with_mask_zero() -> None:
    train = build_training_set(_cases(6, raters=3), torch.device("cpu"), multiple=9)
    assert train.spatial_shape == (18, 9)  # largest case (10 x 7) padded to multiples of 9
    generator = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(20):
        plan = plan_epoch(train, generator)
        order = []
        for image, target, mask in iterate_batches(train, plan, batch_size=4):
            for img, tgt, msk in zip(image, target, mask):
                case = int(img[0, 0, 0])
                order.append(case)
                rater = int(tgt[0, 0, 0]) - 10 * case
                assert rater == int(plan.raters[case]) and 0 <= rater < 3
                seen.add((case, rater))
                rows = 5 + case
                assert msk[0, :rows, :7].all() and not msk[0, rows:].any() and not msk[0, :, 7:].any()
                assert (img[0, rows:] == case).all()  # padded with the case's background (its minimum)
        assert sorted(order) == list(range(6))  # every case once per epoch
    assert len(seen) == 18  # every rater of every case was drawn at some epoch


def test_patches_are_random_crops_of_the_padded_case() -> None:
    train = build_training_set(_cases(2, raters=1), torch.device("cpu"), patch_size=(4, 3))
    assert train.sample_shape == (4, 3)
    plan = plan_epoch(train, torch.Generator().manual_seed(1))
    (image, target, mask), = list(iterate_batches(train, plan, batch_size=2))
    assert image.shape == (2, 1, 4, 3) and target.shape == (2, 1, 4, 3) and mask.shape == (2, 1, 4, 3)
    for i, offset in enumerate(plan.offsets):
        full = train.images[plan.order[i], 0]
        assert torch.equal(image[i, 0], full[offset[0]:offset[0] + 4, offset[1]:offset[1] + 3])


def test_patch_offsets_reach_both_ends_of_their_range() -> None:
    """Over many epochs the crop offsets of each axis take every value from 0 to size - patch, ends included."""
    train = build_training_set(_cases(2, raters=1), torch.device("cpu"), patch_size=(4, 3))
    highs = [s - p for s, p in zip(train.spatial_shape, (4, 3))]
    generator = torch.Generator().manual_seed(2)
    seen = [set(), set()]
    for _ in range(200):
        for offset in plan_epoch(train, generator).offsets:
            for axis, value in enumerate(offset):
                seen[axis].add(value)
    assert all(high > 0 for high in highs)
    assert seen == [set(range(high + 1)) for high in highs]


def test_checkpoint_round_trip_with_weights_only(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(5)
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    model = torch.nn.Linear(3, 1)
    state = {"epoch": 4, "log": [{"epoch": 1, "train_loss": 0.5}], "rng": rng_states(generator),
             "model": model.state_dict()}
    path = tmp_path / "ck" / "last.pt"
    save_checkpoint(path, state)
    expected = (torch.rand(3, generator=generator), torch.rand(2), np.random.rand(2), random.random())
    loaded = load_checkpoint(path)
    other = torch.Generator().manual_seed(99)
    restore_rng_states(loaded["rng"], other)
    again = (torch.rand(3, generator=other), torch.rand(2), np.random.rand(2), random.random())
    assert torch.equal(expected[0], again[0]) and torch.equal(expected[1], again[1])
    assert np.array_equal(expected[2], again[2]) and expected[3] == again[3]
    assert loaded["epoch"] == 4 and loaded["log"] == state["log"]
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]  # no temporary files left behind


def test_foreground_fraction_and_output_prior() -> None:
    cases = _cases(3, raters=2)
    for case in cases:  # binary draws: rater r of case i marks its first r + 1 rows
        case.raters = np.stack([(np.arange(case.label.shape[0])[:, None] <= r) * np.ones_like(case.label)
                                for r in range(2)]).astype(np.float32)
    train = build_training_set(cases, torch.device("cpu"), multiple=9)
    marked = sum(c.raters.sum() / 2 for c in cases)  # mean over each case's raters
    assert train.foreground_fraction() == pytest.approx(marked / sum(c.mask.sum() for c in cases))
    from volbias.models import build_model

    model = build_model(2, 1, width=0.1)
    model.set_output_prior(0.2)
    assert float(torch.sigmoid(model.head.conv.bias.detach())) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="prior"):
        model.set_output_prior(1.0)
