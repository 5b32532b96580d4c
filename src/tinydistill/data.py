"""Multiple-choice examples and their loaders: TinyLLM layout, JSONL/JSON/CSV with a column map, HF datasets.

Every loader returns a list of :class:`Example`, validated row by row; bad input raises :class:`DataError`
naming the file, the row or line and the field.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import DataError

log = logging.getLogger(__name__)

LETTERS = "abcdefghijklmnopqrstuvwxyz"

#: Teacher names under which the TinyLLM layout's two rationale sources are exposed.
TINYLLM_TEACHERS = ("flan_t5", "llama2")
_LLAMA_MARKER = " llama rationale: "


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


@dataclass(frozen=True)
class ColumnMap:
    """Which source columns hold each field. ``answer`` may hold the choice text, a letter or an index."""

    id: str = "id"
    question: str = "question"
    choices: str = "choices"
    answer: str = "answer"
    domain: str | None = "domain"


# --------------------------------------------------------------------------------------------- validation
def build_example(
    raw: Mapping[str, Any], *, path: str | Path, row: int, line: int | None = None,
    columns: ColumnMap = ColumnMap(), rationales: Mapping[str, str] | None = None,
    require_answer: bool = True, task: str = "mcqa",
) -> Example:
    """Validate one raw row and turn it into an :class:`Example` (``task="open"``: no choices)."""

    def fail(msg: str, fld: str | None) -> DataError:
        return DataError(path, msg, row=row, line=line, field=fld)

    if not isinstance(raw, Mapping):
        raise fail(f"expected an object, got {type(raw).__name__}", None)
    question = raw.get(columns.question)
    if question is None:
        raise fail("missing field", columns.question)
    if not isinstance(question, str) or not question.strip():
        raise fail("must be a non-empty string", columns.question)
    if task == "open":
        return _open_example(raw, question, columns, fail, row, require_answer)
    choices = raw.get(columns.choices)
    if choices is None:
        raise fail("missing field", columns.choices)
    if isinstance(choices, Mapping) and "text" in choices:  # HF ARC style {"text": [...], "label": [...]}
        choices = choices["text"]
    if isinstance(choices, str):
        try:
            choices = json.loads(choices)  # CSV cells may hold a JSON list
        except json.JSONDecodeError:
            choices = [c.strip() for c in choices.split("|")]
    if not isinstance(choices, list | tuple):
        raise fail(f"must be a list of strings, got {type(choices).__name__}", columns.choices)
    choices = [str(c).strip() if isinstance(c, int | float) else c for c in choices]
    if not all(isinstance(c, str) and c.strip() for c in choices):
        raise fail("every choice must be a non-empty string", columns.choices)
    choices = [c.strip() for c in choices]
    if len(choices) < 2:
        raise fail(f"needs at least two choices, got {len(choices)}", columns.choices)
    if len(set(choices)) != len(choices):
        dup = next(c for c in choices if choices.count(c) > 1)
        raise fail(f"duplicate choice {dup!r}", columns.choices)
    if len(choices) > len(LETTERS):
        raise fail(f"at most {len(LETTERS)} choices are supported", columns.choices)

    answer_raw = raw.get(columns.answer)
    answer: int | None
    if answer_raw is None or (isinstance(answer_raw, str) and not answer_raw.strip()):
        if require_answer:
            raise fail("missing field", columns.answer)
        answer = None
    else:
        answer = resolve_answer(answer_raw, choices)
        if answer is None:
            raise fail(f"answer {answer_raw!r} is not among the choices", columns.answer)

    rid = raw.get(columns.id)
    rid = str(row) if rid is None or str(rid).strip() == "" else str(rid)
    domain = raw.get(columns.domain) if columns.domain else None
    return Example(
        id=rid, question=question.strip(), choices=tuple(choices), answer=answer,
        domain=str(domain) if domain not in (None, "") else None, rationales=dict(rationales or {}),
    )


def _open_example(raw: Mapping[str, Any], question: str, columns: ColumnMap, fail, row: int,
                  require_answer: bool) -> Example:
    """An open-answer row: the answer is a string, a list of accepted strings, or TriviaQA's
    ``{"value": ..., "aliases": [...]}``."""
    value = raw.get(columns.answer)
    if isinstance(value, Mapping):
        value = [value.get("value"), *(value.get("aliases") or [])]
    if isinstance(value, str | int | float) and not isinstance(value, bool):
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


def resolve_answer(value: Any, choices: Sequence[str]) -> int | None:
    """Map an answer given as choice text, letter ("B", "(b)") or 0-based index to a choice index."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < len(choices) else None
    text = str(value).strip()
    if text in choices:
        return choices.index(text)
    lowered = [c.lower() for c in choices]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    m = re.fullmatch(r"\(?([A-Za-z])\)?", text)
    if m and LETTERS.index(m.group(1).lower()) < len(choices):
        return LETTERS.index(m.group(1).lower())
    if text.isdigit() and int(text) < len(choices):
        return int(text)
    return None


