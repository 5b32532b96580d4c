"""Tokenise multi-task examples once, then pad batches dynamically with label masks.

A source that does not fit ``max_input_length`` loses tokens from the *start of the question* (the task
prefix and the answer choices always survive); every truncation is counted, never silent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from .choice_student import (
    ChoiceItem,
    MaskedRationaleItem,
    encode_choices,
    encode_masked_rationale,
    pad_choices,
    pad_masked_rationales,
)
from .data import Example
from .errors import TinyDistillError
from .losses import IGNORE_INDEX
from .prompts import format_choices
from .students import Student

ANSWER_TASK = "answer"


def rationale_task(teacher: str) -> str:
    return f"rationale/{teacher}"


@dataclass
class TruncationStats:
    sources: int = 0
    source_tokens_dropped: int = 0
    targets: dict[str, int] = field(default_factory=dict)
    rows: int = 0

    def as_dict(self) -> dict[str, object]:
        return {"rows": self.rows, "sources_truncated": self.sources,
                "source_tokens_dropped": self.source_tokens_dropped, "targets_truncated": dict(self.targets)}


@dataclass(frozen=True)
class TaskSpec:
    """One task of multi-task training: its prefix, how to get a target from a row, and its target limit."""

    name: str
    prefix: str
    target: Callable[[int, Example], str | None]  # (row index, example) → target text or None (skip row)
    max_target_length: int
    row_weight: Callable[[int], float] | None = None
    choices: Callable[[int, Example], Sequence[str]] | None = None  # every choice's target (shortcut penalty)


@dataclass
class TaskItem:
    source_ids: list[int]
    target_ids: list[int]
    weight: float = 1.0
    row: int = -1  # index of the training row (keys cached teacher signals)
    choice_ids: list[list[int]] | None = None  # target ids of every choice, when the task scores choices
    n_prefix: int = 0  # prefix_side decoder: target_ids start with this many task-prefix tokens (never scored)


def special_tokens_around(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a text ([CLS]…[SEP], <s>…, …</s>)."""
    core = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for start in range(len(full) - len(core) + 1):
        if full[start: start + len(core)] == core:
            return full[:start], full[start + len(core):]
    return [], []


class SourceEncoder:
    """Builds token ids for ``prefix + question + "\\nAnswer Choices:\\n(a) ..."`` within a length budget."""

    def __init__(self, student: Student, max_input_length: int) -> None:
        self.tok = student.tokenizer
        self.kind = student.kind
        self.max_len = max_input_length
        self._before, self._after = special_tokens_around(self.tok)
        self._n_special = len(self._before) + len(self._after)
        self._cache: dict[str, list[int]] = {}

    def _ids(self, text: str) -> list[int]:
        ids = self._cache.get(text)
        if ids is None:
            ids = self.tok(text, add_special_tokens=False)["input_ids"]
            if len(self._cache) < 100_000:
                self._cache[text] = ids
        return ids

    def encode(self, ex: Example, prefix: str, stats: TruncationStats | None = None) -> list[int]:
        tail = ("\nAnswer Choices:\n" + format_choices(ex.choices) if ex.choices else "") + (
            "\n" if self.kind == "causal" else "")  # open-answer rows have no choices
        head, question, rest = self._ids(prefix), self._ids(ex.question), self._ids(tail)
        budget = self.max_len - self._n_special - len(head) - len(rest)
        if len(question) > budget:
            dropped = len(question) - max(budget, 0)
            question = question[dropped:] if budget > 0 else []
            if stats is not None:
                stats.sources += 1
                stats.source_tokens_dropped += dropped
        ids = self._before + head + question + rest + self._after
        return ids[: self.max_len]


def encode_target(student: Student, text: str, max_length: int) -> tuple[list[int], bool]:
    """Target ids ending with EOS, cut to ``max_length`` (EOS kept only when the text fits)."""
    ids = student.tokenizer(text, add_special_tokens=False)["input_ids"]
    if student.kind == "causal" and not text.startswith(" "):
        ids = student.tokenizer(" " + text, add_special_tokens=False)["input_ids"]
    truncated = len(ids) + 1 > max_length
    ids = ids[: max_length - 1] + [student.eos_token_id] if not truncated else ids[:max_length]
    return ids, truncated


def resolve_prefix_side(student: Student, prefix_side: str) -> str:
    """``auto``: the decoder side for a seq2seq student (one shared encoder pass per row), else the encoder's."""
    if prefix_side == "auto":
        return "decoder" if student.kind == "seq2seq" else "encoder"
    return prefix_side


def place_prefix(student: Student, prefix: str, prefix_side: str) -> tuple[str, list[int]]:
    """Where a task prefix goes: ``(text before the source, token ids opening the decoder side)``.
    ``prefix_side: decoder`` (seq2seq only) moves it to the decoder; otherwise it stays in the source."""
    if resolve_prefix_side(student, prefix_side) != "decoder" or student.kind != "seq2seq" or not prefix:
        return prefix, []
    return "", student.tokenizer(prefix, add_special_tokens=False)["input_ids"]


def check_prefix_side(student: Student, prefix_side: str) -> None:
    if resolve_prefix_side(student, prefix_side) == "decoder" and student.kind != "seq2seq":
        raise TinyDistillError(f"student.prefix_side 'decoder' needs a seq2seq student; this one is {student.kind}")


