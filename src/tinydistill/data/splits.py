"""The configured splits of a run as examples: seeded ``limit`` subsets and the fixed hold-out of train."""

from __future__ import annotations

import random
from pathlib import Path

from ..config import DataSourceConfig, RunConfig
from ..errors import ConfigError
from .loaders import load_examples
from .records import Example

#: The seed of the train/selection split made by ``data.valid_from_train``: one split for every run and seed.
HOLDOUT_SEED = 20240601


def _subset(examples: list[Example], n: int | None, seed: int) -> list[Example]:
    if not n or n >= len(examples):
        return examples
    keep = sorted(random.Random(seed).sample(range(len(examples)), n))
    return [examples[i] for i in keep]


def load_split(src: DataSourceConfig, role: str, seed: int, task: str = "mcqa", *,
               apply_limit: bool = True) -> list[Example]:
    """Load one configured split; ``limit`` keeps a seeded random subset (in original order)."""
    examples = load_examples(src.path, src.split or role, fmt=src.format, subset=src.subset,
                             columns=src.columns, on_invalid=src.on_invalid, task=task,
                             answer_base=src.answer_base, encoding=src.encoding)
    return _subset(examples, src.limit, seed) if apply_limit else examples


def load_train_valid(cfg: RunConfig) -> tuple[list[Example], list[Example]]:
    """The training rows and the selection rows (``data.valid``, or a fixed hold-out of train)."""
    data = cfg.data
    if data.valid is not None:
        return (load_split(data.train, "train", cfg.seed, data.task),
                load_split(data.valid, "valid", cfg.seed, data.task))
    rows = load_split(data.train, "train", cfg.seed, data.task, apply_limit=False)
    n = int(data.valid_from_train or 0)
    if n >= len(rows):
        raise ConfigError(f"data.valid_from_train: {n} rows asked but train has only {len(rows)}")
    held = set(random.Random(HOLDOUT_SEED).sample(range(len(rows)), n))
    rest = [ex for i, ex in enumerate(rows) if i not in held]
    return _subset(rest, data.train.limit, cfg.seed), [ex for i, ex in enumerate(rows) if i in held]


def dataset_label(path: str | Path) -> str:
    """A short dataset name for a data path: the TinyLLM folder's name, or the file's stem."""
    p = Path(str(path).rstrip("/"))
    return p.name if p.is_dir() or not p.suffix else p.stem
