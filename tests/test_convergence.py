"""The convergence rule (volbias.training.convergence) on hand-made train logs, and what a run records for it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from volbias.training.convergence import (
    LOSS_TOLERANCE,
    MIN_TREND_EPOCHS,
    NULL_DICE_MARGIN,
    NULL_LOSS_MARGIN,
    assess,
    relative_trend,
    trend_stretch,
)
from volbias.training.schedules import step_decay_factor

PRIOR = 0.05
PRIOR_ENTROPY = -(PRIOR * np.log(PRIOR) + (1 - PRIOR) * np.log(1 - PRIOR))


def step_lr(epochs: int, steps_per_epoch: int = 10, lr: float = 3e-3) -> np.ndarray:
    """The learning rate at each epoch's first step under the authors' step decay."""
    total = epochs * steps_per_epoch
    return np.array([lr * step_decay_factor(e * steps_per_epoch, total) for e in range(epochs)])


def make_log(losses: np.ndarray, *, null_loss: float = 0.5, dice: float = 0.8, null_dice: float = 0.0,
             ratio: float = 1.0, lr: np.ndarray | None = None) -> pd.DataFrame:
    n = len(losses)
    return pd.DataFrame({"epoch": np.arange(1, n + 1), "stage": 0, "loss": "ce", "train_loss": losses,
                         "train_dice": np.full(n, dice), "soft_volume_ratio": np.full(n, ratio),
                         "null_loss": np.full(n, null_loss), "null_dice": np.full(n, null_dice),
                         "lr": step_lr(n) if lr is None else lr, "seconds": 1.0})


def settled(n: int = 70, level: float = 0.2, noise: float = 0.002, seed: int = 0) -> np.ndarray:
    """A loss that falls quickly, then stays at ``level`` (with a little noise)."""
    epochs = np.arange(n)
    rng = np.random.default_rng(seed)
    return level + 0.3 * np.exp(-epochs / 4.0) + noise * rng.standard_normal(n)


def test_a_network_stuck_at_the_prior_is_not_converged_even_with_a_perfect_soft_volume() -> None:
    """CE at the prior's entropy: a flat loss and a training soft-volume ratio of 1.00 from the start."""
    rng = np.random.default_rng(1)
    losses = PRIOR_ENTROPY * (1 + 0.001 * rng.standard_normal(70))
    verdict = assess(make_log(losses, null_loss=PRIOR_ENTROPY, dice=0.0, null_dice=0.0, ratio=1.0), "ce")
    assert not verdict.converged
    assert verdict.loss_to_null == pytest.approx(1.0, abs=0.01)
    assert "null model" in verdict.reason
    assert abs(verdict.loss_change) < LOSS_TOLERANCE  # the trend alone would have passed it


def test_a_log_that_learned_and_settled_is_converged() -> None:
    verdict = assess(make_log(settled(), null_loss=0.5, dice=0.8, null_dice=0.0), "sd")
    assert verdict.converged, verdict.reason
    assert verdict.loss_to_null < 1 - NULL_LOSS_MARGIN and verdict.dice_over_null >= NULL_DICE_MARGIN


def test_the_null_margins_are_applied_as_stated() -> None:
    losses = np.full(70, 0.5 * (1 - NULL_LOSS_MARGIN))
    assert assess(make_log(losses * 0.999, null_loss=0.5), "ce").converged
    assert not assess(make_log(losses * 1.001, null_loss=0.5), "ce").converged
    assert assess(make_log(settled(), dice=0.2 + NULL_DICE_MARGIN + 1e-6, null_dice=0.2), "ce").converged
    dull = assess(make_log(settled(), dice=0.2 + NULL_DICE_MARGIN - 1e-6, null_dice=0.2), "ce")
    assert not dull.converged and "Dice" in dull.reason


def test_the_trend_is_judged_before_the_last_decay_not_where_the_schedule_flattens_it() -> None:
    """Falling by 20 % while the learning rate is lr/10, then flat at lr/100: not converged."""
    lr = step_lr(70)
    losses = np.full(70, 0.3)
    stretch = trend_stretch(make_log(losses))
    assert np.allclose(stretch["lr"], lr.max() / 10) and len(stretch) >= MIN_TREND_EPOCHS
    falling = losses.copy()
    falling[stretch.index] = np.linspace(0.33, 0.27, len(stretch))
    falling[stretch.index[-1] + 1:] = 0.27
    verdict = assess(make_log(falling), "sd")
    assert not verdict.converged and "before the last decay" in verdict.reason
    assert verdict.loss_change == pytest.approx(-0.06 / 0.30, rel=1e-6)
    flat_tail = assess(make_log(np.r_[falling[:stretch.index[0]], np.full(70 - stretch.index[0], 0.27)]), "sd")
    assert flat_tail.converged, flat_tail.reason


def test_a_constant_learning_rate_is_judged_on_the_last_fifth() -> None:
    log = make_log(settled(100), lr=np.full(100, 1e-3))
    assert list(trend_stretch(log).index) == list(range(80, 100))


