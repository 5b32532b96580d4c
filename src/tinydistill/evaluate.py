"""Evaluate a student two ways — rank the choices by likelihood, and generate then parse — plus teachers.

Ranking is immune to letter collapse; generation is what a deployed student does. Both are reported, with
the prediction distribution, the share of the most frequent prediction and the majority baseline.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm
from transformers.modeling_outputs import BaseModelOutput

from .choice_student import choice_overflow, encode_choices, pad_choices
from .collate import (
    SourceEncoder,
    TaskItem,
    TruncationStats,
    encode_target,
    pad_causal,
    pad_seq2seq,
    place_prefix,
)
from .data import LETTERS, Example, majority_baseline
from .losses import sequence_log_likelihood
from .prompts import answer_target, parse_answer
from .rationales import stated_answer
from .students import Student
from .teachers.base import Teacher


@dataclass
class EvalResult:
    metrics: dict[str, float | int | dict | None]
    predictions: list[dict] = field(default_factory=list)


def _chunks(seq: Sequence, size: int):
    for i in range(0, len(seq), size):
        yield seq[i: i + size]


@torch.no_grad()
def rank_choices(
    student: Student, examples: Sequence[Example], *, prefix: str, max_input_length: int,
    answer_style: str, max_answer_length: int, batch_size: int = 32, reduction: str = "sum",
    autocast_dtype: torch.dtype | None = None, progress: bool = False, prefix_side: str = "encoder",
) -> list[list[float]]:
    """Score every choice of every example: a multiple-choice head's scores, else the student's
    log-likelihood of each choice's answer target (``prefix_side``: where a seq2seq student reads ``prefix``)."""
    model, device = student.model, student.model.device
    enc = SourceEncoder(student, max_input_length)
    prefix, head = place_prefix(student, prefix, prefix_side)
    scores: list[list[float]] = []
    for batch in tqdm(list(_chunks(examples, batch_size)), desc="rank", disable=not progress, leave=False):
        if student.kind == "multiple_choice":
            items = [encode_choices(student.tokenizer, ex, prefix, max_input_length)[0] for ex in batch]
            tensors = {k: v.to(device) for k, v in pad_choices(items, student.pad_token_id).items()}
            with torch.autocast(device.type, dtype=autocast_dtype or torch.float32,
                                enabled=autocast_dtype is not None):
                head = student.choice_scores(tensors).tolist()
            scores.extend(row[: len(ex.choices)] for row, ex in zip(head, batch, strict=True))
            continue
        sources = [enc.encode(ex, prefix) for ex in batch]
        owners, targets = [], []
        for b, ex in enumerate(batch):
            for c in range(len(ex.choices)):
                owners.append(b)
                targets.append(head + encode_target(student, answer_target(ex.choices, c, answer_style),
                                                    max_answer_length)[0])
        with torch.autocast(device.type, dtype=autocast_dtype or torch.float32,
                            enabled=autocast_dtype is not None):
            if student.kind == "seq2seq":
                src = pad_seq2seq([TaskItem(s, [0]) for s in sources], student.pad_token_id)
                src = {k: v.to(device) for k, v in src.items()}
                hidden = model.get_encoder()(input_ids=src["input_ids"],
                                             attention_mask=src["attention_mask"]).last_hidden_state
                idx = torch.tensor(owners, device=device)
                tgt = pad_seq2seq([TaskItem([0], t, n_prefix=len(head)) for t in targets], student.pad_token_id)
                pair = {"attention_mask": src["attention_mask"][idx], "labels": tgt["labels"].to(device)}
                if head:
                    pair["decoder_targets"] = tgt["decoder_targets"].to(device)
                logits, labels = student.target_logits(pair, BaseModelOutput(last_hidden_state=hidden[idx]))
            else:
                pairs = pad_causal([TaskItem(sources[o], t) for o, t in zip(owners, targets, strict=True)],
                                   student.pad_token_id)
                logits, labels = student.target_logits({k: v.to(device) for k, v in pairs.items()})
        ll = sequence_log_likelihood(logits, labels, reduction).tolist()
        for b, ex in enumerate(batch):
            scores.append([s for o, s in zip(owners, ll, strict=True) if o == b][: len(ex.choices)])
    return scores


