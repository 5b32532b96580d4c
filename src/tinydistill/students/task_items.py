"""What a tokenised (row, task) pair is, and the two ways a batch of them is padded (one sequence per side, or
prompt and target in one sequence). Below the student classes, which pick their padding and encoding here."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from ..data import Example, format_choices
from ..losses import IGNORE_INDEX

ANSWER_TASK = "answer"


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

    @property
    def n_tokens(self) -> int:
        """Tokens this item costs a batch: source + target."""
        return len(self.source_ids) + len(self.target_ids)


def special_tokens_around(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after a text ([CLS]…[SEP], <s>…, …</s>)."""
    core = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for start in range(len(full) - len(core) + 1):
        if full[start: start + len(core)] == core:
            return full[:start], full[start + len(core):]
    return [], []


class SourceEncoder:
    """Builds token ids for ``prefix + question + "\\nAnswer Choices:\\n(a) ..." + suffix`` within a length budget
    (``suffix``: what the student's kind ends a source with, see ``Student.source_suffix``)."""

    def __init__(self, tokenizer, max_input_length: int, suffix: str = "") -> None:
        self.tok = tokenizer
        self.suffix = suffix
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
        tail = ("\nAnswer Choices:\n" + format_choices(ex.choices) if ex.choices else "") + self.suffix
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


@dataclass
class ItemContext:
    """What encoding one (row, task) pair reads besides the row: the source encoder, each task's placed prefix
    (``(text before the source, decoder-side ids)``), the truncation counters and the masked-rationale draw."""

    source: SourceEncoder
    placed: dict[str, tuple[str, list[int]]]
    stats: TruncationStats
    max_input_length: int
    mask_ratio: float = 0.3
    mask_seed: int = 0


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
