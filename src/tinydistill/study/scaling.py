"""The scaling suite's answer (Scaling Down): per student size its parameters, size on disk and CPU speed, per cell
its accuracy and share of the teacher's, and per dataset the smallest student within 1 point and within 95% of
the teacher.

Speed is measured here, in one process, for every size of a dataset in turn (one thread, eager attention, the
dataset's test rows): the median latency of one row (all its choices) at batch 1, and rows per second at batch 32.
The models measured are each size's fine-tuned ``best/`` (every method's student of one size has the same shape).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ..config import StudentConfig
from ..data import load_examples
from ..export import latency, size_on_disk
from ..students import load_student
from .paper import PAPER_NAMES
from .suites import TEACHER_VARIANT, Cell, Variant


def disk_bytes(folder: Path) -> int:
    """Bytes of a saved model's weights (``*.safetensors``)."""
    return sum(size_on_disk(p) for p in folder.glob("*.safetensors"))


def measure_speed(folder: Path, rows: Sequence, *, prefix: str, max_input_length: int, batch1_rows: int = 32,
                  batch32_batches: int = 4, threads: int = 1) -> dict:
    """Parameters, size on disk, batch-1 median latency (ms per row) and batch-32 throughput (rows/s), timed by
    the export's :func:`~tinydistill.export.latency` on one thread."""
    student = load_student(StudentConfig(model=str(folder), architecture="multiple_choice",
                                         attn_implementation="eager"))
    student.model.eval()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        timed = latency(student, list(rows)[: max(batch1_rows, 32 * batch32_batches)], prefix=prefix,
                        max_length=max_input_length, batch=32)
    finally:
        torch.set_num_threads(before)
    return {"layers": int(student.model.config.num_hidden_layers), "params": student.num_parameters(),
            "disk_mb": disk_bytes(folder) / 2**20, "batch1_ms": timed.median_ms,
            "batch32_rows_s": timed.rows_per_s, "threads": threads}


def size_folders(cells: Sequence[Cell], dataset: str) -> dict[int, Path]:
    """One saved model per student size of ``dataset`` (layer count → ``best/``): fine-tuned cells first."""
    found: dict[int, Path] = {}
    for cell in sorted(cells, key=lambda c: (c.variant.method != "finetune", c.seed)):
        best = cell.run_dir / "best"
        if cell.dataset != dataset or not (best / "config.json").is_file():
            continue
        layers = int(json.loads((best / "config.json").read_text())["num_hidden_layers"])
        found.setdefault(layers, best)
    return found


def _stem(variant: Variant) -> str:
    """The method part of a variant's label ('White-box, 3 layers' → 'White-box')."""
    return variant.label.rsplit(",", 1)[0] if variant.name != TEACHER_VARIANT else "Teacher"


def teacher_learned(teacher: float, majority: float | None) -> bool:
    """The teacher is more than a point above the majority class: it learned something a student can be taught."""
    return majority is None or teacher > majority + 1.0


def smallest_within(rows: Sequence[dict], teacher: float, majority: float | None) -> list[str]:
    """The paper's question for one dataset: the smallest student within 1 point and within 95% of the teacher."""
    lines = []
    if not teacher_learned(teacher, majority):
        lines.append(f"the teacher ({teacher:.1f}) is not above the majority class ({majority:.1f}): a student that "
                     f"always gives the majority answer matches it, so no size here answers the question")
    for name, bar in (("within 1 point", teacher - 1.0), ("within 95%", 0.95 * teacher)):
        fits = sorted((r for r in rows if r["mean"] is not None and r["mean"] >= bar),
                      key=lambda r: (r["params"] or 0, -r["mean"]))
        lines.append(f"smallest {name} of the teacher (≥ {bar:.1f}): " + (
            f"{fits[0]['label']} ({fits[0]['mean']:.1f}, {fits[0]['params'] / 1e6:.1f}M parameters)" if fits
            else "none of the students trained"))
    return lines


