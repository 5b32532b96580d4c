"""The one Teacher interface the trainer sees: rationales for a list of examples."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..data import Example


@runtime_checkable
class Teacher(Protocol):
    """Anything that returns one rationale per example, or ``None`` where it has none for that row.

    Live teachers (local HF model, HTTP endpoint) go through the cache, so training cannot tell a live,
    cached or imported teacher apart.
    """

    name: str

    def rationales(self, examples: Sequence[Example]) -> list[str | None]: ...
