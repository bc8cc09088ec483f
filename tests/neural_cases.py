"""Helpers shared by the neural solver's tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def poison_potential_at(iteration: int) -> Callable[[Any], None]:
    """A training callback (``solve(sc, callback=...)``) that, once the trainer has made
    ``iteration`` steps, sets one weight of its potential U_θ to NaN: the next loss is
    non-finite, which the solver's guard must catch."""

    def poison(trainer: Any) -> None:
        if trainer.iteration == iteration:
            with torch.no_grad():
                trainer.potential.opening.weight[0, 0] = float("nan")

    return poison


def interrupt_at(iteration: int) -> Callable[[Any], None]:
    """A training callback that raises KeyboardInterrupt once the trainer has made
    ``iteration`` steps, as Ctrl-C would (the checkpoints written so far stay)."""

    def interrupt(trainer: Any) -> None:
        if trainer.iteration == iteration:
            raise KeyboardInterrupt

    return interrupt