def scaling_section(cells: Sequence[Cell], variants: Sequence[Variant], datasets: Sequence[str], table: dict,
                    data_root: Path, base_for: Callable[[str, int], dict], plot: Callable[..., Path | None],
                    out_dir: Path) -> tuple[str, dict]:
    """The markdown section and JSON of the scaling suite (speed measured here), and a plot per dataset."""
    lines = ["", "## Sizes: parameters, size on disk, CPU speed, share of the teacher", "",
             "Speed: one thread, eager attention, the dataset's test rows, measured in this process for every size "
             "in turn (batch 1: median ms per row over 32 rows, all its choices; batch 32: rows/s over 128 rows).", ""]
    record: dict = {}
    for ds in datasets:
        base = base_for(ds, cells[0].seed if cells else 0)
        rows = load_examples(data_root / ds, "valid", on_invalid="skip")[:128]
        speeds = {n: measure_speed(folder, rows, prefix=base.get("answer_prefix", ""),
                                   max_input_length=base["student"].get("max_input_length", 256))
                  for n, folder in sorted(size_folders(cells, ds).items(), reverse=True)}
        teacher_entry = table.get(TEACHER_VARIANT, {}).get(ds) or {}
        teacher = teacher_entry.get("mean")
        full = max(speeds) if speeds else None
        lines += [f"### {PAPER_NAMES.get(ds, ds)}", "",
                  "| student | layers | params | disk (MB) | batch-1 ms | batch-32 rows/s | speed-up (batch 1) | "
                  "test accuracy (%) | % of teacher |", "|---|---|---|---|---|---|---|---|---|"]
        ds_rows = []
        for v in variants:
            entry = table.get(v.name, {}).get(ds) or {}
            n = full if v.name == TEACHER_VARIANT and full else int(v.coords.get("layers", 0))
            sp = speeds.get(n)
            mean = entry.get("mean")
            share = None if mean is None or not teacher else 100 * mean / teacher
            speedup = None if sp is None or full is None else speeds[full]["batch1_ms"] / sp["batch1_ms"]
            params = sp["params"] if sp else None
            acc = "—" if mean is None else f"{mean:.1f} ± {entry.get('std') or 0:.1f}" + (
                "" if len(entry.get("test", [])) >= 3 else f" (n={len(entry.get('test', []))})")
            cols = ["—"] * 4 if sp is None else [f"{sp['params'] / 1e6:.1f}M", f"{sp['disk_mb']:.0f}",
                                                 f"{sp['batch1_ms']:.1f}", f"{sp['batch32_rows_s']:.0f}"]
            lines.append(f"| {v.label} | {n} | " + " | ".join(cols) + f" | "
                         f"{'—' if speedup is None else f'{speedup:.2f}×'} | {acc} | "
                         f"{'—' if share is None else f'{share:.1f}'} |")
            row = {"variant": v.name, "label": v.label, "method": _stem(v), "layers": n, "params": params,
                   "mean": mean, "std": entry.get("std"), "share_of_teacher": share, "speedup_batch1": speedup}
            ds_rows.append(row)
        students = [r for r in ds_rows if r["variant"] != TEACHER_VARIANT]
        verdict = (smallest_within(students, teacher, teacher_entry.get("majority")) if teacher is not None
                   else ["the teacher has not finished"])
        lines += ["", *[f"- {line}" for line in verdict], ""]
        figure = plot(ds_rows, teacher, PAPER_NAMES.get(ds, ds), out_dir / f"scaling-{ds}.png")
        if figure is not None:
            lines += [f"![{PAPER_NAMES.get(ds, ds)}: accuracy against parameters](plots/{figure.name})", ""]
        record[ds] = {"speed": {str(k): v for k, v in speeds.items()}, "rows": ds_rows, "verdict": verdict,
                      "teacher": teacher, "majority": teacher_entry.get("majority")}
    if len(datasets) > 1:
        across_lines, record["across_datasets"] = across_datasets({ds: record[ds] for ds in datasets})
        lines += across_lines
    return "\n".join(lines), record


