"""Loaders of multiple-choice examples: TinyLLM layout, JSONL/JSON/CSV with a column map, HF datasets.

Every loader returns a list of :class:`Example`, validated row by row; bad input raises :class:`DataError`
naming the file, the row or line and the field.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..config import ColumnsConfig
from ..errors import DataError
from ..files import decode_text
from .rationales import clean_rationale
from .records import BadRecord, Example, build_example, check_unique_ids, detect_answer_base

log = logging.getLogger(__name__)

__all__ = ["TINYLLM_TEACHERS", "decode_text", "read_records", "build_examples",
           "load_records_file", "split_tinyllm_rationale", "load_tinyllm", "load_hf_dataset", "load_examples",
           "split_of_file", "majority_baseline"]

#: Teacher names under which the TinyLLM layout's two rationale sources are exposed.
TINYLLM_TEACHERS = ("flan_t5", "llama2")
_LLAMA_MARKER = " llama rationale: "


# ------------------------------------------------------------------------------------------------ readers

def _read_text(path: Path, encoding: str | None = None) -> str:
    if not path.exists():
        raise DataError(path, "file not found")
    if path.is_dir():
        raise DataError(path, "is a folder, expected a file")
    text = decode_text(path, path.read_bytes(), encoding,
                       hint=" (or name it under the data source: encoding: cp1252 or encoding: latin-1)")
    if not text.strip():
        raise DataError(path, "file is empty")
    return text


def _csv_records(path: Path, text: str) -> list[tuple[int | None, Any]]:
    """CSV rows as dicts keyed by the stripped header; the delimiter (``,`` ``;`` or tab) is the header's.

    The header is the first line: a blank first line or a column named twice (whose second cell would silently
    win) is an error."""
    header = text.splitlines()[0]
    if not header.strip():
        raise DataError(path, "the first line is blank; a CSV file starts with its header line", line=1)
    delimiter = max(",;\t", key=header.count) if header.count(",") == 0 else ","
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    start = 1  # the first line of the record being read: where an error is reported
    try:
        reader.fieldnames = [f.strip() for f in reader.fieldnames or []]
        seen: set[str] = set()
        for name in reader.fieldnames:
            if name in seen:
                raise DataError(path, f"the header names column {name!r} twice; rename one", line=1, field=name)
            seen.add(name)
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
        raise DataError(path, f"malformed CSV: {e}", line=start) from None
    return out


def _json_list_records(path: Path, text: str) -> list[tuple[int | None, Any]]:
    """A whole-file JSON list as ``[(line where the item starts, item), ...]``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(path, f"malformed JSON: {e.msg}", line=e.lineno, column=e.colno) from None
    if not isinstance(data, list):
        return [(None, data)]
    decoder, out = json.JSONDecoder(), list[tuple[int | None, Any]]()
    pos = text.index("[") + 1
    for item in data:  # the text parsed: walk it again item by item for the lines
        while text[pos] in " \t\r\n,":
            pos += 1
        line = text.count("\n", 0, pos) + 1
        _, pos = decoder.raw_decode(text, pos)
        out.append((line, item))
    return out


#: suffixes read as CSV by ``format: auto`` (a header with tabs or ``;`` and no comma sets the delimiter)
CSV_SUFFIXES = (".csv", ".tsv")
#: files that are not text (spreadsheets, archives, columnar data): named, not parsed as JSON Lines
NOT_TEXT_SUFFIXES = (".xlsx", ".xls", ".ods", ".parquet", ".arrow", ".feather", ".gz", ".zip", ".bz2", ".xz",
                     ".zst", ".pkl", ".pickle", ".npy", ".npz")


