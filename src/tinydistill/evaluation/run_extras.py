"""After a run's reports: the error analysis, ``report.html`` and the model card. Each is a convenience over the
run's record (``summary.json``, ``predictions.jsonl``), so a failure here is a logged warning, never a lost run."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ..data import Example
from ..teachers import Teacher
from . import analysis as analysis_mod
from . import html_report, model_card


def write_run_extras(run_dir: Path, predictions: Sequence[dict], examples: Sequence[Example],
                     teachers: Mapping[str, Teacher], *, dataset: str | None = None,
                     log: Callable[[str], None] = print) -> None:
    """``analysis.json``/``.md`` of the valid predictions, ``report.html``, and ``best/README.md``."""
    analysis = None
    try:
        rationales = {n: t.rationales(examples) for n, t in teachers.items()} if any(e.choices for e in examples) \
            else {}
        analysis = analysis_mod.analyze_predictions(predictions, examples, rationales, default_domain=dataset)
        analysis = {"run": str(run_dir), "split": "valid", "data": dataset, "notes": [], **analysis}
        analysis_mod.write_analysis(run_dir, analysis)
    except Exception as e:  # see the module docstring
        log(f"warning: analysis.json not written: {type(e).__name__}: {e}")
    try:
        html_report.write_html_report(run_dir, analysis=analysis)
    except Exception as e:
        log(f"warning: report.html not written: {type(e).__name__}: {e}")
    try:
        model_card.write_model_card(run_dir)
    except Exception as e:
        log(f"warning: best/README.md not written: {type(e).__name__}: {e}")
