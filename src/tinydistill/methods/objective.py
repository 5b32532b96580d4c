"""The ``Objective`` protocol: what a method optimises. The loop calls ``terms`` per batch and optimises
``parameters`` beside the student's; every method's objective (methods/) implements it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import torch

if TYPE_CHECKING:
    from ..students import Student


class Objective(Protocol):
    """What a method optimises: named ``(weight, loss)`` terms per batch, and any weights of its own."""

    def terms(self, student: Student, batch: dict[str, dict[str, torch.Tensor]]) -> dict[
        str, tuple[float, torch.Tensor]]: ...

    def parameters(self) -> list[torch.nn.Parameter]: ...