def read_records(path: str | Path, on_invalid: str = "error", encoding: str | None = None,
                 fmt: str = "auto") -> list[tuple[int | None, Any]]:
    """Read a JSON list, JSON Lines or CSV file as ``[(line_number, record), ...]``; ``fmt="csv"`` reads any
    file as CSV, ``auto`` a ``.csv`` / ``.tsv`` one (other files by content: a JSON list or JSON Lines).

    A JSON Lines line (or CSV row) that does not parse stops with its line and column, or with
    ``on_invalid="skip"`` becomes a :class:`BadRecord` that :func:`build_examples` skips. A whole-file JSON
    list that does not parse is always an error.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in NOT_TEXT_SUFFIXES:
        raise DataError(path, f"a {suffix} file cannot be read: save it as CSV (UTF-8), JSON or JSON Lines")
    text = _read_text(path, encoding)
    if fmt == "csv" or (fmt == "auto" and suffix in CSV_SUFFIXES):
        records = _csv_records(path, text)
    elif text.lstrip().startswith("["):
        return _no_rows_check(path, _json_list_records(path, text))
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
    return _no_rows_check(path, records)


def _no_rows_check(path: Path, records: list[tuple[int | None, Any]]) -> list[tuple[int | None, Any]]:
    """``records``, unless there are none (an empty JSON list, a CSV with only its header): one line saying so."""
    if not records:
        raise DataError(path, "no rows (an empty JSON list, or a CSV file with only its header)")
    return records


def _kept(built: list[Example | None], path: str | Path) -> list[Example]:
    """The rows that were not skipped; when ``on_invalid: skip`` skipped every one, one line saying so."""
    kept = [ex for ex in built if ex is not None]
    if built and not kept:
        raise DataError(path, f"all {len(built)} rows are invalid and were skipped (on_invalid: skip); see the "
                              "warning above for the first reasons")
    return kept


#: how many skipped rows a warning names one by one
SKIPPED_SHOWN = 5


def build_examples(
    records: Sequence[tuple[int | None, Any]], path: str | Path, columns: ColumnsConfig = ColumnsConfig(), *,
    require_answer: bool = True, on_invalid: str = "error", task: str = "mcqa", answer_base: int | None = None,
) -> list[Example | None]:
    """Validate every record; with ``on_invalid="skip"`` a bad row becomes ``None`` and is named in a warning.

    ``answer_base=None``: numbers count from 0 unless :func:`detect_answer_base` finds they count from 1 (said in a
    warning)."""
    if answer_base is None:
        answer_base, evidence = (0, None) if task != "mcqa" else detect_answer_base(records, columns)
        if evidence:
            log.warning("%s: numeric answers read as counting from 1 (none is 0; %s); set answer_base: 1 "
                        "(or 0) under this data source to say so (data check: --answer-base 1)", path, evidence)
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
    kept = [(ex, ln) for ex, (ln, _) in zip(out, records, strict=True) if ex is not None]
    check_unique_ids([ex for ex, _ in kept], path, [ln for _, ln in kept])
    return out


def load_records_file(
    path: str | Path, columns: ColumnsConfig = ColumnsConfig(), *, require_answer: bool = True,
    on_invalid: str = "error", task: str = "mcqa", answer_base: int | None = None, encoding: str | None = None,
    fmt: str = "auto",
) -> list[Example]:
    """Load a JSON / JSONL / CSV file of multiple-choice (or, with ``task="open"``, open-answer) rows; none at all,
    or none left after ``on_invalid: skip``, is an error."""
    records = read_records(path, on_invalid, encoding, fmt)
    if task == "mcqa":  # ARC's {text, label} choices with answerKey, OBQA's question_stem… in a file too
        records = [(ln, adapt_common_schema(r, columns) if isinstance(r, Mapping) else r) for ln, r in records]
    built = build_examples(records, path, columns, require_answer=require_answer, on_invalid=on_invalid, task=task,
                           answer_base=answer_base)
    return _kept(built, path)


# ------------------------------------------------------------------------------------------ TinyLLM layout
def split_tinyllm_rationale(raw: str) -> dict[str, str]:
    """Split one ``llm/*_CoT_*.json`` string into raw ``{"flan_t5": ..., "llama2": ...}`` (no cleaning)."""
    flan, _, llama = raw.partition(_LLAMA_MARKER)
    out = {"flan_t5": flan}
    if llama.strip():
        out["llama2"] = llama
    return out


def _tinyllm_chunks(folder: Path, split: str) -> list[Path]:
    """The ``llm/<split>_CoT_<k>.json`` rationale chunks in numeric order of ``k``; any other name is an error."""
    chunks: dict[int, Path] = {}
    for path in (folder / "llm").glob(f"{split}_CoT_*.json"):
        number = re.fullmatch(rf"{re.escape(split)}_CoT_(\d+)\.json", path.name)
        if number is None:
            raise DataError(path, f"expected {split}_CoT_<number>.json, so the chunks' order is known")
        chunks[int(number.group(1))] = path
    return [chunks[k] for k in sorted(chunks)]


def load_tinyllm(
    folder: str | Path, split: str, *, with_rationales: bool = True, on_invalid: str = "error",
    answer_base: int | None = None, encoding: str | None = None,
) -> list[Example]:
    """Load ``<folder>/<name>_<split>.json`` and, if present, its ``llm/<split>_CoT_<k>.json`` rationales.

    Rationales come out cleaned (see :mod:`tinydistill.data.rationales`) under the teacher names
    :data:`TINYLLM_TEACHERS`; a teacher with no (or an empty) output for a row is left out for that row.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "folder not found")
    candidates = sorted(folder.glob(f"*_{split}.json")) + sorted(folder.glob(f"*_{split}.jsonl"))
    if not candidates:
        raise DataError(folder, f"no '*_{split}.json' file in this folder")
    data_path = candidates[0]
    built = build_examples(read_records(data_path, on_invalid, encoding), data_path, on_invalid=on_invalid,
                           answer_base=answer_base)
    examples = _kept(built, data_path)
    chunks = _tinyllm_chunks(folder, split) if with_rationales else []
    if not chunks:
        return examples
    raw: list[str] = []
    for chunk in chunks:
        for ln, item in read_records(chunk, encoding=encoding):
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
    name: str, split: str, *, subset: str | None = None, columns: ColumnsConfig = ColumnsConfig(), task: str = "mcqa",
    on_invalid: str = "error", answer_base: int | None = None,
) -> list[Example]:
    """Load a Hugging Face dataset by hub name or local path (``datasets.load_dataset``)."""
    import datasets  # heavy (pyarrow, pandas…): imported only when a hub dataset is read

    try:
        ds = datasets.load_dataset(name, subset, split=split)
    except Exception as e:  # noqa: BLE001 - any hub/IO failure becomes one clear line
        raise DataError(name, f"could not load dataset (split {split!r}): {type(e).__name__}: {e}") from None
    records = [(None, adapt_common_schema(r, columns) if task == "mcqa" else dict(r)) for r in ds]
    if not records:
        raise DataError(f"{name}:{split}", "no rows")
    built = build_examples(records, f"{name}:{split}", columns, task=task, on_invalid=on_invalid,
                           answer_base=answer_base)
    return _kept(built, f"{name}:{split}")


def adapt_common_schema(row: Mapping[str, Any], columns: ColumnsConfig) -> dict[str, Any]:
    """Adapt common hub schemas (ARC/OBQA ``question_stem``/``choices.text``+``answerKey``, WinoGrande), in hub
    datasets and files alike; only fields the row lacks under ``columns``' names are filled."""
    r = dict(row)
    if columns.question not in r and "question_stem" in r:
        r[columns.question] = r["question_stem"]
    if columns.question not in r and "sentence" in r:
        r[columns.question] = r["sentence"]
    if isinstance(columns.choices, str) and columns.choices not in r and "option1" in r:
        r[columns.choices] = [r["option1"], r["option2"]]
    ch = r.get(columns.choices) if isinstance(columns.choices, str) else None
    if isinstance(ch, Mapping) and "text" in ch:
        labels = list(ch.get("label", []))
        r[str(columns.choices)] = list(ch["text"])
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
    path: str | Path, split: str = "train", *, fmt: str = "auto", columns: ColumnsConfig = ColumnsConfig(),
    subset: str | None = None, require_answer: bool = True, on_invalid: str = "error", task: str = "mcqa",
    answer_base: int | None = None, encoding: str | None = None,
) -> list[Example]:
    """Load examples from any supported source.

    ``fmt``: ``auto`` (a folder → TinyLLM layout; a ``.csv`` / ``.tsv`` file → CSV, any other file → by content),
    ``tinyllm``, ``json``, ``jsonl`` (by content), ``csv`` (any file read as CSV) or ``hf`` (``path`` is a hub
    name). ``answer_base``: 0 or 1 for numeric answers; ``None`` detects it.
    ``encoding``: the files' text encoding (e.g. ``cp1252``); ``None``: UTF-8 or what a byte-order mark names.
    """
    if fmt == "hf":
        return load_hf_dataset(str(path), split, subset=subset, columns=columns, task=task,
                               on_invalid=on_invalid, answer_base=answer_base)
    p = Path(path)
    if fmt == "tinyllm" or (fmt == "auto" and p.is_dir()):
        return load_tinyllm(p, split, on_invalid=on_invalid, answer_base=answer_base, encoding=encoding)
    if fmt in ("auto", "json", "jsonl", "csv"):
        return load_records_file(p, columns, require_answer=require_answer, on_invalid=on_invalid, task=task,
                                 answer_base=answer_base, encoding=encoding, fmt="csv" if fmt == "csv" else "auto")
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
