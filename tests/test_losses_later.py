"""Tests of the later losses against their formulas computed independently in numpy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from volbias.losses import LOSSES, get_loss

LATER = ("dml", "dsc++", "tversky", "focal", "ce+sd")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _batch(seed: int, soft: bool, shape=(3, 1, 6, 5)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, shape)
    target = rng.uniform(0, 1, shape) if soft else (rng.uniform(0, 1, shape) < 0.4).astype(float)
    mask = rng.uniform(0, 1, shape) < 0.8
    return torch.tensor(logits), torch.tensor(target), torch.tensor(mask)


@pytest.mark.parametrize("name", LATER)
def test_registered(name: str) -> None:
    assert name in LOSSES
    logits, target, mask = _batch(0, soft=True)
    logits.requires_grad_(True)
    loss = get_loss(name)(logits, target, mask)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("name", LATER)
def test_voxels_outside_mask_are_ignored(name: str) -> None:
    logits, target, mask = _batch(1, soft=False)
    base = get_loss(name)(logits, target, mask)
    rng = np.random.default_rng(2)
    logits2 = torch.where(mask, logits, torch.tensor(rng.normal(0, 5, logits.shape)))
    target2 = torch.where(mask, target, 1 - target)
    assert torch.isclose(get_loss(name)(logits2, target2, mask), base, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", LATER)
def test_bad_shapes_raise(name: str) -> None:
    logits, target, _ = _batch(3, soft=False)
    with pytest.raises(ValueError, match=name.replace("+", r"\+")):
        get_loss(name)(logits, target[:, :, :-1])


@pytest.mark.parametrize("reduction", ["image", "batch"])
def test_dml_matches_semimetric_formula(reduction: str) -> None:
    logits, target, mask = _batch(4, soft=True)
    s = _sigmoid(logits.numpy()) * mask.numpy()
    y = target.numpy() * mask.numpy()
    axes = (0, 1, 2, 3) if reduction == "batch" else (1, 2, 3)
    l1s, l1y, l1d = np.abs(s).sum(axes), np.abs(y).sum(axes), np.abs(s - y).sum(axes)
    expected = np.mean(1 - (l1s + l1y - l1d) / (l1s + l1y))
    got = get_loss("dml", reduction=reduction, eps=0.0)(logits, target, mask)
    assert got.item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("reduction", ["image", "batch"])
def test_dml_equals_soft_dice_on_hard_labels(reduction: str) -> None:
    logits, target, mask = _batch(5, soft=False)
    dml = get_loss("dml", reduction=reduction, eps=1e-5)(logits, target, mask)
    sd = get_loss("sd", reduction=reduction, eps=1e-5)(logits, target, mask)
    assert dml.item() == pytest.approx(sd.item(), rel=1e-8)
    # and both equal 1 - 2<s,y>/(|s| + |y|) computed here
    s = _sigmoid(logits.numpy()) * mask.numpy()
    y = target.numpy() * mask.numpy()
    axes = (0, 1, 2, 3) if reduction == "batch" else (1, 2, 3)
    expected = np.mean(1 - 2 * (s * y).sum(axes) / (s.sum(axes) + y.sum(axes)))
    assert dml.item() == pytest.approx(expected, rel=1e-4)


def test_dml_minimised_at_soft_label() -> None:
    rng = np.random.default_rng(6)
    y = torch.tensor(rng.uniform(0.05, 0.95, (1, 1, 40)))
    dml = get_loss("dml", eps=0.0)
    at_y = dml(torch.logit(y), y).item()
    assert at_y == pytest.approx(0.0, abs=1e-12)
    # any other prediction scores worse
    for k in range(50):
        other = torch.tensor(rng.uniform(0.0, 1.0, y.shape))
        assert dml(torch.logit(other.clamp(1e-6, 1 - 1e-6)), y).item() > at_y + 1e-6
    # gradient descent from a random start recovers the soft label
    logits = torch.zeros_like(y, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.05)
    for _ in range(1500):
        opt.zero_grad()
        dml(logits, y).backward()
        opt.step()
    assert torch.allclose(torch.sigmoid(logits), y, atol=0.02)
    # soft Dice, by contrast, is not minimised at s = y for soft labels
    sd = get_loss("sd", eps=0.0)
    top = (y > 0.5).double()
    assert sd(torch.logit(top.clamp(1e-9, 1 - 1e-9)), y).item() < sd(torch.logit(y), y).item()


@pytest.mark.parametrize("gamma", [1.0, 2.0, 3.0])
def test_dscpp_matches_formula(gamma: float) -> None:
    logits, target, mask = _batch(7, soft=True)
    s = _sigmoid(logits.numpy()) * mask.numpy()
    y = target.numpy() * mask.numpy()
    axes = (1, 2, 3)
    tp = (s * y).sum(axes)
    fn = ((y * (1 - s)) ** gamma).sum(axes)
    fp = (((1 - y) * s) ** gamma).sum(axes)
    expected = np.mean(1 - tp / (tp + 0.5 * fn + 0.5 * fp))
    got = get_loss("dsc++", gamma=gamma, eps=0.0)(logits, target, mask)
    assert got.item() == pytest.approx(expected, rel=1e-10)


def test_dscpp_gamma_one_is_soft_dice_on_hard_labels() -> None:
    logits, target, mask = _batch(8, soft=False)
    dscpp = get_loss("dsc++", gamma=1.0, eps=0.0)(logits, target, mask)
    sd = get_loss("sd", eps=1e-12)(logits, target, mask)
    assert dscpp.item() == pytest.approx(sd.item(), rel=1e-6)


def test_tversky_matches_formula() -> None:
    logits, target, mask = _batch(9, soft=False)
    s = _sigmoid(logits.numpy()) * mask.numpy()
    y = target.numpy() * mask.numpy()
    axes = (1, 2, 3)
    tp, fp, fn = (s * y).sum(axes), (s * (1 - y)).sum(axes), ((1 - s) * y).sum(axes)
    expected = np.mean(1 - tp / (tp + 0.3 * fp + 0.7 * fn))
    got = get_loss("tversky", alpha=0.3, beta=0.7, eps=0.0)(logits, target, mask)
    assert got.item() == pytest.approx(expected, rel=1e-8)
    half = get_loss("tversky", alpha=0.5, beta=0.5, eps=1e-5)(logits, target, mask)
    assert half.item() == pytest.approx(get_loss("sd", eps=1e-5)(logits, target, mask).item(), rel=1e-6)


def test_focal_matches_formula_and_reduces_to_ce() -> None:
    logits, target, mask = _batch(10, soft=False)
    x, y, m = logits.numpy(), target.numpy(), mask.numpy()
    p = _sigmoid(x)
    pt = np.where(y == 1, p, 1 - p)
    expected = ((-((1 - pt) ** 2) * np.log(pt)) * m).sum() / m.sum()
    assert get_loss("focal", gamma=2.0)(logits, target, mask).item() == pytest.approx(expected, rel=1e-6)
    weighted = ((-np.where(y == 1, 0.25, 0.75) * (1 - pt) ** 2 * np.log(pt)) * m).sum() / m.sum()
    assert get_loss("focal", gamma=2.0, alpha=0.25)(logits, target, mask).item() == pytest.approx(weighted, rel=1e-6)
    soft_logits, soft_target, soft_mask = _batch(11, soft=True)
    assert get_loss("focal", gamma=0.0)(soft_logits, soft_target, soft_mask).item() == pytest.approx(
        get_loss("ce")(soft_logits, soft_target, soft_mask).item(), rel=1e-6
    )


def test_ce_plus_sd_is_weighted_sum() -> None:
    logits, target, mask = _batch(12, soft=True)
    ce = get_loss("ce")(logits, target, mask)
    sd = get_loss("sd", eps=1e-5)(logits, target, mask)
    got = get_loss("ce+sd", lambda_ce=0.3, lambda_sd=2.0, eps=1e-5)(logits, target, mask)
    assert got.item() == pytest.approx(0.3 * ce.item() + 2.0 * sd.item(), rel=1e-10)


@pytest.mark.parametrize(
    ("name", "options"),
    [("dml", {"reduction": "voxel"}), ("dsc++", {"gamma": 0.0}), ("tversky", {"alpha": -1.0}),
     ("tversky", {"alpha": 0.0, "beta": 0.0}),
     ("focal", {"alpha": 2.0}), ("ce+sd", {"lambda_ce": -1.0})],
)
def test_bad_options_raise(name: str, options: dict) -> None:
    with pytest.raises(ValueError, match=name.replace("+", r"\+")):
        get_loss(name, **options)
