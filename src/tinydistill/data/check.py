"""``tinydistill data check``: validate a data file or folder and print its counts."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..errors import DataError
from .loaders import load_examples, majority_baseline
from .records import LETTERS


def _splits_in(folder: Path) -> list[str]:
    found = []
    for p in sorted(folder.glob("*_*.json*")):
        split = p.stem.rsplit("_", 1)[-1]
        if split not in found:
            found.append(split)
    return found


def check_data(path: str, *, split: str | None = None, fmt: str = "auto") -> dict[str, dict]:
    """Load every requested split (raising the first :class:`DataError`) and print a table of counts."""
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
    table = Table(title=f"{path}")
    for col in ("split", "rows", "choices", "answer positions", "majority", "rationales (rows with one)"):
        table.add_column(col)
    summary: dict[str, dict] = {}
    for s in splits:
        examples = load_examples(path, s, fmt=fmt)
        n_choices = Counter(len(ex.choices) for ex in examples)
        positions = Counter(LETTERS[ex.answer] for ex in examples if ex.answer is not None)
        teachers = Counter(t for ex in examples for t in ex.rationales)
        info = {"rows": len(examples), "choices": dict(n_choices), "answers": dict(sorted(positions.items())),
                "majority_baseline": majority_baseline(examples), "rationales": dict(teachers)}
        summary[s] = info
        table.add_row(s, str(len(examples)), ", ".join(f"{k}: {v}" for k, v in sorted(n_choices.items())),
                      " ".join(f"{k}:{v}" for k, v in sorted(positions.items())),
                      f"{100 * info['majority_baseline']:.1f}%",
                      ", ".join(f"{k}: {v}" for k, v in teachers.items()) or "none")
    Console().print(table)
    print("OK")
    return summary
