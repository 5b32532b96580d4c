"""Multiple-choice examples and their loaders: TinyLLM layout, JSONL/JSON/CSV with a column map, HF datasets.

Every loader returns a list of :class:`Example`, validated row by row; bad input raises :class:`DataError`
naming the file, the row or line and the field.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from .errors import DataError
from .rationales import clean_rationale

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


def _missing(raw: Mapping[str, Any], key: str) -> str:
    """The message for an absent field, naming the columns the row does have (and a case-only mismatch)."""
    have = [str(k) for k in raw if k is not None]
    same = [k for k in have if k.strip().lower() == key.lower()]
    if same:
        return f"missing field (the file has {same[0]!r}: rename it or map it under data.*.columns)"
    shown = ", ".join(have[:8]) + (", …" if len(have) > 8 else "")
    return f"missing field (the row has: {shown}; map your names under data.*.columns)" if have else "missing field"


def build_example(
    raw: Mapping[str, Any] | BadRecord, *, path: str | Path, row: int, line: int | None = None,
    columns: ColumnMap = ColumnMap(), rationales: Mapping[str, str] | None = None,
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
        raise fail(_missing(raw, columns.question), columns.question)
    if not isinstance(question, str) or not question.strip():
        raise fail("must be a non-empty string", columns.question)
    if task == "open":
        return _open_example(raw, question, columns, fail, row, require_answer)
    choices = raw.get(columns.choices)
    if choices is None:
        raise fail(_missing(raw, columns.choices), columns.choices)
    choices = parse_choices(choices)
    if not isinstance(choices, list | tuple):
        raise fail(f"must be a list of strings, got {type(choices).__name__}", columns.choices)
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
            raise fail(_missing(raw, columns.answer) if answer_raw is None else "missing value", columns.answer)
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


def numeric_answer(value: Any, choices: Sequence[str]) -> int | None:
    """The number an answer gives (an int, or digits that are not a choice's text), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = str(value).strip()
    if text.isdigit() and text.lower() not in (c.lower() for c in choices):
        return int(text)
    return None


def resolve_answer(value: Any, choices: Sequence[str], base: int = 0) -> int | None:
    """Map an answer given as choice text, letter ("B", "(b)", "b.") or number (counting from ``base``) to a
    choice index."""
    n = numeric_answer(value, choices)
    if n is not None:
        return n - base if 0 <= n - base < len(choices) else None
    if isinstance(value, bool | float):
        return None
    text = str(value).strip()
    if text in choices:
        return choices.index(text)
    lowered = [c.lower() for c in choices]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    m = re.fullmatch(r"\(?([A-Za-z])[).:]?", text)
    if m and LETTERS.index(m.group(1).lower()) < len(choices):
        return LETTERS.index(m.group(1).lower())
    return None


def detect_answer_base(records: Sequence[tuple[int | None, Any]], columns: ColumnMap) -> tuple[int, str | None]:
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
            evidence = f"{'line ' + str(ln) if ln else 'row ' + str(i)} has answer {n} of {len(choices)} choices"
    return (1, evidence) if evidence else (0, None)


def check_unique_ids(examples: Sequence[Example], path: str | Path) -> None:
    seen: dict[str, int] = {}
    for i, ex in enumerate(examples):
        if ex.id in seen:
            raise DataError(path, f"duplicate id {ex.id!r} (first at row {seen[ex.id]})", row=i, field="id")
        seen[ex.id] = i


# ------------------------------------------------------------------------------------------------ readers
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def decode_text(path: Path, data: bytes) -> str:
    """UTF-8, or the encoding a byte-order mark names (UTF-8/16/32, as Excel and Notepad write); the BOM is
    dropped. Anything else is a one-line error naming the line and column of the first bad byte."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError:
                raise DataError(path, f"not valid {encoding.upper().removesuffix('-SIG')} after its byte-order "
                                      "mark") from None
    if b"\x00" in data[:4096]:
        raise DataError(path, "looks like UTF-16 without a byte-order mark; save it as UTF-8")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        before = data[: e.start]
        line, column = before.count(b"\n") + 1, e.start - (before.rfind(b"\n") + 1) + 1
        raise DataError(path, f"not valid UTF-8 (byte 0x{data[e.start]:02x}); save the file as UTF-8 "
                              "(Excel: 'CSV UTF-8'), it may be Latin-1 or Windows-1252", line=line,
                        column=column) from None


def _read_text(path: Path) -> str:
    if not path.exists():
        raise DataError(path, "file not found")
    if path.is_dir():
        raise DataError(path, "is a folder, expected a file")
    text = decode_text(path, path.read_bytes())
    if not text.strip():
        raise DataError(path, "file is empty")
    return text


def _csv_records(path: Path, text: str) -> list[tuple[int | None, Any]]:
    """CSV rows as dicts keyed by the stripped header; the delimiter (``,`` ``;`` or tab) is the header's."""
    header = text.splitlines()[0]
    delimiter = max(",;\t", key=header.count) if header.count(",") == 0 else ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        reader.fieldnames = [f.strip() for f in reader.fieldnames or []]
        out: list[tuple[int | None, Any]] = []
        start = reader.line_num + 1
        for r in reader:
            if None in r:  # more cells than the header has columns
                out.append((start, BadRecord(f"{len(reader.fieldnames) + len(r[None])} cells but the header has "
                                             f"{len(reader.fieldnames)} columns (quote a cell that holds "
                                             f"a {delimiter!r})")))
            else:
                out.append((start, dict(r)))
            start = reader.line_num + 1
    except csv.Error as e:
        raise DataError(path, f"malformed CSV: {e}", line=reader.line_num) from None
    return out


def read_records(path: str | Path, on_invalid: str = "error") -> list[tuple[int | None, Any]]:
    """Read a JSON list, JSON Lines or CSV file as ``[(line_number_or_None, record), ...]``.

    A JSON Lines line (or CSV row) that does not parse stops with its line and column, or with
    ``on_invalid="skip"`` becomes a :class:`BadRecord` that :func:`build_examples` skips. A whole-file JSON
    list that does not parse is always an error.
    """
    path = Path(path)
    text = _read_text(path)
    if path.suffix.lower() == ".csv":
        records = _csv_records(path, text)
    elif text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(path, f"malformed JSON: {e.msg}", line=e.lineno, column=e.colno) from None
        return [(None, r) for r in data]
    else:
        records = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append((lineno, json.loads(line)))
            except json.JSONDecodeError as e:
                records.append((lineno, BadRecord(f"malformed JSON Lines: {e.msg}", e.colno)))
    if on_invalid != "skip":
        for ln, r in records:
            if isinstance(r, BadRecord):
                raise DataError(path, r.message, line=ln, column=r.column)
    return records


#: how many skipped rows a warning names one by one
SKIPPED_SHOWN = 5


def build_examples(
    records: Sequence[tuple[int | None, Any]], path: str | Path, columns: ColumnMap = ColumnMap(), *,
    require_answer: bool = True, on_invalid: str = "error", task: str = "mcqa", answer_base: int | None = None,
) -> list[Example | None]:
    """Validate every record; with ``on_invalid="skip"`` a bad row becomes ``None`` and is named in a warning.

    ``answer_base=None``: numbers count from 0 unless :func:`detect_answer_base` finds they count from 1 (said in a
    warning)."""
    if answer_base is None:
        answer_base, evidence = (0, None) if task != "mcqa" else detect_answer_base(records, columns)
        if evidence:
            log.warning("%s: numeric answers read as counting from 1 (none is 0; %s); set answer_base: 1 "
                        "(or 0) under this data source to say so", path, evidence)
    out: list[Example | None] = []
    skipped: list[str] = []
    for i, (ln, r) in enumerate(records):
        try:
            out.append(build_example(r, path=path, row=i, line=ln, columns=columns,
                                     require_answer=require_answer, task=task, answer_base=answer_base))
        except DataError as e:
            if on_invalid != "skip":
                raise
            out.append(None)
            skipped.append(str(e))
    if skipped:
        more = f"; and {len(skipped) - SKIPPED_SHOWN} more" if len(skipped) > SKIPPED_SHOWN else ""
        log.warning("skipped %d invalid row(s) (on_invalid: skip): %s%s", len(skipped),
                    "; ".join(skipped[:SKIPPED_SHOWN]), more)
    check_unique_ids([ex for ex in out if ex is not None], path)
    return out


def load_records_file(
    path: str | Path, columns: ColumnMap = ColumnMap(), *, require_answer: bool = True,
    on_invalid: str = "error", task: str = "mcqa", answer_base: int | None = None,
) -> list[Example]:
    """Load a JSON / JSONL / CSV file of multiple-choice (or, with ``task="open"``, open-answer) rows."""
    built = build_examples(read_records(path, on_invalid), path, columns, require_answer=require_answer,
                           on_invalid=on_invalid, task=task, answer_base=answer_base)
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
    folder: str | Path, split: str, *, with_rationales: bool = True, on_invalid: str = "error",
    answer_base: int | None = None,
) -> list[Example]:
    """Load ``<folder>/<name>_<split>.json`` and, if present, its ``llm/<split>_CoT_<k>.json`` rationales.

    Rationales come out cleaned (see :mod:`tinydistill.rationales`) under the teacher names
    :data:`TINYLLM_TEACHERS`; a teacher with no (or an empty) output for a row is left out for that row.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "folder not found")
    candidates = sorted(folder.glob(f"*_{split}.json")) + sorted(folder.glob(f"*_{split}.jsonl"))
    if not candidates:
        raise DataError(folder, f"no '*_{split}.json' file in this folder")
    data_path = candidates[0]
    built = build_examples(read_records(data_path, on_invalid), data_path, on_invalid=on_invalid,
                           answer_base=answer_base)
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
    name: str, split: str, *, subset: str | None = None, columns: ColumnMap = ColumnMap(), task: str = "mcqa",
    on_invalid: str = "error", answer_base: int | None = None,
) -> list[Example]:
    """Load a Hugging Face dataset by hub name or local path (``datasets.load_dataset``)."""
    import datasets  # heavy (pyarrow, pandas…): imported only when a hub dataset is read

    try:
        ds = datasets.load_dataset(name, subset, split=split)
    except Exception as e:  # noqa: BLE001 - any hub/IO failure becomes one clear line
        raise DataError(name, f"could not load dataset (split {split!r}): {type(e).__name__}: {e}") from None
    records = [(None, _normalise_hf_row(r, columns) if task == "mcqa" else dict(r)) for r in ds]
    built = build_examples(records, f"{name}:{split}", columns, task=task, on_invalid=on_invalid,
                           answer_base=answer_base)
    return [ex for ex in built if ex is not None]


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
    answer_base: int | None = None,
) -> list[Example]:
    """Load examples from any supported source.

    ``fmt``: ``auto`` (a folder → TinyLLM layout, a file → by suffix), ``tinyllm``, ``json``, ``jsonl``,
    ``csv`` or ``hf`` (``path`` is a hub name). ``answer_base``: 0 or 1 for numeric answers; ``None`` detects it.
    """
    if fmt == "hf":
        return load_hf_dataset(str(path), split, subset=subset, columns=columns, task=task,
                               on_invalid=on_invalid, answer_base=answer_base)
    p = Path(path)
    if fmt == "tinyllm" or (fmt == "auto" and p.is_dir()):
        return load_tinyllm(p, split, on_invalid=on_invalid, answer_base=answer_base)
    if fmt in ("auto", "json", "jsonl", "csv"):
        return load_records_file(p, columns, require_answer=require_answer, on_invalid=on_invalid, task=task,
                                 answer_base=answer_base)
    raise DataError(path, f"unknown data format {fmt!r} (auto, tinyllm, json, jsonl, csv, hf)")


#: words in a file name that name a split (``obqa_test.jsonl`` → ``test``)
SPLIT_WORDS = ("train", "valid", "validation", "val", "dev", "test", "eval", "holdout")


def split_of_file(path: str | Path) -> str:
    """The split a data file's name names (its last split word), else the name without its suffix."""
    stem = Path(path).name.split(".")[0]
    words = [w for w in re.split(r"[^a-z]+", stem.lower()) if w in SPLIT_WORDS]
    return words[-1] if words else stem


def majority_baseline(examples: Sequence[Example]) -> float:
    """Accuracy of always predicting the most frequent gold answer position."""
    counts: dict[int, int] = {}
    for ex in examples:
        if ex.answer is not None:
            counts[ex.answer] = counts.get(ex.answer, 0) + 1
    total = sum(counts.values())
    return max(counts.values()) / total if total else 0.0