def check_unique_ids(examples: Sequence[Example], path: str | Path) -> None:
    seen: dict[str, int] = {}
    for i, ex in enumerate(examples):
        if ex.id in seen:
            raise DataError(path, f"duplicate id {ex.id!r} (first at row {seen[ex.id]})", row=i, field="id")
        seen[ex.id] = i


# ------------------------------------------------------------------------------------------------ readers
def _read_text(path: Path) -> str:
    if not path.exists():
        raise DataError(path, "file not found")
    if path.is_dir():
        raise DataError(path, "is a folder, expected a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise DataError(path, f"not valid UTF-8 (byte {e.start})", line=line) from None
    if not text.strip():
        raise DataError(path, "file is empty")
    return text


def read_records(path: str | Path) -> list[tuple[int | None, Any]]:
    """Read a JSON list, JSON Lines or CSV file as ``[(line_number_or_None, record), ...]``."""
    path = Path(path)
    text = _read_text(path)
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        return [(i + 2, dict(r)) for i, r in enumerate(reader)]
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(path, f"malformed JSON: {e.msg}", line=e.lineno) from None
        return [(None, r) for r in data]
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((lineno, json.loads(line)))
        except json.JSONDecodeError as e:
            raise DataError(path, f"malformed JSON Lines: {e.msg}", line=lineno) from None
    return records


def build_examples(
    records: Sequence[tuple[int | None, Any]], path: str | Path, columns: ColumnMap = ColumnMap(), *,
    require_answer: bool = True, on_invalid: str = "error", task: str = "mcqa",
) -> list[Example | None]:
    """Validate every record; with ``on_invalid="skip"`` a bad row becomes ``None`` and is reported once."""
    out: list[Example | None] = []
    skipped: list[str] = []
    for i, (ln, r) in enumerate(records):
        try:
            out.append(build_example(r, path=path, row=i, line=ln, columns=columns,
                                     require_answer=require_answer, task=task))
        except DataError as e:
            if on_invalid != "skip":
                raise
            out.append(None)
            skipped.append(str(e))
    if skipped:
        log.warning("skipped %d invalid row(s) of %s; first: %s", len(skipped), path, skipped[0])
    check_unique_ids([ex for ex in out if ex is not None], path)
    return out


def load_records_file(
    path: str | Path, columns: ColumnMap = ColumnMap(), *, require_answer: bool = True,
    on_invalid: str = "error", task: str = "mcqa",
) -> list[Example]:
    """Load a JSON / JSONL / CSV file of multiple-choice (or, with ``task="open"``, open-answer) rows."""
    built = build_examples(read_records(path), path, columns, require_answer=require_answer,
                           on_invalid=on_invalid, task=task)
    return [ex for ex in built if ex is not None]


# ------------------------------------------------------------------------------------------ TinyLLM layout
def split_tinyllm_rationale(raw: str) -> dict[str, str]:
    """Split one ``llm/*_CoT_*.json`` string into raw ``{"flan_t5": ..., "llama2": ...}`` (no cleaning)."""
    flan, _, llama = raw.partition(_LLAMA_MARKER)
    out = {"flan_t5": flan}
    if llama.strip():
        out["llama2"] = llama
    return out


def _tinyllm_chunks(folder: Path, split: str) -> list[Path]:
    chunks = sorted(
        (folder / "llm").glob(f"{split}_CoT_*.json"),
        key=lambda p: int(re.search(r"_CoT_(\d+)\.json$", p.name).group(1)),  # type: ignore[union-attr]
    )
    return chunks


def load_tinyllm(
    folder: str | Path, split: str, *, with_rationales: bool = True, on_invalid: str = "error"
) -> list[Example]:
    """Load ``<folder>/<name>_<split>.json`` and, if present, its ``llm/<split>_CoT_<k>.json`` rationales.

    Rationales come out cleaned (see :mod:`tinydistill.rationales`) under the teacher names
    :data:`TINYLLM_TEACHERS`; a teacher with no (or an empty) output for a row is left out for that row.
    """
    from .rationales import clean_rationale

    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "folder not found")
    candidates = sorted(folder.glob(f"*_{split}.json")) + sorted(folder.glob(f"*_{split}.jsonl"))
    if not candidates:
        raise DataError(folder, f"no '*_{split}.json' file in this folder")
    data_path = candidates[0]
    built = build_examples(read_records(data_path), data_path, on_invalid=on_invalid)
    examples = [ex for ex in built if ex is not None]
    chunks = _tinyllm_chunks(folder, split) if with_rationales else []
    if not chunks:
        return examples
    raw: list[str] = []
    for chunk in chunks:
        for ln, item in read_records(chunk):
            if not isinstance(item, str):
                raise DataError(chunk, f"expected a string, got {type(item).__name__}", line=ln,
                                field="rationale")
            raw.append(item)
    if len(raw) != len(built):
        raise DataError(
            folder / "llm", f"{len(raw)} rationales in {split}_CoT_*.json do not align with "
            f"{len(built)} rows of {data_path.name}"
        )
    out = []
    for ex, text in zip(built, raw, strict=True):
        if ex is None:
            continue
        parts = split_tinyllm_rationale(text)
        cleaned = {k: clean_rationale(v) for k, v in parts.items()}
        out.append(Example(ex.id, ex.question, ex.choices, ex.answer, ex.domain,
                           {k: v for k, v in cleaned.items() if v}))
    return out


