"""``tinydistill data check``: validate a data file or folder (or a run config's data) and print its counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..config import ColumnsConfig, RunConfig
from ..errors import DataError
from .loaders import load_examples, majority_baseline
from .records import LETTERS, Example
from .splits import load_split, load_train_valid


def _splits_in(folder: Path) -> list[str]:
    found = []
    for p in sorted(folder.glob("*_*.json*")):
        split = p.stem.rsplit("_", 1)[-1]
        if split not in found:
            found.append(split)
    return found


def _counts(examples: Sequence[Example]) -> dict:
    n_choices = Counter(len(ex.choices) for ex in examples)
    positions = Counter(LETTERS[ex.answer] for ex in examples if ex.answer is not None)
    teachers = Counter(t for ex in examples for t in ex.rationales)
    return {"rows": len(examples), "choices": dict(n_choices), "answers": dict(sorted(positions.items())),
            "majority_baseline": majority_baseline(examples), "rationales": dict(teachers)}


def _print(title: str, summary: dict[str, dict]) -> None:
    table = Table(title=title)
    for col in ("split", "rows", "choices", "answer positions", "majority", "rationales (rows with one)"):
        table.add_column(col)
    for s, info in summary.items():
        table.add_row(s, str(info["rows"]), ", ".join(f"{k}: {v}" for k, v in sorted(info["choices"].items())),
                      " ".join(f"{k}:{v}" for k, v in info["answers"].items()),
                      f"{100 * info['majority_baseline']:.1f}%",
                      ", ".join(f"{k}: {v}" for k, v in info["rationales"].items()) or "none")
    Console().print(table)
    print("OK")


def check_data(path: str, *, split: str | None = None, fmt: str = "auto", columns: ColumnsConfig = ColumnsConfig(),
               answer_base: int | None = None, encoding: str | None = None) -> dict[str, dict]:
    """Load every requested split (raising the first :class:`DataError`) and print a table of counts.
    ``columns``, ``answer_base`` and ``encoding`` read the file as a data source with those settings would."""
    p = Path(path)
    if fmt == "hf":
        splits = (split or "train").split(",")
    elif fmt == "tinyllm" or (fmt == "auto" and p.is_dir()):
        splits = split.split(",") if split else _splits_in(p)
        if not splits:
            raise DataError(p, "no '<name>_<split>.json' files in this folder")
    else:
        if not p.exists():
            raise DataError(p, "file not found")
        splits = [split or "train"]
    summary = {s: _counts(load_examples(path, s, fmt=fmt, columns=columns, answer_base=answer_base,
                                        encoding=encoding)) for s in splits}
    _print(f"{path}", summary)
    return summary


def check_config_data(cfg: RunConfig, title: str) -> dict[str, dict]:
    """Load a run config's splits exactly as training does (columns, answer_base, encoding, limit,
    valid_from_train; test if configured) and print their counts."""
    train, valid = load_train_valid(cfg)
    summary = {"train": _counts(train), "valid": _counts(valid)}
    if cfg.data.test is not None:
        summary["test"] = _counts(load_split(cfg.data.test, "test", cfg.seed, cfg.data.task))
    _print(title, summary)
    return summary