@torch.no_grad()
def generate_answers(
    student: Student, examples: Sequence[Example], *, prefix: str, max_input_length: int,
    max_new_tokens: int = 32, batch_size: int = 32, progress: bool = False, prefix_side: str = "encoder",
) -> list[str]:
    """Greedy-decode each example's answer text (``prefix_side: decoder``: the decoder starts with ``prefix``)."""
    model, device, tok = student.model, student.model.device, student.tokenizer
    enc = SourceEncoder(student, max_input_length)
    prefix, head = place_prefix(student, prefix, prefix_side)
    if head:
        start = model.generation_config.decoder_start_token_id
        start = model.config.decoder_start_token_id if start is None else start
    texts: list[str] = []
    for batch in tqdm(list(_chunks(examples, batch_size)), desc="generate", disable=not progress, leave=False):
        sources = [enc.encode(ex, prefix) for ex in batch]
        width = max(len(s) for s in sources)
        pad = student.pad_token_id
        if student.kind == "causal":  # left-pad so every row continues from its last prompt token
            ids = torch.tensor([[pad] * (width - len(s)) + s for s in sources])
            mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sources])
        else:
            ids = torch.tensor([s + [pad] * (width - len(s)) for s in sources])
            mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sources])
        if student.kind == "multiple_choice":  # the rationale decoder writes; its stated answer is parsed
            start = tok.cls_token_id if tok.cls_token_id is not None else pad
            out = model.generate_rationales(ids.to(device), mask.to(device), start_id=start, pad_id=pad,
                                            eos_id=student.eos_token_id, max_new_tokens=max_new_tokens)
        else:
            forced = {"decoder_input_ids": torch.tensor([[start, *head]] * len(batch), device=device)} if head else {}
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                                 max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                 pad_token_id=pad, eos_token_id=student.eos_token_id, **forced)
        if student.kind == "causal":
            out = out[:, width:]
        elif head:
            out = out[:, 1 + len(head):]
        texts.extend(tok.batch_decode(out, skip_special_tokens=True))
    return texts


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
    kw = dict(prefix=prefix, max_input_length=max_input_length, batch_size=batch_size, progress=progress)
    metrics: dict = {"n": len(examples), "majority_baseline": majority_baseline(examples)}
    if student.kind == "multiple_choice":  # count what the choice head reads: (question, choice) pairs
        metrics["sources_truncated"] = sum(
            choice_overflow(student.tokenizer, ex, prefix, max_input_length) > 0 for ex in examples)
    else:
        stats = TruncationStats(rows=len(examples))
        enc = SourceEncoder(student, max_input_length)
        for ex in examples:
            enc.encode(ex, prefix, stats)
        metrics["sources_truncated"] = stats.sources
    rows = [{"id": ex.id, "gold": ex.answer} for ex in examples]
    primary: list[int | None] | None = None
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
    choice_decoder = student.kind == "multiple_choice" and getattr(student.model, "decoder", None) is not None
    if "generate" in modes and (student.kind != "multiple_choice" or (choice_decoder and rationale_prefix)):
        gen_kw = dict(kw, prefix=rationale_prefix) if student.kind == "multiple_choice" else kw
        texts = generate_answers(student, examples, max_new_tokens=max_new_tokens, prefix_side=prefix_side, **gen_kw)
        parse = stated_answer if student.kind == "multiple_choice" else parse_answer
        preds_g = [parse(t, ex.choices) for t, ex in zip(texts, examples, strict=True)]
        metrics["generate_accuracy"] = accuracy(preds_g, examples)
        metrics["generate_unparsed"] = sum(p is None for p in preds_g) / max(len(preds_g), 1)
        metrics["generate_distribution"] = distribution(preds_g)
        metrics.update({f"generate_{k}": v for k, v in collapse_metrics(preds_g).items()})
        for row, p, t in zip(rows, preds_g, texts, strict=True):
            row.update(generate_prediction=p, generated=t)
        primary = primary if primary is not None else preds_g
    for i, (row, ex) in enumerate(zip(rows, examples, strict=True)):
        p = primary[i] if primary is not None else None
        row["prediction"] = p
        row["prediction_text"] = ex.choices[p] if p is not None else None
        row["correct"] = (p == ex.answer) if ex.answer is not None else None
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