# ------------------------------------------------------------------------------------------ HF datasets
def load_hf_dataset(
    name: str, split: str, *, subset: str | None = None, columns: ColumnMap = ColumnMap(), task: str = "mcqa"
) -> list[Example]:
    """Load a Hugging Face dataset by hub name or local path (``datasets.load_dataset``)."""
    import datasets

    try:
        ds = datasets.load_dataset(name, subset, split=split)
    except Exception as e:  # noqa: BLE001 - any hub/IO failure becomes one clear line
        raise DataError(name, f"could not load dataset (split {split!r}): {type(e).__name__}: {e}") from None
    examples = [
        build_example(_normalise_hf_row(r, columns) if task == "mcqa" else dict(r), path=f"{name}:{split}",
                      row=i, columns=columns, task=task)
        for i, r in enumerate(ds)
    ]
    check_unique_ids(examples, f"{name}:{split}")
    return examples


def _normalise_hf_row(row: Mapping[str, Any], columns: ColumnMap) -> dict[str, Any]:
    """Adapt common hub schemas (ARC/OBQA ``question_stem``/``choices.text``+``answerKey``, WinoGrande)."""
    r = dict(row)
    if columns.question not in r and "question_stem" in r:
        r[columns.question] = r["question_stem"]
    if columns.question not in r and "sentence" in r:
        r[columns.question] = r["sentence"]
    if columns.choices not in r and "option1" in r:
        r[columns.choices] = [r["option1"], r["option2"]]
    ch = r.get(columns.choices)
    if isinstance(ch, Mapping) and "text" in ch:
        labels = list(ch.get("label", []))
        r[columns.choices] = list(ch["text"])
        key = r.get("answerKey", r.get(columns.answer))
        if key in labels:
            r[columns.answer] = labels.index(key)
    if columns.answer not in r and "answerKey" in r:
        r[columns.answer] = r["answerKey"]
    if columns.answer in r and "option1" in row and str(r[columns.answer]) in {"1", "2"}:
        r[columns.answer] = int(r[columns.answer]) - 1
    return r


# ------------------------------------------------------------------------------------------ dispatcher
def load_examples(
    path: str | Path, split: str = "train", *, fmt: str = "auto", columns: ColumnMap = ColumnMap(),
    subset: str | None = None, require_answer: bool = True, on_invalid: str = "error", task: str = "mcqa",
) -> list[Example]:
    """Load examples from any supported source.

    ``fmt``: ``auto`` (a folder → TinyLLM layout, a file → by suffix), ``tinyllm``, ``json``, ``jsonl``,
    ``csv`` or ``hf`` (``path`` is a hub name).
    """
    if fmt == "hf":
        return load_hf_dataset(str(path), split, subset=subset, columns=columns, task=task)
    p = Path(path)
    if fmt == "tinyllm" or (fmt == "auto" and p.is_dir()):
        return load_tinyllm(p, split, on_invalid=on_invalid)
    if fmt in ("auto", "json", "jsonl", "csv"):
        return load_records_file(p, columns, require_answer=require_answer, on_invalid=on_invalid, task=task)
    raise DataError(path, f"unknown data format {fmt!r} (auto, tinyllm, json, jsonl, csv, hf)")


def majority_baseline(examples: Sequence[Example]) -> float:
    """Accuracy of always predicting the most frequent gold answer position."""
    counts: dict[int, int] = {}
    for ex in examples:
        if ex.answer is not None:
            counts[ex.answer] = counts.get(ex.answer, 0) + 1
    total = sum(counts.values())
    return max(counts.values()) / total if total else 0.0
