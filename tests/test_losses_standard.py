"""The "ce" and "sd" losses against formulas computed here by hand, and the registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from volbias.losses import LOSSES, get_loss, register_loss


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def make_batch(seed: int = 0, shape: tuple[int, ...] = (3, 1, 5, 4)) -> tuple[torch.Tensor, ...]:
    rng = np.random.default_rng(seed)
    logits = torch.tensor(rng.normal(0, 2, shape))
    target = torch.tensor(rng.random(shape))  # soft targets
    mask = torch.tensor(rng.random(shape) < 0.7)
    return logits, target, mask


def hand_soft_dice(s: np.ndarray, y: np.ndarray, eps: float, batch: bool) -> float:
    if batch:
        return 1 - (2 * np.sum(s * y) + eps) / (s.sum() + y.sum() + eps)
    scores = [(2 * np.sum(a * b) + eps) / (a.sum() + b.sum() + eps) for a, b in zip(s, y)]
    return 1 - float(np.mean(scores))


@pytest.mark.parametrize("reduction", ["image", "batch"])
@pytest.mark.parametrize("eps", [0.0, 1e-5, 1.0])
def test_soft_dice_matches_the_paper_formula_with_soft_targets_and_mask(reduction: str, eps: float) -> None:
    logits, target, mask = make_batch(1)
    m = mask.numpy().astype(float)
    s = sigmoid(logits.numpy()) * m
    y = target.numpy() * m
    loss = get_loss("sd", reduction=reduction, eps=eps)(logits, target, mask)
    assert loss.item() == pytest.approx(hand_soft_dice(s, y, eps, reduction == "batch"), rel=1e-10)
    unmasked = get_loss("sd", reduction=reduction, eps=eps)(logits, target)
    s_all, y_all = sigmoid(logits.numpy()), target.numpy()
    assert unmasked.item() == pytest.approx(hand_soft_dice(s_all, y_all, eps, reduction == "batch"), rel=1e-10)


def test_cross_entropy_is_the_mean_over_mask_voxels() -> None:
    logits, target, mask = make_batch(2, (2, 1, 3, 3, 3))
    s, y, m = sigmoid(logits.numpy()), target.numpy(), mask.numpy()
    voxel = -(y * np.log(s) + (1 - y) * np.log(1 - s))
    assert get_loss("ce")(logits, target, mask).item() == pytest.approx(voxel[m].mean(), rel=1e-10)
    assert get_loss("ce")(logits, target).item() == pytest.approx(voxel.mean(), rel=1e-10)


def test_gradients_reach_the_logits() -> None:
    logits, target, mask = make_batch(3)
    logits.requires_grad_(True)
    for name in ("ce", "sd"):
        logits.grad = None
        get_loss(name)(logits, target, mask).backward()
        grad = logits.grad.numpy()
        assert np.all(grad[~mask.numpy()] == 0) and np.any(grad[mask.numpy()] != 0)


def test_cross_entropy_minimum_is_the_soft_target() -> None:
    target = torch.tensor([[[0.1, 0.35, 0.8, 0.97]]], dtype=torch.float64)
    logits = torch.zeros_like(target, requires_grad=True)
    optimiser = torch.optim.LBFGS([logits], max_iter=200, tolerance_grad=1e-12, tolerance_change=1e-14)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        value = get_loss("ce")(logits, target)
        value.backward()
        return value

    optimiser.step(closure)
    np.testing.assert_allclose(torch.sigmoid(logits).detach().numpy(), target.numpy(), atol=1e-6)


def test_registry_and_errors() -> None:
    assert {"ce", "sd"} <= set(LOSSES)
    with pytest.raises(ValueError, match="unknown loss 'nope'"):
        get_loss("nope")
    with pytest.raises(ValueError, match="reduction"):
        get_loss("sd", reduction="voxel")
    with pytest.raises(ValueError, match="bad options"):
        get_loss("ce", eps=1.0)
    with pytest.raises(ValueError, match="already registered"):
        register_loss("ce")(object)
    logits, target, _ = make_batch(4)
    with pytest.raises(ValueError, match="target shape"):
        get_loss("sd")(logits, target[:, :, :2])
