"""Terminal output: rich tables of a run's results."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from .outcome import RunOutcome
from .report import pct

console = Console(width=None if sys.stdout.isatty() else 120)


#: (row key, column header) of the results tables; a column empty on every row is left out
COLUMNS = (("rank_accuracy", "valid acc: ranked choices"), ("generate_accuracy", "valid acc: generated answer"),
           ("stated", "answer stated"), ("right_when_stated", "stated answer right"),
           ("top_share", "top prediction share"), ("majority_baseline", "majority baseline"))
TEACHER_NOTE = "answer stated: a teacher's rationales stating a choice; stated answer right: those stating the gold one"


def results_table(title: str, rows: Sequence[dict]) -> Table:
    """rows: dicts with method and any of :data:`COLUMNS`' keys, and seconds; columns no row fills are dropped
    (a choice-head student generates nothing: no "generated answer" column of dashes)."""
    table = Table(title=title, caption=TEACHER_NOTE if any(r.get("stated") is not None for r in rows) else None)
    shown = [(key, head) for key, head in COLUMNS if any(r.get(key) is not None for r in rows)]
    table.add_column("method", justify="left", ratio=2)
    for _, head in shown:
        table.add_column(head, justify="right", ratio=1)
    timed = any(r.get("seconds") is not None for r in rows)
    if timed:
        table.add_column("time", justify="right")
    for r in rows:
        secs = r.get("seconds")
        cells = [pct(r.get(key)) for key, _ in shown] + (["–" if secs is None else f"{secs:.0f} s"] if timed else [])
        table.add_row(r["method"], *cells)
    return table


def outcome_rows(outcome: RunOutcome, label: str | None = None) -> list[dict]:
    m = outcome.valid.metrics
    rows = [{"method": label or f"student: {outcome.cfg.method}", "rank_accuracy": m.get("rank_accuracy"),
             "generate_accuracy": m.get("generate_accuracy"), "top_share": m.get("rank_top_share"),
             "majority_baseline": m.get("majority_baseline"),
             "seconds": outcome.train_seconds + outcome.eval_seconds}]
    return rows


def teacher_rows(outcome: RunOutcome) -> list[dict]:
    """One row per teacher: the share of valid rows whose rationale states a parseable answer, and the share of
    those stated answers that are right (its accuracy over all rows is the product)."""
    rows = []
    for name, t in outcome.teachers.items():
        stated = t.get("stated")
        rows.append({"method": f"teacher: {name}", "stated": stated,
                     "right_when_stated": t["accuracy"] / stated if stated else None,
                     "top_share": t["top_share"], "majority_baseline": outcome.valid.metrics.get("majority_baseline")})
    return rows


def print_outcome(outcome: RunOutcome) -> None:
    console.print(results_table(f"{outcome.cfg.name}: valid ({outcome.valid.metrics['n']} rows)",
                                outcome_rows(outcome) + teacher_rows(outcome)))
    console.print(f"run folder: {outcome.cfg.run_dir}")
