"""``tinydistill quickstart --shrink N``: after the quickstart, an N-layer student distilled white-box from the
quickstart's fine-tuned 6-layer one, shown with its parameters, size on disk and CPU speed beside its accuracy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from .config import config_from_dict
from .data import load_examples
from .errors import ConfigError
from .evaluation import RunOutcome, console, markdown_table
from .files import write_json_atomic
from .quickstart import plain, quickstart_config
from .run import run
from .study import measure_speed


def shrink(folder: Path, *, layers: int, output_dir: str = "runs", name: str = "quickstart",
           overrides: list[str] | None = None, progress: bool = True,
           init: Literal["teacher", "pretrained"] = "teacher") -> tuple[RunOutcome, list[dict]]:
    """Distil ``runs/<name>/finetune/best`` into a ``layers``-layer student (``runs/<name>/whitebox_L<layers>``),
    then measure both in this process; returns the run's outcome and the table's rows.

    ``init="teacher"`` starts the cut student from the fine-tuned teacher's own layers (DistilBERT style, the
    PKD-skip map); ``"pretrained"`` from the pretrained MiniLM's (run folder ``whitebox_L<layers>_pretrained``)."""
    teacher = Path(output_dir) / name / "finetune" / "best"
    if not (teacher / "config.json").is_file():
        raise ConfigError(f"{teacher}: not found; --shrink distils the quickstart's fine-tuned student, which "
                          f"`tinydistill quickstart` trains first")
    extra = [f"student.num_layers={layers}", f"whitebox.teacher_model={teacher}", *(overrides or [])]
    raw = quickstart_config(folder, output_dir, name, "whitebox", extra)
    raw["name"] = f"whitebox_L{layers}" + ("" if init == "teacher" else "_pretrained")
    if init == "teacher":
        raw["student"]["model"] = str(teacher)
    cfg = config_from_dict(raw, source="quickstart.yaml --shrink")
    console.rule(f"[bold]white-box: a {layers}-layer student from the fine-tuned one")
    outcome = run(cfg, progress=progress, log=plain)
    examples = load_examples(folder, "valid", on_invalid="skip")[:128]
    rows = []
    for label, best, summary in (("fine-tuning, 6 layers (teacher)", teacher, teacher.parent / "summary.json"),
                                 (f"white-box, {layers} layers", cfg.run_dir / "best", cfg.run_dir / "summary.json")):
        speed = measure_speed(best, examples, prefix=cfg.answer_prefix, max_input_length=cfg.student.max_input_length)
        acc = json.loads(summary.read_text())["valid"]["rank_accuracy"]
        rows.append({"method": label, "params": f"{speed['params'] / 1e6:.1f}M", "disk_mb": f"{speed['disk_mb']:.0f}",
                     "batch1_ms": f"{speed['batch1_ms']:.1f}", "batch32_rows_s": f"{speed['batch32_rows_s']:.0f}",
                     "valid_acc": f"{100 * acc:.1f}"})
    rows[1]["speedup"] = f"{float(rows[0]['batch1_ms']) / float(rows[1]['batch1_ms']):.2f}×"
    rows[0]["speedup"] = "1.00×"
    cols = [("method", "student"), ("params", "params"), ("disk_mb", "disk (MB)"), ("batch1_ms", "batch-1 ms"),
            ("speedup", "speed-up"), ("batch32_rows_s", "batch-32 rows/s"), ("valid_acc", "valid acc (rank)")]
    table = markdown_table(rows, cols)
    plain(table)
    plain("speed: one CPU thread, eager attention, 128 valid rows, both measured in this process")
    write_json_atomic(Path(output_dir) / name / f"shrink_L{layers}.json", {"rows": rows})
    return outcome, rows
