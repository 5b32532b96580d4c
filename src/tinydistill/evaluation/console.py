"""Terminal output: rich tables of a run's results."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import cast

from rich.console import Console, JustifyMethod
from rich.table import Table

from .outcome import RunOutcome
from .report import pct

console = Console(width=None if sys.stdout.isatty() else 120)


def results_table(title: str, rows: Sequence[dict]) -> Table:
    """rows: dicts with method, rank_accuracy, generate_accuracy, top_share, majority_baseline, seconds."""
    table = Table(title=title)
    for col, justify in (("method", "left"), ("valid acc: ranked choices", "right"),
                         ("valid acc: generated answer", "right"),
                         ("top prediction share", "right"), ("majority baseline", "right"), ("time", "right")):
        table.add_column(col, justify=cast(JustifyMethod, justify))
    for r in rows:
        secs = r.get("seconds")
        table.add_row(r["method"], pct(r.get("rank_accuracy")), pct(r.get("generate_accuracy")),
                      pct(r.get("top_share")), pct(r.get("majority_baseline")),
                      "–" if secs is None else f"{secs:.0f} s")
    return table


def outcome_rows(outcome: RunOutcome, label: str | None = None) -> list[dict]:
    m = outcome.valid.metrics
    rows = [{"method": label or f"student: {outcome.cfg.method}", "rank_accuracy": m.get("rank_accuracy"),
             "generate_accuracy": m.get("generate_accuracy"), "top_share": m.get("rank_top_share"),
             "majority_baseline": m.get("majority_baseline"),
             "seconds": outcome.train_seconds + outcome.eval_seconds}]
    return rows


def teacher_rows(outcome: RunOutcome) -> list[dict]:
    return [{"method": f"teacher: {name} (stated answer)", "generate_accuracy": t["accuracy"],
             "top_share": t["top_share"], "majority_baseline": outcome.valid.metrics.get("majority_baseline")}
            for name, t in outcome.teachers.items()]


def print_outcome(outcome: RunOutcome) -> None:
    console.print(results_table(f"{outcome.cfg.name}: valid ({outcome.valid.metrics['n']} rows)",
                                outcome_rows(outcome) + teacher_rows(outcome)))
    console.print(f"run folder: {outcome.cfg.run_dir}")