def across_datasets(per_dataset: dict[str, dict]) -> tuple[list[str], dict]:
    """The issue's targets read over datasets: per student, its mean accuracy over the datasets whose teacher
    learned its task, the paired difference to fine-tuning of the same size (and on how many datasets it is
    ahead), the difference to the teacher and the mean batch-1 speed-up. A dataset whose teacher sits at its
    majority class is named and left out of the means (a student matching it there says nothing)."""
    learned = [ds for ds, e in per_dataset.items()
               if e.get("teacher") is not None and teacher_learned(e["teacher"], e.get("majority"))]
    left_out = [ds for ds in per_dataset if ds not in learned]
    lines = ["", "## Across datasets", ""]
    if left_out:
        lines += [f"Left out (the teacher is not above the majority class): {', '.join(left_out)}.", ""]
    if not learned:
        return lines + ["No dataset has a teacher that learned its task.", ""], {"datasets": [], "rows": []}
    lines += [f"Means over {', '.join(learned)}; \"vs\" columns are paired per dataset (datasets ahead of the "
              "other, of those with both cells).", "",
              "| student | layers | datasets | mean accuracy | vs fine-tuning, same size | vs teacher | "
              "speed-up (batch 1) |", "|---|---|---|---|---|---|---|"]
    by_variant: dict[str, dict[str, dict]] = {}
    for ds in learned:
        for row in per_dataset[ds]["rows"]:
            if row["mean"] is not None and row["variant"] != TEACHER_VARIANT:
                by_variant.setdefault(row["variant"], {})[ds] = row

    def paired(rows: dict[str, dict], other: dict[str, float]) -> tuple[float, int, int] | None:
        common = [ds for ds in rows if ds in other]
        if not common:
            return None
        diffs = [rows[ds]["mean"] - other[ds] for ds in common]
        return sum(diffs) / len(diffs), sum(d > 0 for d in diffs), len(diffs)

    def shown(p: tuple[float, int, int] | None) -> str:
        return "—" if p is None else f"{p[0]:+.2f} (ahead on {p[1]} of {p[2]})"

    teachers = {ds: per_dataset[ds]["teacher"] for ds in learned}
    out_rows = []
    for name, rows in sorted(by_variant.items(), key=lambda kv: (-next(iter(kv[1].values()))["layers"], kv[0])):
        first = next(iter(rows.values()))
        layers = first["layers"]
        baseline = {ds: r["mean"] for ds, r in by_variant.get(f"finetune_L{layers}", {}).items()}
        vs_ft = None if name == f"finetune_L{layers}" else paired(rows, baseline)
        vs_teacher = paired(rows, teachers)
        speedups = [r["speedup_batch1"] for r in rows.values() if r["speedup_batch1"] is not None]
        speedup = sum(speedups) / len(speedups) if speedups else None
        mean = sum(r["mean"] for r in rows.values()) / len(rows)
        lines.append(f"| {first['method']} | {layers} | {len(rows)} of {len(learned)} | {mean:.2f} | {shown(vs_ft)} | "
                     f"{shown(vs_teacher)} | {'—' if speedup is None else f'{speedup:.2f}×'} |")
        out_rows.append({"variant": name, "layers": layers, "datasets": sorted(rows), "mean": mean,
                         "vs_finetune": None if vs_ft is None else vs_ft[0],
                         "ahead_of_finetune": None if vs_ft is None else vs_ft[1],
                         "vs_teacher": vs_teacher[0] if vs_teacher else None, "speedup_batch1": speedup})
    teacher_mean = sum(teachers.values()) / len(teachers)
    lines += ["", f"Teacher: {teacher_mean:.2f} on average.", ""]
    return lines, {"datasets": learned, "left_out": left_out, "teacher_mean": teacher_mean, "rows": out_rows}
