"""Evaluate a student two ways — rank the choices by likelihood, and generate then parse — plus teachers.

Ranking is immune to letter collapse; generation is what a deployed student does. Both are reported, with
the prediction distribution, the share of the most frequent prediction and the majority baseline.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from tqdm.auto import tqdm

from ..data import LETTERS, Example, longest_first_batches, majority_baseline, stated_answer
from ..files import bar_options
from ..students import Student, place_prefix
from ..teachers import Teacher


@dataclass
class EvalResult:
    metrics: dict[str, Any]  # accuracies and shares (floats), counts, distributions
    predictions: list[dict] = field(default_factory=list)


T = TypeVar("T")


def _in_input_order(examples: Sequence[Example], batch_size: int, work: Callable[[list[Example]], list[T]], *,
                    desc: str, progress: bool) -> list[T]:
    """``work`` (a batch → one result per row) on batches of similar text length, longest first; the results in
    the order of ``examples``. On OBQA valid the choice head pads 48k tokens this way instead of 101k."""
    lengths = [len(ex.question) + max((len(c) for c in ex.choices), default=0) for ex in examples]
    results: list[T] = [None] * len(examples)  # type: ignore[list-item]  # every slot is filled below
    for batch in tqdm(longest_first_batches(lengths, batch_size), desc=desc, disable=not progress,
                      **bar_options(leave=False)):
        for i, result in zip(batch, work([examples[i] for i in batch]), strict=True):
            results[i] = result
    return results


@torch.no_grad()
def rank_choices(
    student: Student, examples: Sequence[Example], *, prefix: str, max_input_length: int,
    answer_style: str, max_answer_length: int, batch_size: int = 32, reduction: str = "sum",
    autocast_dtype: torch.dtype | None = None, progress: bool = False, prefix_side: str = "encoder",
) -> list[list[float]]:
    """Score every choice of every example: a multiple-choice head's scores, else the student's
    log-likelihood of each choice's answer target (``prefix_side``: where a seq2seq student reads ``prefix``)."""
    source = student.source_encoder(max_input_length)
    prefix, head = place_prefix(student, prefix, prefix_side)
    return _in_input_order(examples, batch_size, lambda batch: student.rank_scores(
        batch, source=source, prefix=prefix, head=head, max_input_length=max_input_length, answer_style=answer_style,
        max_answer_length=max_answer_length, reduction=reduction, autocast_dtype=autocast_dtype),
        desc="rank", progress=progress)


@torch.no_grad()
def generate_answers(
    student: Student, examples: Sequence[Example], *, prefix: str, max_input_length: int,
    max_new_tokens: int = 32, batch_size: int = 32, progress: bool = False, prefix_side: str = "encoder",
) -> list[str]:
    """Greedy-decode each example's answer text (``prefix_side: decoder``: the decoder starts with ``prefix``)."""
    source = student.source_encoder(max_input_length)
    prefix, head = place_prefix(student, prefix, prefix_side)

    def generate(batch: list[Example]) -> list[str]:
        out = student.generate_ids([source.encode(ex, prefix) for ex in batch], head, max_new_tokens)
        return student.tokenizer.batch_decode(out, skip_special_tokens=True)

    return _in_input_order(examples, batch_size, generate, desc="generate", progress=progress)


def collapse_metrics(predictions: Sequence[int | None], n_choices: int | None = None) -> dict[str, float]:
    """Share of the most frequent prediction and the entropy (bits) of the prediction distribution."""
    valid = [p for p in predictions if p is not None]
    if not valid:
        return {"top_share": 1.0, "entropy_bits": 0.0}
    counts = Counter(valid)
    total = len(valid)
    entropy = max(0.0, -sum(c / total * math.log2(c / total) for c in counts.values()))
    return {"top_share": max(counts.values()) / total, "entropy_bits": entropy}


def distribution(predictions: Sequence[int | None]) -> dict[str, int]:
    counts = Counter("unparsed" if p is None else LETTERS[p] for p in predictions)
    return dict(sorted(counts.items()))


def accuracy(predictions: Sequence[int | None], examples: Sequence[Example]) -> float:
    labeled = [(p, ex.answer) for p, ex in zip(predictions, examples, strict=True) if ex.answer is not None]
    return sum(p == a for p, a in labeled) / len(labeled) if labeled else float("nan")


