"""Edge cases of every registered loss: empty images, eps = 0, empty masks, targets that fill the image.

The contract (volbias.losses.standard): every loss returns a finite value with a finite gradient, except a
Dice-type loss with ``eps = 0`` on an image whose Dice is 0/0, which raises a ValueError naming the loss.
The cases are parametrised over the registry, so a newly registered loss is checked too.
"""

from __future__ import annotations

import inspect

import pytest
import torch

from volbias.losses import LOSSES, get_loss

SHAPE = (2, 1, 5, 4)
DICE_TYPE = sorted(name for name in LOSSES if "eps" in inspect.signature(LOSSES[name]).parameters)


def call(name: str, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
         **options: object) -> tuple[float, torch.Tensor]:
    """Loss value and gradient with respect to the logits."""
    logits = logits.clone().requires_grad_(True)
    value = get_loss(name, **options)(logits, target, mask)
    value.backward()
    return value.item(), logits.grad


def test_the_dice_type_losses_are_found() -> None:
    assert {"sd", "dml", "dsc++", "tversky", "ce+sd"} <= set(DICE_TYPE) and "ce" not in DICE_TYPE


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_empty_image_gives_a_finite_loss(name: str) -> None:
    # float32 logits of -200: the sigmoid underflows to exactly 0, so prediction and target are both empty
    empty = torch.zeros(SHAPE)
    value, grad = call(name, torch.full(SHAPE, -200.0), empty)
    assert value == pytest.approx(0.0, abs=1e-6)  # nothing predicted, nothing to find: a perfect answer
    assert torch.isfinite(grad).all()
    # an empty target with a confident false positive costs the most a Dice-type loss can cost
    value, grad = call(name, torch.full(SHAPE, 20.0), empty)
    assert torch.isfinite(grad).all() and value > 0.9


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_fully_masked_batch_costs_nothing(name: str) -> None:
    logits = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    value, grad = call(name, logits, torch.ones(SHAPE), torch.zeros(SHAPE, dtype=torch.bool))
    assert value == 0.0 and torch.equal(grad, torch.zeros(SHAPE))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_target_filling_the_image(name: str) -> None:
    full = torch.ones(SHAPE)
    right, grad = call(name, torch.full(SHAPE, 20.0), full)
    assert right == pytest.approx(0.0, abs=1e-6) and torch.isfinite(grad).all()
    wrong, grad = call(name, torch.full(SHAPE, -20.0), full)
    assert wrong > 0.9 and torch.isfinite(grad).all()


@pytest.mark.parametrize("name", DICE_TYPE)
def test_eps_zero_refuses_an_undefined_dice(name: str) -> None:
    empty = torch.zeros(SHAPE)
    with pytest.raises(ValueError, match=rf"^{name.replace('+', '[+]')}: eps=0 and an image"):
        call(name, torch.full(SHAPE, -200.0), empty, eps=0.0)
    with pytest.raises(ValueError, match="0/0; use eps > 0"):
        call(name, torch.randn(SHAPE), torch.ones(SHAPE), torch.zeros(SHAPE, dtype=torch.bool), eps=0.0)
    # where every image has foreground somewhere the unsmoothed score is defined and finite
    target = torch.zeros(SHAPE)
    target[:, :, 0, 0] = 1.0
    value, grad = call(name, torch.full(SHAPE, -200.0), target, eps=0.0)
    # Dice 0 (nothing found); ce+sd adds the cross-entropy, 200 per missed foreground voxel (logit -200)
    ce = 200.0 * target.mean().item() if name == "ce+sd" else 0.0
    assert value == pytest.approx(1.0 + ce) and torch.isfinite(grad).all()


@pytest.mark.parametrize("name", sorted(set(DICE_TYPE) - {"ce+sd"}))
def test_eps_zero_batch_reduction_needs_only_a_non_empty_batch(name: str) -> None:
    logits = torch.full(SHAPE, -200.0)
    target = torch.zeros(SHAPE)
    target[0, 0, 1:3, 1:3] = 1.0  # the second image is empty
    with pytest.raises(ValueError, match="an image without foreground"):
        call(name, logits, target, eps=0.0, reduction="image")
    value, grad = call(name, logits, target, eps=0.0, reduction="batch")
    assert value == pytest.approx(1.0) and torch.isfinite(grad).all()  # nothing of the target was found


@pytest.mark.parametrize("name", DICE_TYPE)
def test_negative_eps_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="eps must be non-negative"):
        get_loss(name, eps=-1e-3)