def tokenize_tasks(
    student: Student, examples: Sequence[Example], tasks: Sequence[TaskSpec], max_input_length: int,
    prefix_side: str = "encoder", *, mask_ratio: float = 0.3, mask_seed: int = 0,
) -> tuple[list[dict[str, TaskItem]], TruncationStats]:
    """Tokenise every (row, task) pair once. Rows where a task has no target simply lack that task.

    ``prefix_side="decoder"`` (seq2seq): every task reads the same source (no prefix) and its target starts
    with the task prefix, masked from the loss, so one encoder pass can serve all of a row's tasks.
    A multiple-choice student with a masked-rationale head gets each rationale as ``(source, rationale)`` with
    ``mask_ratio`` of its tokens masked, the positions fixed by ``(mask_seed, task, row)``.
    """
    check_prefix_side(student, prefix_side)
    enc = SourceEncoder(student, max_input_length)
    placed = {task.name: place_prefix(student, task.prefix, prefix_side) for task in tasks}  # tokenised once
    stats = TruncationStats(rows=len(examples))
    masked_rationales = getattr(student.model, "mlm_head", None) is not None
    rows: list[dict[str, TaskItem]] = []
    for i, ex in enumerate(examples):
        items: dict[str, TaskItem | ChoiceItem] = {}
        for task in tasks:
            if task.name == ANSWER_TASK and student.kind == "multiple_choice":  # score (question, choice) pairs
                item, cut = encode_choices(student.tokenizer, ex, task.prefix, max_input_length)
                stats.sources += bool(cut)
                stats.source_tokens_dropped += cut
                items[task.name] = item
                continue
            text = task.target(i, ex)
            if not text:
                continue
            weight = task.row_weight(i) if task.row_weight else 1.0
            if weight <= 0:
                continue
            if masked_rationales and task.name != ANSWER_TASK:
                masked, cut = encode_masked_rationale(student.tokenizer, enc.encode(ex, task.prefix), text,
                                                      task.max_target_length, mask_ratio,
                                                      f"{mask_seed}/{task.name}/{i}")
                if cut:
                    stats.targets[task.name] = stats.targets.get(task.name, 0) + 1
                masked.weight, masked.row = weight, i
                items[task.name] = masked
                continue
            target_ids, cut = encode_target(student, text, task.max_target_length)
            if cut:
                stats.targets[task.name] = stats.targets.get(task.name, 0) + 1
            source_prefix, head = placed[task.name]
            choice_ids = ([head + encode_target(student, c, task.max_target_length)[0] for c in task.choices(i, ex)]
                          if task.choices else None)
            source = enc.encode(ex, source_prefix, stats if task.name == ANSWER_TASK else None)
            items[task.name] = TaskItem(source, head + target_ids, weight, i, choice_ids, len(head))
        rows.append(items)
    return rows, stats


def pad_seq2seq(items: Sequence[TaskItem], pad_id: int) -> dict[str, torch.Tensor]:
    src_len = max(len(it.source_ids) for it in items)
    tgt_len = max(len(it.target_ids) for it in items)
    input_ids = torch.full((len(items), src_len), pad_id, dtype=torch.long)
    attention = torch.zeros((len(items), src_len), dtype=torch.long)
    labels = torch.full((len(items), tgt_len), IGNORE_INDEX, dtype=torch.long)
    for b, it in enumerate(items):
        input_ids[b, : len(it.source_ids)] = torch.tensor(it.source_ids)
        attention[b, : len(it.source_ids)] = 1
        labels[b, : len(it.target_ids)] = torch.tensor(it.target_ids)
    out = {"input_ids": input_ids, "attention_mask": attention, "labels": labels,
           "row_weights": torch.tensor([it.weight for it in items], dtype=torch.float)}
    if any(it.n_prefix for it in items):  # prefix in the decoder: it is read (decoder_targets), never scored
        out["decoder_targets"] = labels.clone()
        for b, it in enumerate(items):
            labels[b, : it.n_prefix] = IGNORE_INDEX
    return out


def shared_sources(rows: Sequence[dict[str, TaskItem]], by_task: dict[str, list[TaskItem]],
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


def pad_causal(items: Sequence[TaskItem], pad_id: int) -> dict[str, torch.Tensor]:
    """Prompt and target in one sequence, right-padded; labels only on the target tokens."""
    length = max(len(it.source_ids) + len(it.target_ids) for it in items)
    input_ids = torch.full((len(items), length), pad_id, dtype=torch.long)
    attention = torch.zeros((len(items), length), dtype=torch.long)
    labels = torch.full((len(items), length), IGNORE_INDEX, dtype=torch.long)
    for b, it in enumerate(items):
        seq = it.source_ids + it.target_ids
        input_ids[b, : len(seq)] = torch.tensor(seq)
        attention[b, : len(seq)] = 1
        labels[b, len(it.source_ids): len(seq)] = torch.tensor(it.target_ids)
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels,
            "row_weights": torch.tensor([it.weight for it in items], dtype=torch.float)}


class MultiTaskCollator:
    """Turns a list of rows (each ``{task: TaskItem}``) into ``{task: padded batch}``."""

    def __init__(self, kind: str, pad_id: int) -> None:
        # a multiple-choice student's rationale decoder reads its own encoder, like a seq2seq model
        self.pad = pad_seq2seq if kind in ("seq2seq", "multiple_choice") else pad_causal
        self.pad_id = pad_id

    def __call__(self, rows: Sequence[dict[str, TaskItem]]) -> dict[str, dict[str, torch.Tensor]]:
        by_task: dict[str, list[TaskItem]] = {}
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
