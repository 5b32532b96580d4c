"""Teacher prompts: teacher-forcing CoT (gold answer in the prompt, TinyLLM eq. 1) and plain CoT (ablation).

A template is a string with the placeholders ``{question}``, ``{choices}``, ``{answer}`` and ``{examples}``;
only those four are replaced, so other braces in a custom template are left alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..data import Example, answer_target, format_choices

#: Question, options and the gold answer (TinyLLM's teacher-forcing chain of thought).
TEACHER_FORCING = (
    "{examples}"
    "Question: {question}\n"
    "Answer Choices:\n{choices}\n"
    "Correct answer: {answer}\n"
    "Explain step by step why this answer is correct. "
    'End with "Thus, the answer is {answer}."\n'
    "Rationale:"
)

#: Question and options only: the "w/o teacher-forcing" ablation; the teacher states its own answer.
COT = (
    "{examples}"
    "Question: {question}\n"
    "Answer Choices:\n{choices}\n"
    'Think step by step, then end with "Thus, the answer is (x) <choice>."\n'
    "Rationale: Let's think step by step."
)

#: Asks a teacher to write one new exemplar (ICL "synthesize" mode); parsed by :func:`parse_exemplar`.
SYNTHESIZE = (
    "Write one new multiple-choice question in the style of the question below, with {n} answer choices, "
    "the correct answer and a short step-by-step rationale. Use exactly this format:\n"
    "Question: ...\nAnswer Choices:\n(a) ...\n(b) ...\nCorrect answer: (x) ...\nRationale: ...\n\n"
    "Style example:\nQuestion: {question}\nAnswer Choices:\n{choices}\n\n"
    "New question:\n"
)

TEMPLATES: dict[str, str] = {"teacher_forcing": TEACHER_FORCING, "cot": COT}
PLACEHOLDERS = ("question", "choices", "answer", "examples")
_PLACEHOLDER_RE = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")

Message = dict[str, str]


@dataclass(frozen=True)
class Exemplar:
    """One in-context example: a question with its options, gold answer and a teacher's rationale."""

    question: str
    choices: tuple[str, ...]
    answer: int
    rationale: str


def fill(template: str, values: Mapping[str, str]) -> str:
    """Replace the known ``{placeholder}``s of ``template``; other braces stay as written."""
    return _PLACEHOLDER_RE.sub(lambda m: values.get(m.group(1), ""), template)


def resolve_template(name: str = "teacher_forcing", custom: str | None = None) -> str:
    """The template text: ``custom`` if given, else the registered ``name``."""
    if custom is not None:
        return custom
    if name not in TEMPLATES:
        raise KeyError(f"unknown template {name!r}; known: {sorted(TEMPLATES)}")
    return TEMPLATES[name]


def format_examples(exemplars: Sequence[Exemplar], with_answer: bool = True) -> str:
    """The in-context block that precedes the question (empty without exemplars)."""
    blocks = []
    for e in exemplars:
        ans = f"Correct answer: {answer_target(e.choices, e.answer)}\n" if with_answer else ""
        blocks.append(
            f"Question: {e.question}\nAnswer Choices:\n{format_choices(e.choices)}\n{ans}"
            f"Rationale: {e.rationale}\n\n"
        )
    return "".join(blocks)


def render(ex: Example, template: str, exemplars: Sequence[Exemplar] = ()) -> str:
    """The user prompt for one row; ``{answer}`` is ``(b) iron`` (teacher forcing needs a gold answer)."""
    needs_answer = "{answer}" in template
    if needs_answer and ex.answer is None:
        raise ValueError(f"row {ex.id!r}: a teacher-forcing template needs the gold answer")
    values = {
        "question": ex.question,
        "choices": format_choices(ex.choices),
        "answer": answer_target(ex.choices, ex.answer) if ex.answer is not None else "",
        "examples": format_examples(exemplars, with_answer=needs_answer),
    }
    return fill(template, values)


def messages(user: str, system: str | None = None) -> list[Message]:
    """Chat form of a prompt: optional system message, then the user message."""
    out: list[Message] = [{"role": "system", "content": system}] if system else []
    out.append({"role": "user", "content": user})
    return out


def messages_to_text(msgs: Sequence[Mapping[str, str]]) -> str:
    """Plain-text form of chat messages for models without a chat template (blank-line joined)."""
    return "\n\n".join(m["content"] for m in msgs if m.get("content"))


def dumps_messages(msgs: Sequence[Mapping[str, str]]) -> str:
    """Canonical JSON of a message list (the exact prompt used in cache keys)."""
    return json.dumps([dict(m) for m in msgs], ensure_ascii=False, sort_keys=True)


_EXEMPLAR_RE = re.compile(
    r"Question:\s*(?P<q>.+?)\s*Answer Choices:\s*(?P<ch>.+?)\s*Correct answer:\s*\(?(?P<a>[a-z])\)?[^\n]*\n"
    r"\s*Rationale:\s*(?P<r>.+)",
    re.IGNORECASE | re.DOTALL,
)


def parse_exemplar(text: str) -> Exemplar | None:
    """Parse a synthesized exemplar (see :data:`SYNTHESIZE`); ``None`` if it does not follow the format."""
    m = _EXEMPLAR_RE.search(text)
    if not m:
        return None
    choices = tuple(c.strip() for c in re.findall(r"^\s*\([a-z]\)\s*(.+)$", m.group("ch"), re.MULTILINE))
    answer = ord(m.group("a").lower()) - ord("a")
    rationale = m.group("r").strip().split("\n\n")[0].strip()
    if len(choices) < 2 or answer >= len(choices) or len(set(choices)) != len(choices) or not rationale:
        return None
    return Exemplar(m.group("q").strip(), choices, answer, rationale)
