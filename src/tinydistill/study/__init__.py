"""Study code: the TinyLLM paper's suites as grids of ordinary runs, and hyperparameter search.

A suite expands to cells (dataset × variant × seed); each cell is one run folder
``<output>/<suite>/<dataset>/<variant>/seed<k>/`` made by :func:`tinydistill.run.run`: selected on a validation
set held out of train (``data.valid_from_train``), then scored once on the evaluation split (``data.test``).
A cell whose ``summary.json`` holds test metrics is done and never re-run, so an interrupted sweep resumes cell by
cell (and a half-trained cell resumes from its checkpoint). Results: mean ± std over seeds, the paper's published
figure and the majority-class baseline beside ours, in ``report.md``, ``report.json``, ``report.html``.

Modules, in dependency order: :mod:`.paper` (datasets, labels, published numbers), :mod:`.suites` (variants,
cells, the sweep's settings), :mod:`.configs` (each cell's run config), :mod:`.selection` (aggregation, rows
chosen on valid), :mod:`.figures` (matplotlib), :mod:`.reports` (markdown, JSON, HTML), :mod:`.sweep` (running
one), :mod:`.recipes` (``configs/<dataset>/<method>.yaml``) and :mod:`.search` (optuna).
"""

from __future__ import annotations

from typing import Any

from .paper import DATASETS, TABLE1_METHODS
from .suites import FAST_SUITE, SCALING_SUITE, SUITES, Sweep, parse_train_limit

__all__ = ["DATASETS", "FAST_SUITE", "SCALING_SUITE", "SUITES", "TABLE1_METHODS", "Sweep", "best_line",
           "measure_speed", "parse_train_limit", "reproduce", "run_search"]


def __getattr__(name: str) -> Any:  # the sweep and search load torch and optuna: only when a command runs
    if name == "reproduce":
        from .sweep import reproduce

        return reproduce
    if name == "measure_speed":
        from .scaling import measure_speed

        return measure_speed
    if name in ("best_line", "run_search"):
        from . import search

        return getattr(search, name)
    raise AttributeError(name)
