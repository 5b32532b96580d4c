"""Rationale text: cleaning teacher output and parsing the answer a rationale states."""

from __future__ import annotations

import re
from collections.abc import Sequence

# Where a teacher's output stops being its rationale: the echoed question block, a new few-shot item,
# markdown numbering artifacts ("# 17.\nQuestion:") and the TinyLLM marker of the second teacher.
_CUT_MARKERS = (
    re.compile(r"\n\s*Q:\s"),
    re.compile(r"\n\s*Question:"),
    re.compile(r"\n\s*#+\s*\d*\.?\s*(\n|$)"),
    re.compile(r"\s*#\s*\d+\.\s*\n"),
    re.compile(r" llama rationale: "),
    re.compile(r"\n\s*Answer Choices:"),
)
_STATED = [
    re.compile(r"answer is:?\s*\(?([a-z])\)(?:\s|$|[.,])", re.IGNORECASE),
    re.compile(r"answer is:?\s*\(([a-z])\)", re.IGNORECASE),
    re.compile(r"answer:\s*\(?([a-z])\)", re.IGNORECASE),
    re.compile(r"(?:^|\s)\(([a-z])\)\s+is\s+(?:the\s+)?(?:correct|right|best)", re.IGNORECASE),
]


def clean_rationale(text: str) -> str:
    """Strip the echoed question, markers and trailing artifacts; collapse whitespace. May return ``""``."""
    cut = len(text)
    for marker in _CUT_MARKERS:
        m = marker.search(text)
        if m:
            cut = min(cut, m.start())
    text = text[:cut]
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r" ?\n[\n ]*", "\n", text)
    return text.strip()


def stated_answer(rationale: str, choices: Sequence[str]) -> int | None:
    """The choice index a rationale commits to ("Thus, the answer is (b) ..."), or ``None`` if it doesn't."""
    for pattern in _STATED:
        matches = list(pattern.finditer(rationale))
        if matches:
            idx = ord(matches[-1].group(1).lower()) - ord("a")  # a → 0, b → 1, …
            if idx < len(choices):
                return idx
    m = re.search(r"answer is:?\s*(.+)", rationale, re.IGNORECASE)
    if m:
        tail = m.group(1).strip().lower().rstrip(".")
        hits = [i for i, c in enumerate(choices) if c.lower().rstrip(".") == tail or tail.startswith(c.lower())]
        if len(hits) == 1:
            return hits[0]
    return None


_ANSWER_STATEMENT = re.compile(r"(?:\b(?:thus|so|therefore|hence)\b,?\s*)?\bthe (?:correct |best |right )?answer is\b",
                               re.IGNORECASE)


def without_stated_answer(rationale: str) -> str:
    """The rationale up to where it states its answer ("…. Thus, the answer is (b) iron." → "…."). """
    m = _ANSWER_STATEMENT.search(rationale)
    return rationale[: m.start()].rstrip() if m else rationale
