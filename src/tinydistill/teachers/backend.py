"""What a live teacher's model backend provides (local transformers model or HTTP endpoint)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..config import GenerationSpec
from ..errors import TinyDistillError

#: ``finish_reason`` of an output cut off at ``max_new_tokens``.
LENGTH = "length"


@dataclass(frozen=True)
class Generation:
    """One completion: new text only, token counts, and why it stopped (``stop`` or ``length``)."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"


def sampling_params(g: GenerationSpec) -> dict[str, Any]:
    """Temperature, top_p and seed as they bear on the output, for :meth:`Backend.params`: greedy decoding
    (temperature 0) reads neither top_p nor the seed, so they stand as 1.0 and None there."""
    sampled = g.gen_temperature > 0
    return {"temperature": g.gen_temperature, "top_p": g.top_p if sampled else 1.0,
            "seed": g.seed if sampled else None}


class BackendError(TinyDistillError):
    """Requests that failed for good; ``failed`` holds the indices (into the prompts given to ``generate``) of
    those that failed, the first of them the one the message describes."""

    def __init__(self, message: str, *, failed: Sequence[int] = ()) -> None:
        super().__init__(message)
        self.failed = tuple(failed)


class Backend(Protocol):
    """Turns prompts into completions. ``render`` gives the exact prompt sent, which keys the cache."""

    model: str
    revision: str | None

    def render(self, messages: Sequence[Mapping[str, str]]) -> str: ...

    def params(self) -> dict[str, Any]: ...

    def generate(self, prompts: Sequence[str], samples: Sequence[int]) -> Iterator[tuple[int, Generation]]:
        """Yield ``(index, generation)`` as each completes, in any order (sample ``samples[index]``)."""
        ...