@pytest.mark.parametrize("change, converged", [(0.049, True), (0.051, False), (-0.049, True), (-0.051, False)])
def test_the_equivalence_margin_of_the_trend(change: float, converged: bool) -> None:
    """A noiseless straight line has a zero-width interval: its change decides, on either side of +-5 %."""
    lr = step_lr(70)
    log = make_log(np.full(70, 0.3), lr=lr)
    stretch = trend_stretch(log).index
    a = 0.3
    b = a * (2 + change) / (2 - change)  # 2 (b - a) / (a + b) = change
    losses = np.full(70, b)
    losses[: stretch[0]] = a
    losses[stretch] = np.linspace(a, b, len(stretch))
    verdict = assess(make_log(losses, lr=lr), "ce")
    assert verdict.loss_change == pytest.approx(change, abs=1e-9)
    assert verdict.converged is converged


def test_a_trend_too_noisy_to_tell_is_not_converged() -> None:
    rng = np.random.default_rng(3)
    noisy = settled(70) + 0.05 * rng.standard_normal(70)  # 25 % noise on a loss of 0.2
    verdict = assess(make_log(noisy), "sd")
    low, high = verdict.change_ci
    assert not verdict.converged and (low < -LOSS_TOLERANCE or high > LOSS_TOLERANCE)


def test_relative_trend_matches_a_least_squares_line_by_hand() -> None:
    rng = np.random.default_rng(5)
    y = 2.0 - 0.01 * np.arange(12) + 0.02 * rng.standard_normal(12)
    x = np.arange(12.0)
    slope = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()
    residuals = y - (y.mean() + slope * (x - x.mean()))
    stderr = np.sqrt((residuals ** 2).sum() / 10 / ((x - x.mean()) ** 2).sum())
    change, low, high = relative_trend(y)
    scale = 11 / y.mean()
    assert change == pytest.approx(slope * scale)
    assert high - change == pytest.approx(stats.t.ppf(0.95, 10) * stderr * scale)
    assert change - low == pytest.approx(high - change)


def test_short_or_old_logs_are_not_converged() -> None:
    assert not assess(make_log(np.array([0.5, 0.4, 0.3])), "sd").converged
    assert not assess(make_log(np.array([])), "sd").converged
    old = make_log(settled()).drop(columns=["null_loss", "null_dice"])
    verdict = assess(old, "ce")
    assert not verdict.converged and "null_loss" in verdict.reason


def test_only_the_final_stage_is_judged() -> None:
    first = make_log(np.linspace(1.0, 0.6, 35))  # still falling when CE pre-training ended
    second = make_log(settled(35, level=0.25)).assign(stage=1, loss="sd")
    assert assess(pd.concat([first, second], ignore_index=True), "sd").converged


def test_a_run_records_its_training_and_null_statistics(tmp_path) -> None:
    """With a learning rate of 0 the network of the one epoch is the saved one, so the epoch's records must
    equal a fresh prediction of the training phantoms (one label draw each, so the draw is the label), and
    the null model's loss and Dice are those of a constant map at the training prior."""
    import torch

    from volbias.data import load_task
    from volbias.metrics import dice
    from volbias.models import ModelSpec, masked_probabilities
    from volbias.training import run
    from volbias.training.checkpoint import load_checkpoint
    from volbias.training.run_files import read_run

    config = {"task": "synthetic", "loss": "ce", "fold": 0, "seed": 3, "profile": "smoke", "device": "cpu",
              "task_options": {"n_raters": 1, "n_cases": 6, "size": 27},
              "training": {"epochs": 1, "lr": 0.0, "weight_decay": 0.0}}
    result = run(config, tmp_path / "run")
    log = pd.read_csv(result.train_log)
    task = load_task("synthetic", **result.config.resolved_task_options())
    train, _ = task.split(0)
    model = ModelSpec(2, 1, "default", result.config.resolved_profile().width).build()
    model.load_state_dict(load_checkpoint(result.out_dir / "checkpoints" / "last.pt")["model"])
    model.eval()
    with torch.no_grad():
        probs = [masked_probabilities(model(torch.from_numpy(c.image)[None]), torch.ones(1, 1, 27, 27))[0, 0].numpy()
                 for c in train]
    labels = np.stack([c.label for c in train]).astype(np.float64)
    ratio = sum(p.sum() for p in probs) / labels.sum()
    mean_dice = np.mean([dice(p > 0.5, c.label > 0.5) for p, c in zip(probs, train)])
    assert log.soft_volume_ratio.iloc[0] == pytest.approx(ratio, rel=1e-4)
    assert log.train_dice.iloc[0] == pytest.approx(mean_dice, abs=1e-6)
    prior = labels.mean()
    null_ce = -np.mean(labels * np.log(prior) + (1 - labels) * np.log(1 - prior))
    assert log.null_loss.iloc[0] == pytest.approx(null_ce, rel=1e-4)
    empty_prediction_dice = np.mean([1.0 if c.label.sum() == 0 else 0.0 for c in train])  # prior < 0.5
    assert log.null_dice.iloc[0] == pytest.approx(empty_prediction_dice)
    cases = read_run(result.out_dir)
    expected = assess(log, "ce")
    assert not expected.converged  # one epoch is never enough
    assert (cases.converged == expected.converged).all() and (cases.convergence == expected.reason).all()
