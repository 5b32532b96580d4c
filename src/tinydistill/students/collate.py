"""Tokenise multi-task examples once, then pad batches dynamically with label masks.

A source that does not fit ``max_input_length`` loses tokens from the *start of the question* (the task
prefix and the answer choices always survive); every truncation is counted, never silent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..data import Example
from ..errors import TinyDistillError
from .choice import ChoiceItem, MaskedRationaleItem, pad_choices, pad_masked_rationales
from .registry import Student, student_class
from .task_items import (
    ANSWER_TASK,
    ItemContext,
    SourceEncoder,
    TaskItem,
    TaskSpec,
    TruncationStats,
    pad_causal,
    pad_seq2seq,
    special_tokens_around,
)

__all__ = ["ANSWER_TASK", "MultiTaskCollator", "SourceEncoder", "TaskItem", "TaskSpec", "TruncationStats",
           "check_prefix_side", "pad_causal", "pad_seq2seq", "place_prefix", "rationale_task", "resolve_prefix_side",
           "shared_sources", "special_tokens_around", "tokenize_tasks"]


def rationale_task(teacher: str) -> str:
    return f"rationale/{teacher}"


def resolve_prefix_side(student: Student, prefix_side: str) -> str:
    """``auto``: the decoder side for a seq2seq student (one shared encoder pass per row), else the encoder's."""
    return student.resolve_prefix_side(prefix_side)


def place_prefix(student: Student, prefix: str, prefix_side: str) -> tuple[str, list[int]]:
    """Where a task prefix goes: ``(text before the source, token ids opening the decoder side)``.
    ``prefix_side: decoder`` (seq2seq only) moves it to the decoder; otherwise it stays in the source."""
    if resolve_prefix_side(student, prefix_side) != "decoder" or not student.decoder_prefix or not prefix:
        return prefix, []
    return "", student.tokenizer(prefix, add_special_tokens=False)["input_ids"]


def check_prefix_side(student: Student, prefix_side: str) -> None:
    if resolve_prefix_side(student, prefix_side) == "decoder" and not student.decoder_prefix:
        raise TinyDistillError(f"student.prefix_side 'decoder' needs a seq2seq student; this one is {student.kind}")


def tokenize_tasks(
    student: Student, examples: Sequence[Example], tasks: Sequence[TaskSpec], max_input_length: int,
    prefix_side: str = "encoder", *, mask_ratio: float = 0.3, mask_seed: int = 0,
) -> tuple[list[dict[str, Any]], TruncationStats]:  # per row: task → its kind's item
    """Tokenise every (row, task) pair once. Rows where a task has no target simply lack that task.

    ``prefix_side="decoder"`` (seq2seq): every task reads the same source (no prefix) and its target starts
    with the task prefix, masked from the loss, so one encoder pass can serve all of a row's tasks.
    A multiple-choice student with a masked-rationale head gets each rationale as ``(source, rationale)`` with
    ``mask_ratio`` of its tokens masked, the positions fixed by ``(mask_seed, task, row)``.
    """
    check_prefix_side(student, prefix_side)
    placed = {task.name: place_prefix(student, task.prefix, prefix_side) for task in tasks}  # tokenised once
    ctx = ItemContext(student.source_encoder(max_input_length), placed, TruncationStats(rows=len(examples)),
                      max_input_length, mask_ratio, mask_seed)
    rows: list[dict[str, Any]] = []
    for i, ex in enumerate(examples):
        items: dict[str, Any] = {}  # TaskItem, ChoiceItem or MaskedRationaleItem, by the student's kind
        for task in tasks:
            item = student.encode_task_item(i, ex, task, ctx)
            if item is not None:
                items[task.name] = item
        rows.append(items)
    return rows, ctx.stats


def shared_sources(rows: Sequence[Mapping[str, TaskItem]], by_task: dict[str, list[TaskItem]],
                   pad_id: int) -> dict[str, dict[str, torch.Tensor]]:
    """One padded source per row plus, per task, which row each of its items reads (``source_index``).

    Empty unless every row's tasks read the same source and there are several tasks (prefix in the decoder).
    """
    if len(by_task) < 2 or any(len({tuple(it.source_ids) for it in row.values()}) != 1 for row in rows):
        return {}
    firsts = [next(iter(row.values())) for row in rows]
    padded = pad_seq2seq(firsts, pad_id)
    out: dict[str, dict[str, torch.Tensor]] = {}
    for name in by_task:
        index = [b for b, row in enumerate(rows) if name in row]
        out[name] = {"shared_input_ids": padded["input_ids"], "shared_attention_mask": padded["attention_mask"],
                     "source_index": torch.tensor(index, dtype=torch.long)}
    return out


class MultiTaskCollator:
    """Turns a list of rows (each ``{task: TaskItem}``) into ``{task: padded batch}``."""

    def __init__(self, kind: str, pad_id: int) -> None:
        self.pad = student_class(kind).pad  # how the student kind named ``kind`` pads its task items
        self.pad_id = pad_id

    def __call__(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, torch.Tensor]]:
        by_task: dict[str, list[Any]] = {}
        for row in rows:
            for name, item in row.items():
                by_task.setdefault(name, []).append(item)
        out = {}
        for name, items in by_task.items():
            if isinstance(items[0], ChoiceItem):
                out[name] = pad_choices(items, self.pad_id)
                continue
            if isinstance(items[0], MaskedRationaleItem):
                out[name] = pad_masked_rationales(items, self.pad_id)
                continue
            out[name] = self.pad(items, self.pad_id)
            out[name]["row_index"] = torch.tensor([it.row for it in items], dtype=torch.long)
            if all(it.choice_ids for it in items):
                out[name].update(self.pad_choice_targets(items))
        # sources padded apart from targets (seq2seq layout) can be shared by a row's tasks
        if self.pad is pad_seq2seq and not any(isinstance(v[0], ChoiceItem | MaskedRationaleItem)
                                               for v in by_task.values()):
            for name, shared in shared_sources(rows, by_task, self.pad_id).items():
                out[name].update(shared)
        return out

    def pad_choice_targets(self, items: Sequence[TaskItem]) -> dict[str, torch.Tensor]:
        """One (source, choice target) pair per choice: ``choice_*`` tensors (N, ·) plus their row and position."""
        pairs, owner, pos = [], [], []
        for b, it in enumerate(items):
            for c, ids in enumerate(it.choice_ids or []):
                pairs.append(TaskItem(it.source_ids, ids, n_prefix=it.n_prefix))
                owner.append(b)
                pos.append(c)
        padded = self.pad(pairs, self.pad_id)
        out = {f"choice_{k}": v for k, v in padded.items() if k != "row_weights"}
        out["choice_row"] = torch.tensor(owner, dtype=torch.long)
        out["choice_pos"] = torch.tensor(pos, dtype=torch.long)
        return out
