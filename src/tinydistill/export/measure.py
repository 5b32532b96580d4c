"""What the model card and ``bench/inference_latency.py`` report of a multiple-choice student: size on disk,
batch-1 latency (one question with its choices), batch-32 throughput and accuracy on a split."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from ..data import Example
from ..evaluation import evaluate_student
from ..students import Student, encode_choices, pad_choices


def size_on_disk(path: Path) -> int:
    """Bytes of a file, or of every file under a folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@dataclass(frozen=True)
class Latency:
    """Batch-1 median and p95 in milliseconds, batch-``batch`` rows per second."""

    median_ms: float
    p95_ms: float
    rows_per_s: float
    batch: int


def encoded_batches(student: Student, rows: Sequence[Example], prefix: str, max_length: int,
             size: int) -> list[dict[str, torch.Tensor]]:
    """``rows`` tokenised as the choice head reads them, padded in batches of ``size``."""
    items = [encode_choices(student.tokenizer, ex, prefix, max_length)[0] for ex in rows]
    return [pad_choices(items[i:i + size], student.pad_token_id) for i in range(0, len(items), size)]


def latency(student: Student, rows: Sequence[Example], *, prefix: str, max_length: int, batch: int = 32,
            warmup: int = 3, autocast: AbstractContextManager | None = None) -> Latency:
    """Time ``student.choice_scores`` (the model only: inputs tokenised beforehand) on ``rows``: each row alone
    (median, p95), then all rows in batches of ``batch`` (rows per second). ``autocast``: a context to run in."""
    singles = encoded_batches(student, rows, prefix, max_length, 1)
    batches = encoded_batches(student, rows, prefix, max_length, batch)
    ctx = autocast or nullcontext()
    times = []
    with torch.inference_mode():
        for b in singles[:warmup]:
            with ctx:
                student.choice_scores(b)
        for b in singles:
            start = time.perf_counter()
            with ctx:
                student.choice_scores(b)
            times.append(time.perf_counter() - start)
        start = time.perf_counter()
        for b in batches:
            with ctx:
                student.choice_scores(b)
        elapsed = time.perf_counter() - start
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return Latency(1000 * statistics.median(times), 1000 * p95, len(rows) / elapsed, batch)


def accuracy(student: Student, rows: Sequence[Example], *, prefix: str, max_length: int,
             autocast_dtype: torch.dtype | None = None) -> float:
    """Ranked accuracy of the choice head on ``rows`` (0–1)."""
    result = evaluate_student(student, rows, prefix=prefix, max_input_length=max_length, answer_style="text",
                              max_answer_length=32, modes=("rank",), autocast_dtype=autocast_dtype)
    return float(result.metrics["rank_accuracy"])
