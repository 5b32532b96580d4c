"""A sweep's report: the markdown table beside the paper's numbers, ``report.json`` and ``report.html``."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..config import MINILM_ALIAS
from ..evaluation import console, html_page
from ..files import write_json_atomic
from .figures import plot_alpha, plot_fractions, plot_table
from .paper import METHOD_LABELS, PAPER_NAMES, PAPER_TABLE1, PAPER_TEACHERS
from .selection import aggregate, select_on_valid, select_per_dataset
from .suites import Cell, Variant, cell_done


def describe_student(student: dict, cells: Sequence[Cell]) -> str:
    """The report's note on the student: the recipe's checkpoint and head, and the finished cells' parameter counts.

    ``student`` is the first dataset's; a ``--set`` scoped to other datasets may change theirs (their cells'
    ``config.yaml`` says what each used)."""
    model = student.get("model", MINILM_ALIAS)
    name = "all-MiniLM-L6-v2" if model == MINILM_ALIAS else f"`{model}`"
    if student.get("architecture", "auto") == "multiple_choice":
        shape = "a multiple-choice head (+ a rationale decoder for the rationale methods)"
    else:
        shape = "each choice ranked by the likelihood it gives the choice's text"
    sizes = sorted({done["n_params"] for c in cells if (done := cell_done(c)) and done.get("n_params")})
    counts = "" if not sizes else f" ({' / '.join(f'{n / 1e6:.1f}M' for n in sizes)} parameters)"
    return f"- Student: {name}{counts} with {shape}; the paper's students are FLAN-T5 80M/250M/780M."


def describe_train_limit(train_limit: int | dict[str, int] | None) -> str:
    """``--train-limit`` in the report's protocol line."""
    if isinstance(train_limit, dict):
        return ", ".join(f"{k} {v}" for k, v in train_limit.items()) + " (the other datasets whole)"
    return str(train_limit or "all")


def describe_overrides(overrides: Sequence[str]) -> str:
    """``--set`` in the report's protocol line ('' when none)."""
    return "; settings " + ", ".join(f"`{o}`" for o in overrides) if overrides else ""


def _fmt(entry: dict | None) -> str:
    if not entry or entry.get("mean") is None:
        return "failed" if entry and entry.get("failed") else "—"
    n = len(entry["test"])
    return f"{entry['mean']:.1f} ± {entry['std']:.1f}" + ("" if n >= 3 else f" (n={n})")


def _average(entries: Sequence[dict | None]) -> float | None:
    means = [e["mean"] for e in entries if e and e.get("mean") is not None]
    return statistics.fmean(means) if len(means) == len(entries) and means else None


def _paper_row(label: str, paper: dict[str, float], datasets: Sequence[str]) -> str:
    vals = [paper.get(d) for d in datasets]
    known = [v for v in vals if v is not None]
    avg = statistics.fmean(known) if len(known) == len(vals) else None
    return (f"| {label} | " + " | ".join("—" if x is None else f"{x:.2f}" for x in vals) +
            f" | {'—' if avg is None else f'{avg:.2f}'} |")


