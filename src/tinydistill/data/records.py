"""The :class:`Example` a loader returns, and the validation of one raw record into it.

A record's question, choices and answer are checked field by field; a problem is a :class:`BadRecord` or a
:class:`DataError` naming the row and the field. The readers that produce records live in :mod:`tinydistill.data`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ..config import ColumnsConfig
from ..errors import DataError

LETTERS = "abcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class Example:
    """One multiple-choice question. ``answer`` is the index of the gold choice (``None`` if unlabeled).

    ``rationales`` holds outputs of teachers produced elsewhere (imported), keyed by teacher name;
    a teacher with no output for this row is simply absent.
    """

    id: str
    question: str
    choices: tuple[str, ...]
    answer: int | None
    domain: str | None = None
    rationales: Mapping[str, str] = field(default_factory=dict)
    answers: tuple[str, ...] = ()  # open-answer tasks (no choices): every accepted answer text

    @property
    def answer_text(self) -> str | None:
        return None if self.answer is None else self.choices[self.answer]


# --------------------------------------------------------------------------------------------- validation
class BadRecord(NamedTuple):
    """A record that could not be parsed (a malformed JSON line, a CSV row with extra cells)."""

    message: str
    column: int | None = None


def parse_choices(value: Any) -> Any:
    """Choices as a list where the source allows: HF ``{"text": [...]}``, a JSON list or ``a|b|c`` in a cell."""
    if isinstance(value, Mapping) and "text" in value:  # HF ARC style {"text": [...], "label": [...]}
        value = value["text"]
    if isinstance(value, str):
        try:
            value = json.loads(value)  # CSV cells may hold a JSON list
        except json.JSONDecodeError:
            value = [c.strip() for c in value.split("|")]
    if isinstance(value, list | tuple):
        value = [str(c).strip() if isinstance(c, int | float) and not isinstance(c, bool) else c for c in value]
    return value


#: other datasets' names for each field, suggested when the field is missing
SYNONYMS: dict[str, tuple[str, ...]] = {
    "question": ("prompt", "query", "stem", "question_stem", "ctx", "sentence", "text", "input"),
    "choices": ("options", "candidates", "endings", "answers", "choice"),
    "answer": ("label", "answerKey", "answer_idx", "gold", "target", "correct", "correct_answer", "output"),
}
#: column names that hold one choice each (``A``…``E``, ``option_a``, ``choice1``…)
_CHOICE_COLUMN = re.compile(r"^(?:(?:option|choice|opt|ans)[ _]?)?([a-eA-E1-5])$", re.IGNORECASE)


def _missing(raw: Mapping[str, Any], key: str, field: str | None = None) -> str:
    """The message for an absent field, naming the columns the row does have (and a case-only mismatch, another
    dataset's name for ``field``, or one column per choice) with the ``columns:`` line that maps them."""
    have = [str(k) for k in raw if k is not None]
    same = [k for k in have if k.strip().lower() == key.lower()]
    if same:
        return f"missing field (the file has {same[0]!r}: rename it or map it under data.*.columns)"
    per_choice = [k for k in have if _CHOICE_COLUMN.match(k)] if field == "choices" else []
    if len(per_choice) >= 2:
        return (f"missing field (the row has one column per choice: map them with data.*.columns: "
                f"{{choices: [{', '.join(per_choice)}]}})")
    other = next((k for k in have for s in SYNONYMS.get(field or "", ()) if k.lower() == s.lower()), None)
    if other is not None:
        return f"missing field (the row has {other!r}: map it with data.*.columns: {{{field}: {other}}})"
    shown = ", ".join(have[:8]) + (", …" if len(have) > 8 else "")
    return f"missing field (the row has: {shown}; map your names under data.*.columns)" if have else "missing field"


def _raw_choices(raw: Mapping[str, Any], columns: ColumnsConfig, fail: Any) -> tuple[Any, str]:
    """A row's choices and the field that errors name: one column holding them all, or one column per choice
    (``columns: {choices: [A, B, C, D]}``), where an empty cell drops that choice (a row with fewer options)."""
    if isinstance(columns.choices, str):
        value = raw.get(columns.choices)
        if value is None:
            raise fail(_missing(raw, columns.choices, "choices"), columns.choices)
        return parse_choices(value), columns.choices
    for name in columns.choices:
        if name not in raw:
            raise fail(_missing(raw, name), name)
    cells = parse_choices([raw[name] for name in columns.choices])  # numbers read as text, as in one column
    return [c for c in cells if not (c is None or (isinstance(c, str) and not c.strip()))], "choices"


def build_example(
    raw: Mapping[str, Any] | BadRecord, *, path: str | Path, row: int, line: int | None = None,
    columns: ColumnsConfig = ColumnsConfig(), rationales: Mapping[str, str] | None = None,
    require_answer: bool = True, task: str = "mcqa", answer_base: int = 0,
) -> Example:
    """Validate one raw row and turn it into an :class:`Example` (``task="open"``: no choices).

    ``answer_base``: 1 if numeric answers count choices from 1."""

    def fail(msg: str, fld: str | None, column: int | None = None) -> DataError:
        return DataError(path, msg, row=row, line=line, field=fld, column=column)

    if isinstance(raw, BadRecord):
        raise fail(raw.message, None, raw.column)
    if not isinstance(raw, Mapping):
        raise fail(f"expected an object, got {type(raw).__name__}", None)
    question = raw.get(columns.question)
    if question is None:
        raise fail(_missing(raw, columns.question, "question"), columns.question)
    if not isinstance(question, str) or not question.strip():
        raise fail("must be a non-empty string", columns.question)
    if task == "open":
        return _open_example(raw, question, columns, fail, row, require_answer)
    choices, choices_field = _raw_choices(raw, columns, fail)
    if not isinstance(choices, list | tuple):
        raise fail(f"must be a list of strings, got {type(choices).__name__}", choices_field)
    if not all(isinstance(c, str) and c.strip() for c in choices):
        raise fail("every choice must be a non-empty string", choices_field)
    choices = [c.strip() for c in choices]
    if len(choices) < 2:
        raise fail(f"needs at least two choices, got {len(choices)}", choices_field)
    if len(set(choices)) != len(choices):
        dup = next(c for c in choices if choices.count(c) > 1)
        raise fail(f"duplicate choice {dup!r}", choices_field)
    if len(choices) > len(LETTERS):
        raise fail(f"at most {len(LETTERS)} choices are supported", choices_field)

    answer_raw = raw.get(columns.answer)
    answer: int | None
    if answer_raw is None or (isinstance(answer_raw, str) and not answer_raw.strip()):
        if require_answer:
            raise fail(_missing(raw, columns.answer, "answer") if answer_raw is None else "missing value",
                       columns.answer)
        answer = None
    else:
        answer = resolve_answer(answer_raw, choices, base=answer_base)
        if answer is None:
            raise fail(_unresolved(answer_raw, choices, answer_base), columns.answer)

    rid = raw.get(columns.id)
    rid = str(row) if rid is None or str(rid).strip() == "" else str(rid)
    domain = raw.get(columns.domain) if columns.domain else None
    return Example(
        id=rid, question=question.strip(), choices=tuple(choices), answer=answer,
        domain=str(domain) if domain not in (None, "") else None, rationales=dict(rationales or {}),
    )


def _unresolved(value: Any, choices: Sequence[str], base: int) -> str:
    msg = f"answer {value!r} is not among the choices"
    n = numeric_answer(value, choices)
    if n is None:
        if re.fullmatch(r"\(?[A-Za-z][).:]?", str(value).strip()):
            return msg + f" ({len(choices)} choices: letters a-{LETTERS[len(choices) - 1]})"
        return msg + " (give the choice text, a letter like 'B', or a number)"
    if base == 0 and n == len(choices):
        return msg + f" ({len(choices)} choices numbered from 0; if answers count from 1, set answer_base: 1)"
    return msg + f" ({len(choices)} choices numbered from {base})"


def _open_example(raw: Mapping[str, Any], question: str, columns: ColumnsConfig, fail, row: int,
                  require_answer: bool) -> Example:
    """An open-answer row: the answer is a string, a list of accepted strings, or TriviaQA's
    ``{"value": ..., "aliases": [...]}``."""
    value = raw.get(columns.answer)
    if isinstance(value, Mapping):
        value = [value.get("value"), *(value.get("aliases") or [])]
    if isinstance(value, str | int | float):  # one accepted answer (a JSON true is the text "True")
        value = [value]
    answers: list[str] = []
    for a in value or []:
        text = str(a).strip() if a is not None else ""
        if text and text not in answers:
            answers.append(text)
    if not answers and require_answer:
        raise fail("missing field" if value is None else "needs a non-empty answer text", columns.answer)
    rid = raw.get(columns.id)
    rid = str(row) if rid is None or str(rid).strip() == "" else str(rid)
    domain = raw.get(columns.domain) if columns.domain else None
    return Example(id=rid, question=question.strip(), choices=(), answer=None,
                   domain=str(domain) if domain not in (None, "") else None, answers=tuple(answers))


def _number_text(value: Any) -> str | None:
    """The digits of an int (or a whole float) answer, else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return None


def numeric_answer(value: Any, choices: Sequence[str]) -> int | None:
    """The number an answer gives (an int, or digits), else ``None``. A number that is also a choice's text
    (``0`` with ``"0"`` among the choices) is that choice, not an index: ``None``."""
    digits = _number_text(value)
    text = digits if digits is not None else str(value).strip()
    if isinstance(value, bool) or not text.isdigit():
        return None
    if text.lower() in (c.lower() for c in choices):
        return None
    return int(text)


def resolve_answer(value: Any, choices: Sequence[str], base: int = 0) -> int | None:
    """Map an answer given as choice text, letter ("B", "(b)", "b.") or number (counting from ``base``) to a
    choice index."""
    n = numeric_answer(value, choices)
    if n is not None:
        return n - base if 0 <= n - base < len(choices) else None
    digits = _number_text(value)
    if digits is None and isinstance(value, bool | float):
        return None
    text = digits if digits is not None else str(value).strip()
    if text in choices:
        return choices.index(text)
    lowered = [c.lower() for c in choices]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    m = re.fullmatch(r"\(?([A-Za-z])[).:]?", text)
    if m and LETTERS.index(m.group(1).lower()) < len(choices):
        return LETTERS.index(m.group(1).lower())
    return None


def detect_answer_base(records: Sequence[tuple[int | None, Any]], columns: ColumnsConfig) -> tuple[int, str | None]:
    """0, unless no numeric answer is 0 and one equals its row's number of choices: then 1, with the reason."""
    evidence: str | None = None
    for i, (ln, raw) in enumerate(records):
        if not isinstance(raw, Mapping):
            continue
        choices = parse_choices(raw.get(columns.choices))
        if not isinstance(choices, list | tuple) or not choices:
            continue
        n = numeric_answer(raw.get(columns.answer), [str(c) for c in choices])
        if n == 0:
            return 0, None
        if n == len(choices) and evidence is None:
            evidence = f"{'line ' + str(ln) if ln else 'row ' + str(i + 1)} has answer {n} of {len(choices)} choices"
    return (1, evidence) if evidence else (0, None)


def check_unique_ids(examples: Sequence[Example], path: str | Path,
                     lines: Sequence[int | None] | None = None) -> None:
    """Raise on the first id seen twice, naming both places (the lines where known, else 1-based rows)."""
    seen: dict[str, int] = {}
    for i, ex in enumerate(examples):
        line = lines[i] if lines is not None else None
        if ex.id in seen:
            first = seen[ex.id]
            where = f"line {lines[first]}" if lines is not None and lines[first] is not None else f"row {first + 1}"
            raise DataError(path, f"duplicate id {ex.id!r} (first at {where})", row=i, line=line, field="id")
        seen[ex.id] = i
