"""The convergence rule on synthetic training curves, and its records in a real run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from volbias.training.convergence import CE_VOLUME_RATIO, LOSS_TOLERANCE, assess, relative_change


def _log(losses: np.ndarray, ratios: np.ndarray | None = None, stages: np.ndarray | None = None) -> pd.DataFrame:
    n = len(losses)
    return pd.DataFrame({
        "epoch": np.arange(1, n + 1), "stage": np.zeros(n, int) if stages is None else stages,
        "train_loss": losses, "soft_volume_ratio": np.ones(n) if ratios is None else ratios,
    })


def test_relative_change_compares_the_means_of_the_two_halves() -> None:
    values = np.array([2.0, 1.9, 1.8, 1.7, 1.6])  # halves (2.0, 1.9) and (1.7, 1.6); the middle 1.8 is left out
    assert relative_change(values) == pytest.approx((1.65 - 1.95) / 1.8)
    assert relative_change(np.array([1.0, 3.0])) == pytest.approx(1.0)


def test_a_flat_noisy_curve_is_converged() -> None:
    rng = np.random.default_rng(0)  # 5 % epoch-to-epoch noise, as sampled annotations give
    losses = np.concatenate([np.linspace(1.0, 0.2, 60), 0.2 * (1 + 0.05 * rng.standard_normal(40))])
    verdict = assess(_log(losses), "sd")
    assert verdict.converged, verdict.reason
    assert verdict.window == 20  # the last fifth of 100 epochs
    assert abs(verdict.loss_change) < LOSS_TOLERANCE


def test_a_still_falling_curve_is_not_converged() -> None:
    losses = np.exp(-np.linspace(0.0, 2.0, 100))  # still falls ~ 2 % per epoch at the end
    verdict = assess(_log(losses), "sd")
    assert not verdict.converged
    tail = losses[-20:]
    assert verdict.loss_change == pytest.approx((tail[10:].mean() - tail[:10].mean()) / tail.mean())
    assert verdict.loss_change < -LOSS_TOLERANCE and "changed" in verdict.reason


@pytest.mark.parametrize("ratio, expected", [(1.0, True), (1.3, False), (0.8, False)])
def test_ce_needs_a_calibrated_training_volume(ratio: float, expected: bool) -> None:
    losses = np.full(50, 0.1)
    verdict = assess(_log(losses, ratios=np.full(50, ratio)), "ce")
    assert verdict.converged is expected
    assert verdict.volume_ratio == pytest.approx(ratio)
    assert (CE_VOLUME_RATIO[0] <= ratio <= CE_VOLUME_RATIO[1]) is expected
    # the same curve trained with soft Dice ignores the ratio: SD's optimum is not calibrated
    assert assess(_log(losses, ratios=np.full(50, ratio)), "sd").converged


def test_two_stage_runs_are_judged_on_their_final_stage() -> None:
    first = np.linspace(1.0, 0.5, 50)  # CE stage, still falling when the SD stage starts
    second = np.full(50, 0.3)
    log = _log(np.concatenate([first, second]), stages=np.repeat([0, 1], 50))
    verdict = assess(log, "sd")
    assert verdict.converged and verdict.window == 10


def test_too_few_epochs_are_not_converged() -> None:
    assert not assess(_log(np.array([0.5, 0.4])), "sd").converged
    assert not assess(_log(np.array([])), "sd").converged


def test_a_change_within_the_noise_counts_as_settled_up_to_twice_the_tolerance() -> None:
    rng = np.random.default_rng(1)
    flat = 1.0 + 0.15 * rng.standard_normal(10)  # very noisy epochs around a flat mean
    verdict = assess(_log(flat), "sd")
    first, second = flat[:5], flat[5:]
    error = np.sqrt(first.var(ddof=1) / 5 + second.var(ddof=1) / 5) / flat.mean()
    assert verdict.change_error == pytest.approx(error)
    expected = abs(verdict.loss_change) < LOSS_TOLERANCE or (
        abs(verdict.loss_change) < 2 * LOSS_TOLERANCE and abs(verdict.loss_change) < 2 * error)
    assert verdict.converged is expected
    # a clean drop of 8 %: above the tolerance and far outside its tiny noise
    drop = np.r_[np.full(5, 1.0), np.full(5, 0.92)] * (1 + 1e-4 * rng.standard_normal(10))
    assert not assess(_log(drop), "sd").converged
    # the same drop hidden in noise of 10 % per epoch is within the noise
    noisy = np.r_[np.full(5, 1.0), np.full(5, 0.92)] + 0.1 * np.array([1, -1, 1, -1, 0, 0, 1, -1, 1, -1])
    assert assess(_log(noisy), "sd").converged
    # a 12 % drop is too large whatever the noise
    big = np.r_[np.full(5, 1.0), np.full(5, 0.88)] + 0.2 * np.array([1, -1, 1, -1, 0, 0, 1, -1, 1, -1])
    assert not assess(_log(big), "sd").converged


def test_a_run_records_its_training_dice_and_soft_volume_ratio(tmp_path) -> None:
    """With a learning rate of 0 the network of the one epoch is the saved one, so the epoch's records must
    equal a fresh prediction of the training phantoms (one label draw each, so the draw is the label)."""
    import torch

    from volbias.data import load_task
    from volbias.models import ModelSpec, masked_probabilities
    from volbias.metrics import dice
    from volbias.training import run
    from volbias.training.checkpoint import load_checkpoint

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
    ratio = sum(p.sum() for p in probs) / sum(c.label.sum() for c in train)
    mean_dice = np.mean([dice(p > 0.5, c.label > 0.5) for p, c in zip(probs, train)])
    assert log.soft_volume_ratio.iloc[0] == pytest.approx(ratio, rel=1e-4)
    assert log.train_dice.iloc[0] == pytest.approx(mean_dice, abs=1e-6)
    cases = result.cases()
    expected = assess(log, "ce")
    assert not expected.converged  # one epoch is never enough
    assert (cases.converged == expected.converged).all() and (cases.convergence == expected.reason).all()
