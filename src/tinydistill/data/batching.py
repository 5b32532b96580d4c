"""One epoch's batches: plain slices of the epoch's permutation, or grouped by length; inference batches sorted by
length.

Grouping sorts rows by length inside mega-batches of ``mega_batches × batch_size`` consecutive rows of the
permutation, cuts the result into batches, then shuffles the batches. Rows of similar length share a batch,
so dynamic padding wastes little, while the epoch stays random. Everything depends only on
``(order, lengths, seed, epoch)``, so a resumed run rebuilds the same batches and replays exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

#: Rows sorted together: this many batches' worth of the permutation (as in HF's ``group_by_length``).
MEGA_BATCHES = 50


class CostsTokens(Protocol):
    """A tokenised task item (:class:`TaskItem`, a choice student's items): how many tokens it puts in a batch."""

    @property
    def n_tokens(self) -> int: ...


def row_length(row: Mapping[str, CostsTokens]) -> int:
    """Tokens a tokenised row costs: source + target of every task (a choice item: its pairs' tokens)."""
    return sum(item.n_tokens for item in row.values())


def sequential_batches(order: Sequence[int], batch_size: int) -> list[list[int]]:
    """Consecutive slices of ``order`` (the last one may be short)."""
    return [list(order[i: i + batch_size]) for i in range(0, len(order), batch_size)]


def longest_first_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices ``0..len(lengths)-1`` sorted longest first (ties in input order), cut into batches: inference
    (evaluation, teacher generation) pads each batch only to rows of its own length."""
    return sequential_batches(sorted(range(len(lengths)), key=lambda i: -lengths[i]), batch_size)


def length_grouped_batches(order: Sequence[int], lengths: Sequence[int], batch_size: int, *, seed: int,
                           epoch: int, mega_batches: int = MEGA_BATCHES) -> list[list[int]]:
    """Batches of rows of similar ``lengths``; a partition of ``order``, deterministic in (seed, epoch).

    Only the final batch may be short (the ragged tail of the whole epoch, not one per mega-batch).
    """
    mega = max(1, mega_batches) * batch_size
    grouped: list[int] = []
    for start in range(0, len(order), mega):
        chunk = list(order[start: start + mega])
        grouped.extend(sorted(chunk, key=lambda i: -lengths[i]))  # stable: ties keep the permutation's order
    batches = sequential_batches(grouped, batch_size)
    import torch  # here, not at the top: the data layer loads without torch (`tinydistill --help`)

    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 7_919)  # not the epoch order's own stream
    full = batches[:-1] if batches and len(batches[-1]) < batch_size else batches
    shuffled = [full[i] for i in torch.randperm(len(full), generator=g).tolist()]
    return shuffled + batches[len(full):]


def epoch_batches(order: Sequence[int], rows: Sequence[Mapping[str, CostsTokens]], batch_size: int, *,
                  group_by_length: bool, seed: int, epoch: int) -> list[list[int]]:
    """The trainer's batches for one epoch (see the module docstring)."""
    if not group_by_length:
        return sequential_batches(order, batch_size)
    lengths = [row_length(r) for r in rows]
    return length_grouped_batches(order, lengths, batch_size, seed=seed, epoch=epoch)