def markdown_report(suite: str, variants: Sequence[Variant], datasets: Sequence[str], table: dict,
                    meta: dict) -> str:
    heads = [PAPER_NAMES.get(d, d) for d in datasets]
    lines = [f"# reproduce: {suite}", "", meta["protocol"], "",
             "| method | " + " | ".join(heads) + " | avg |", "|---|" + "---|" * (len(heads) + 1)]
    for v in variants:
        entries = [table.get(v.name, {}).get(d) for d in datasets]
        avg = _average(entries)
        lines.append(f"| {v.label} | " + " | ".join(_fmt(e) for e in entries) +
                     f" | {'—' if avg is None else f'{avg:.1f}'} |")
    majority = [next((table[v.name][d]["majority"] for v in variants
                      if table.get(v.name, {}).get(d, {}).get("majority") is not None), None) for d in datasets]
    if any(m is not None for m in majority):
        avg = statistics.fmean(m for m in majority if m is not None)
        lines.append("| majority class | " + " | ".join("—" if m is None else f"{m:.1f}" for m in majority) +
                     f" | {avg:.1f} |")
    lines += ["", "Collapse check — share of test rows given the most frequent answer (%, mean over seeds; a "
              "student that always answers one letter sits at 100):", "",
              "| method | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    for v in variants:
        shares = [(table.get(v.name, {}).get(d) or {}).get("top_share") for d in datasets]
        lines.append(f"| {v.label} | " + " | ".join("—" if x is None else f"{x:.0f}" for x in shares) + " |")
    if suite in ("table1", "fast"):
        lines += ["", "The paper (Table 1, 80M FLAN-T5 student, its test split):", "",
                  "| method | " + " | ".join(heads) + " | avg |", "|---|" + "---|" * (len(heads) + 1)]
        for method in dict.fromkeys(v.method for v in variants):
            paper = PAPER_TABLE1["80M"].get(method)
            if paper:  # the paper's own rows: none of our footnotes apply to them
                lines.append(_paper_row(METHOD_LABELS.get(method, method), paper, datasets))
        lines += [_paper_row(f"teacher {name}", paper, datasets) for name, paper in PAPER_TEACHERS.items()]
    lines += ["", *meta.get("notes", []), "", f"Compute: {meta['seconds'] / 60:.0f} min of train + eval over "
              f"{meta['cells_done']} cells ({meta['cells_total']} planned); command: `{meta['command']}`.", ""]
    return "\n".join(lines)


def _weight_label(variant_name: str) -> str:
    """``tinyllm_w0.01`` → ``0.01``; the recipe's own variant → ``recipe``."""
    return variant_name.rsplit("_w", 1)[1] if "_w" in variant_name else "recipe"


def _with_weight_choices(cells: Sequence[Cell], table: dict, variants: Sequence[Variant],
                         meta: dict) -> tuple[list[Variant], dict]:
    """Each weight grid's rows chosen on valid (per seed, then one weight per dataset) after the table's rows,
    with a note naming every choice."""
    variants, meta = list(variants), dict(meta)
    per_seed, seed_choices = select_on_valid(cells, table)
    per_dataset, dataset_choices = select_per_dataset(cells, table)
    explained: list[tuple[list[Variant], str, dict[str, dict[str, Any]], Callable[[Any], str], str]] = [
        (per_seed, "weight_choices", seed_choices, lambda chosen: ",".join(
            _weight_label(v) for _, v in sorted(chosen.items())),
         "Weight on valid: for each dataset and seed, the rationale-loss weight (the recipe's or one of the grid) "
         "whose student scored best on the held-out valid rows; the row reports that student's test accuracy."),
        (per_dataset, "weight_choices_per_dataset", dataset_choices, _weight_label,
         "One weight per dataset on valid: the weight whose students scored best on the held-out rows on average "
         "over the seeds; the row reports every seed's test accuracy at that weight."),
    ]
    for rows, key, choices, label, text in explained:
        if not rows:
            continue
        variants += rows
        meta[key] = choices
        meta["notes"] = [*meta.get("notes", []), f"- {text} Chosen: " + "; ".join(
            f"{METHOD_LABELS[g]} {PAPER_NAMES.get(d, d)} {label(chosen)}"
            for g, per_ds in choices.items() for d, chosen in per_ds.items()) + "."]
    return variants, meta


def write_reports(root: Path, suite: str, variants: Sequence[Variant], datasets: Sequence[str], cells: Sequence[Cell],
                  meta: dict) -> str:
    table = aggregate(cells)
    meta = dict(meta, seconds=sum(e["seconds"] for per in table.values() for e in per.values()),
                cells_done=sum(cell_done(c) is not None for c in cells), cells_total=len(cells))
    variants, meta = _with_weight_choices(cells, table, variants, meta)
    text = markdown_report(suite, variants, datasets, table, meta)
    root.mkdir(parents=True, exist_ok=True)
    (root / "report.md").write_text(text)
    write_json_atomic(root / "report.json", {"suite": suite, "datasets": list(datasets), **meta,
                                             "variants": [v.__dict__ for v in variants], "table": table})
    plot = plot_table(variants, datasets, table, root / "plots" / "accuracy.png")
    figures = []
    if suite == "fractions":
        figures.append(("Accuracy against the training-set fraction (Figure 2)",
                        plot_fractions(variants, datasets, table, root / "plots" / "fractions.png")))
    elif suite == "alpha":
        figures.append(("Accuracy over the α grid (Figure 3)",
                        plot_alpha(variants, datasets, table, root / "plots" / "alpha.png")))
    try:
        sections = [("Results", text), ("Test accuracy by dataset", plot), *figures]
        (root / "report.html").write_text(html_page(f"reproduce: {suite}", sections))
    except (ImportError, TypeError, ValueError) as e:  # the HTML is a convenience; the markdown is the record
        console.print(f"report.html not written: {e}", markup=False)
    return text
