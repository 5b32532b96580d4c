"""Which rows a process takes: of a global training batch (every ``n``-th), of teacher generation (``--shard i/n``
or the launcher's rank), and the items a process borrows so that every process runs the same tasks."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from ...errors import ConfigError

T = TypeVar("T")


def shard(items: Sequence[T], index: int, count: int) -> list[T]:
    """Process ``index`` of ``count``'s part of ``items``: every ``count``-th item from ``index``."""
    return list(items[index::count])


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` → ``(i, n)`` with ``0 <= i < n``."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {text!r}: expected i/n, e.g. 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"--shard {text!r}: need 0 <= i < n")
    return index, count


def launched_shard() -> tuple[int, int]:
    """``(rank, world size)`` of a process started by ``accelerate launch`` / ``torchrun``; ``(0, 1)`` alone."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def same_tasks_everywhere(
    local: Sequence[int], global_batch: Sequence[int], rows: Sequence[Mapping[str, Any]],
) -> tuple[list[dict[str, Any]], set[str]]:
    """This process's rows, plus one borrowed item for every task of the global batch that they lack.

    Returns ``(items, borrowed task names)``; the caller zeroes the borrowed tasks' loss terms."""
    items = [dict(rows[i]) for i in local]
    have = {task for item in items for task in item}
    borrowed: set[str] = set()
    for i in global_batch:
        for task, item in rows[i].items():
            if task not in have:
                have.add(task)
                borrowed.add(task)
                items.append({task: item})
    return items, borrowed