def evaluate_student(
    student: Student, examples: Sequence[Example], *, prefix: str, max_input_length: int,
    answer_style: str, max_answer_length: int, modes: Sequence[str] = ("rank", "generate"),
    batch_size: int = 32, reduction: str = "sum", max_new_tokens: int = 32,
    autocast_dtype: torch.dtype | None = None, progress: bool = False, rationale_prefix: str | None = None,
    prefix_side: str = "encoder",
) -> EvalResult:
    """Accuracy by ranking and/or generation, collapse metrics, and one prediction row per example.

    A multiple-choice student "generates" by writing a rationale with ``rationale_prefix`` (its first
    teacher's task prefix) through its rationale decoder; the answer that rationale states is scored.
    """
    was_training = student.model.training
    student.model.eval()
    kw: dict[str, Any] = dict(prefix=prefix, max_input_length=max_input_length, batch_size=batch_size,
                              progress=progress)
    metrics: dict = {"n": len(examples), "majority_baseline": majority_baseline(examples)}
    metrics["sources_truncated"] = student.count_truncated_sources(examples, prefix, max_input_length)
    rows: list[dict[str, Any]] = [{"id": ex.id, "gold": ex.answer} for ex in examples]
    primary: Sequence[int | None] | None = None
    if "rank" in modes:
        scores = rank_choices(student, examples, answer_style=answer_style, max_answer_length=max_answer_length,
                              reduction=reduction, autocast_dtype=autocast_dtype, prefix_side=prefix_side, **kw)
        preds = [max(range(len(s)), key=s.__getitem__) for s in scores]
        metrics["rank_accuracy"] = accuracy(preds, examples)
        metrics["rank_distribution"] = distribution(preds)
        metrics.update({f"rank_{k}": v for k, v in collapse_metrics(preds).items()})
        for row, p, s in zip(rows, preds, scores, strict=True):
            row.update(rank_prediction=p, rank_scores=[round(x, 4) for x in s])
        primary = preds
    # a choice student generates through its rationale decoder (if it has one) and states an answer
    gen_prefix = student.generation_prefix(prefix, rationale_prefix)
    if "generate" in modes and gen_prefix is not None:
        texts = generate_answers(student, examples, max_new_tokens=max_new_tokens, prefix_side=prefix_side,
                                 **dict(kw, prefix=gen_prefix))
        preds_g = [student.parse_generated(t, ex.choices) for t, ex in zip(texts, examples, strict=True)]
        metrics["generate_accuracy"] = accuracy(preds_g, examples)
        metrics["generate_unparsed"] = sum(p is None for p in preds_g) / max(len(preds_g), 1)
        metrics["generate_distribution"] = distribution(preds_g)
        metrics.update({f"generate_{k}": v for k, v in collapse_metrics(preds_g).items()})
        for row, parsed, t in zip(rows, preds_g, texts, strict=True):
            row.update(generate_prediction=parsed, generated=t)
        primary = primary if primary is not None else preds_g
    for i, (row, ex) in enumerate(zip(rows, examples, strict=True)):
        chosen = primary[i] if primary is not None else None
        row["prediction"] = chosen
        row["prediction_text"] = ex.choices[chosen] if chosen is not None else None
        row["correct"] = (chosen == ex.answer) if ex.answer is not None else None
    student.model.train(was_training)
    return EvalResult(metrics, rows)


def evaluate_teacher(teacher: Teacher, examples: Sequence[Example]) -> dict[str, float | int]:
    """A teacher's accuracy from the answer its rationale states; rows without a rationale count as wrong."""
    rationales = teacher.rationales(examples)
    preds = [stated_answer(r, ex.choices) if r else None for r, ex in zip(rationales, examples, strict=True)]
    covered = sum(r is not None for r in rationales)
    metrics = {
        "accuracy": accuracy(preds, examples),
        "coverage": covered / max(len(examples), 1),
        "stated": sum(p is not None for p in preds) / max(len(examples), 1),
    }
    metrics.update({k: v for k, v in collapse_metrics(preds).items()})
    return metrics
