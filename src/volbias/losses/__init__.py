"""Training losses for binary segmentation, behind one registry.

Every loss follows one contract: ``loss(logits, target, mask=None) -> scalar tensor`` with
pre-sigmoid ``logits`` and a ``target`` in [0, 1] (soft targets allowed), both shaped
``(B, 1, *spatial)``; voxels where ``mask == 0`` are excluded.  :func:`get_loss` builds a loss by
name; :mod:`volbias.losses.standard` registers the paper's two losses (``"ce"``, ``"sd"``) and
:mod:`volbias.losses.later` the losses published after it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

import torch


class LossFn(Protocol):
    """A training loss: ``(logits, target, mask=None) -> scalar tensor``."""

    def __call__(
        self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor: ...


LOSSES: dict[str, Callable[..., LossFn]] = {}
"""Registered loss factories by name; ``LOSSES[name](**options)`` builds the loss."""

F = TypeVar("F", bound=Callable[..., LossFn])


def register_loss(name: str) -> Callable[[F], F]:
    """Class decorator that registers a loss factory under ``name`` (names must be unique)."""

    def decorate(factory: F) -> F:
        if name in LOSSES:
            raise ValueError(f"loss name {name!r} is already registered")
        LOSSES[name] = factory
        return factory

    return decorate


def get_loss(name: str, **options: object) -> LossFn:
    """Build the registered loss ``name`` with its ``options`` (e.g. ``reduction="batch"``, ``eps=1e-5``)."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; registered losses: {', '.join(sorted(LOSSES))}")
    try:
        return LOSSES[name](**options)
    except TypeError as err:
        raise ValueError(f"loss {name!r}: bad options {sorted(options)}: {err}") from None


from volbias.losses import later, standard  # noqa: E402  (registration happens on import)

__all__ = ["LOSSES", "LossFn", "get_loss", "register_loss", "later", "standard"]
