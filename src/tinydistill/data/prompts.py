"""Student-side text: the paper's question format, task prefixes, answer targets and answer parsing."""

from __future__ import annotations

import re
from collections.abc import Sequence

from .records import LETTERS, Example


def format_choices(choices: Sequence[str]) -> str:
    return "\n".join(f"({LETTERS[i]}) {c}" for i, c in enumerate(choices))


def format_question(ex: Example) -> str:
    """``question\\nAnswer Choices:\\n(a) ...\\n(b) ...`` as in TinyLLM."""
    return f"{ex.question}\nAnswer Choices:\n{format_choices(ex.choices)}"


def student_input(ex: Example, prefix: str) -> str:
    """The encoder (or causal prompt) text for one task: the task prefix, then the question block."""
    return f"{prefix}{format_question(ex)}"


def answer_target(choices: Sequence[str], index: int, style: str = "letter_text") -> str:
    """Target string for choice ``index``: ``(b) iron`` (letter_text), ``iron`` (text) or ``(b)`` (letter)."""
    letter = f"({LETTERS[index]})"
    if style == "letter":
        return letter
    if style == "text":
        return choices[index]
    return f"{letter} {choices[index]}"


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", s.lower()).strip()


def parse_answer(generated: str, choices: Sequence[str]) -> int | None:
    """Map generated text to a choice index: a leading letter ``(b)``/``b)``/``b.``, else the choice text.

    Robust to case, punctuation and an uncased tokenizer's spacing (``( b ) iron``). ``None`` if unclear.
    """
    text = generated.strip()
    m = re.match(r"^\(?\s*([a-z])\s*[\).:]", text, re.IGNORECASE) or re.fullmatch(
        r"\(?\s*([a-z])\s*\)?", text, re.IGNORECASE
    )
    if m:
        idx = LETTERS.index(m.group(1).lower())
        if idx < len(choices):
            return idx
    body = _norm(re.sub(r"^\(?\s*[a-z]\s*\)\s*", "", text, flags=re.IGNORECASE))
    normed = [_norm(c) for c in choices]
    if body in normed:
        return normed.index(body)
    hits = [i for i, c in enumerate(normed) if c and (body.startswith(c) or (body and c.startswith(body)))]
    if len(hits) == 1:
        return hits[0]
    return None
