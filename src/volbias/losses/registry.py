"""The loss registry: the loss contract, the registered factories, and how to build a loss by name.

Its own module, below the loss modules that register themselves in it (:mod:`volbias.losses.standard`,
:mod:`volbias.losses.later`) and below the package that imports them.
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
