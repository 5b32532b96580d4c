"""``tinydistill quickstart``: inference-only vs fine-tuning vs TinyLLM on the embedded data, one table.

Each method is a full run under ``runs/<name>/<method>/``; a second invocation resumes and redoes nothing.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

import yaml

from .config import apply_overrides, config_from_dict, effective_precision, precision_label
from .errors import ConfigError
from .evaluation import (
    COLUMNS,
    TEACHER_NOTE,
    RunOutcome,
    console,
    markdown_table,
    outcome_rows,
    results_table,
    teacher_rows,
)
from .files import write_json_atomic
from .run import run

METHODS = (("inference", "inference only (untrained head)"), ("finetune", "fine-tuning on answers"),
           ("tinyllm", "TinyLLM (answer + FLAN-T5 + LLaMA-2 rationales)"))


def plain(message: str) -> None:
    console.print(message, markup=False, highlight=False)


def embedded_data_dir() -> Path:
    """The OpenBookQA subset (TinyLLM layout, with both teachers' rationales) shipped inside the package."""
    return Path(str(resources.files("tinydistill") / "datasets" / "obqa"))


def quickstart_config(data_dir: str | Path, output_dir: str, name: str, method: str,
                      overrides: list[str]) -> dict:
    text = (resources.files("tinydistill") / "configs" / "quickstart.yaml").read_text()
    raw = yaml.safe_load(text.replace("{data_dir}", str(data_dir)))
    raw.update(output_dir=str(Path(output_dir) / name), name=method, method=method)
    return apply_overrides(raw, overrides)


def quickstart(*, data_dir: str | None = None, output_dir: str = "runs", name: str = "quickstart",
               overrides: list[str] | None = None, progress: bool = True) -> dict[str, RunOutcome]:
    folder = Path(data_dir) if data_dir else embedded_data_dir()
    if not folder.is_dir():
        raise ConfigError(f"{folder}: data folder not found (pass --data-dir a TinyLLM-layout folder)")
    started = time.perf_counter()
    outcomes: dict[str, RunOutcome] = {}
    for method, label in METHODS:
        console.rule(f"[bold]{label}")
        cfg = config_from_dict(quickstart_config(folder, output_dir, name, method, overrides or []),
                               source="quickstart.yaml")
        outcomes[method] = run(cfg, progress=progress, log=plain)
    total = time.perf_counter() - started
    rows = [r for method, label in METHODS for r in outcome_rows(outcomes[method], label)]
    rows += teacher_rows(outcomes["tinyllm"])
    n = outcomes["tinyllm"].valid.metrics["n"]
    console.print(results_table(f"quickstart: OpenBookQA valid ({n} rows), student all-MiniLM-L6-v2 "
                                f"+ choice head", rows))
    precision = precision_label(effective_precision(outcomes["tinyllm"].cfg.train.mixed_precision))
    console.print(f"total {total:.0f} s, {precision}; runs in {Path(output_dir) / name}/<method>/ "
                  f"(report.md, predictions.jsonl, best/)")
    summary_dir = Path(output_dir) / name
    write_json_atomic(summary_dir / "report.json", {"rows": rows, "seconds": round(total, 1),
                                                    "precision": precision, "data": str(folder)})
    cols = [("method", "method")] + [(k, h) for k, h in COLUMNS if any(r.get(k) is not None for r in rows)]
    (summary_dir / "report.md").write_text(
        f"# quickstart\n\n{markdown_table(rows, cols)}\n\n{TEACHER_NOTE[0].upper()}{TEACHER_NOTE[1:]}. "
        f"Total {total:.0f} s, {precision}.\n")
    return outcomes
