"""``tinydistill export``: a trained multiple-choice student → an ONNX folder (optionally int8), with its tokenizer,
config, a model card and ``export.json``, measured against the PyTorch model it came from.

Everything is written into a hidden ``.OUT.partial-PID`` folder beside ``OUT`` and renamed into place once complete
(``export.json`` is its last file), so an export killed part-way leaves no folder that loads as complete.
"""

from __future__ import annotations

import os
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForMultipleChoice

from ..config import RunConfig, StudentConfig, load_config
from ..data import Example, load_split, load_train_valid
from ..errors import TinyDistillError
from ..files import fsync_path, pid_alive, write_json_atomic
from ..students import (
    EXPORT_META,
    ONNX_FILE,
    Student,
    encode_choices,
    import_onnxruntime,
    is_onnx_export,
    load_student,
    onnx_student,
    pad_choices,
    saved_student_config,
)
from .card import write_card
from .graph import export_onnx, quantize_int8
from .measure import accuracy, latency, size_on_disk

BEST_DIR = "best"
QUANTIZE = ("int8",)
#: rows timed one at a time for the card's batch-1 latency
LATENCY_ROWS = 64


@dataclass
class Source:
    """What to export: the saved model folder and, when it belongs to a run, the run's config."""

    model_dir: Path
    cfg: RunConfig | None


def resolve_source(path: str | Path) -> Source:
    """A run folder (``config.yaml`` + ``best/``) or a saved model folder (``config.json``); one line otherwise."""
    path = Path(path)
    if not path.exists():
        raise TinyDistillError(f"{path}: no such folder; give a run folder (runs/<name>) or a saved model folder")
    if is_onnx_export(path):
        raise TinyDistillError(f"{path}: already an ONNX export; export the run folder it came from")
    if (path / "config.yaml").is_file():
        model_dir = path / BEST_DIR
        if not (model_dir / "config.json").is_file():
            raise TinyDistillError(f"{path}: no '{BEST_DIR}/' student in this run folder yet; train the run first "
                                   "(tinydistill train CONFIG) or give a saved model folder")
        return Source(model_dir, load_config(path / "config.yaml"))
    if (path / "config.json").is_file():
        parent = path.parent / "config.yaml"
        return Source(path, load_config(parent) if parent.is_file() else None)
    raise TinyDistillError(f"{path}: neither a run folder (config.yaml and {BEST_DIR}/) nor a saved model folder "
                           "(config.json)")


def check_architecture(model_dir: Path) -> Any:
    """The model's HF config; one line unless it is a multiple-choice student (the kind export supports)."""
    if (model_dir / "adapter_config.json").is_file():
        raise TinyDistillError(f"{model_dir}: a LoRA adapter; export supports full multiple-choice students "
                               "(train without student.lora, or merge the adapter first)")
    config = AutoConfig.from_pretrained(model_dir)
    archs = config.architectures or []
    if not any("MultipleChoice" in a for a in archs):
        kind = ", ".join(archs) or type(config).__name__
        raise TinyDistillError(f"{model_dir}: a {kind} model; tinydistill export supports multiple-choice students "
                               "(AutoModelForMultipleChoice). Serve other students with tinydistill serve")
    return config


def check_out(out: Path, source: str | Path, force: bool) -> None:
    """``out`` may be written: absent, or (with ``force``) an earlier export or an empty folder. ``--force`` never
    deletes anything else: a file, a run or model folder, a folder of other files, or one holding the source."""
    if not out.exists():
        return
    if not out.is_dir():
        raise TinyDistillError(f"{out}: already exists and is a file, not a folder; choose another --out")
    resolved, src = out.resolve(), Path(source).resolve()
    if resolved == src or resolved in src.parents:
        raise TinyDistillError(f"{out}: holds the model being exported ({source}); choose another --out")
    earlier = (out / EXPORT_META).is_file() or (out / ONNX_FILE).is_file()
    if not force:
        what = "a complete export" if (out / EXPORT_META).is_file() else "a folder"
        raise TinyDistillError(f"{out}: already exists ({what}); choose another --out"
                               + (" or pass --force to replace it" if earlier or not any(out.iterdir()) else ""))
    if not earlier and any(out.iterdir()):
        raise TinyDistillError(f"{out}: already exists and is not an export (no {EXPORT_META} or {ONNX_FILE}); "
                               "--force replaces only an earlier export: choose another --out")


def _valid_rows(source: Source, data: str | None, split: str) -> tuple[list[Example], str]:
    if data is not None:
        from ..data import load_examples

        return load_examples(data, split), f"{data} ({split})"
    if source.cfg is None:
        return [], "none (no run config beside the model and no --data)"
    cfg = source.cfg
    if cfg.data.valid is not None:
        return load_split(cfg.data.valid, "valid", cfg.seed, cfg.data.task), f"{cfg.data.valid.path} (valid)"
    return load_train_valid(cfg)[1], "the run's hold-out of train (valid)"


def _example_batch(student: Student, rows: list[Example], prefix: str, max_length: int) -> dict[str, torch.Tensor]:
    ex = rows[0] if rows else Example("export", "Which of these is a metal?", ("iron", "wood", "glass"), 0)
    batch = pad_choices([encode_choices(student.tokenizer, ex, prefix, max_length)[0]], student.pad_token_id)
    return {k: batch[k][0] for k in ("input_ids", "attention_mask", "token_type_ids")}  # (pairs, tokens)


def _measure(student: Student, rows: list[Example], prefix: str, max_length: int) -> dict[str, Any]:
    timed = rows[:LATENCY_ROWS] or [Example("t", "Which of these is a metal?", ("iron", "wood", "glass"), 0)] * 16
    lat = latency(student, timed, prefix=prefix, max_length=max_length)
    out: dict[str, Any] = {"latency_batch1_median_ms": round(lat.median_ms, 2),
                           "latency_batch1_p95_ms": round(lat.p95_ms, 2),
                           f"rows_per_s_batch{lat.batch}": round(lat.rows_per_s, 1)}
    out["valid_accuracy"] = round(accuracy(student, rows, prefix=prefix, max_length=max_length), 4) if rows else None
    return out


def _place(tmp: Path, out: Path, force: bool) -> None:
    """Rename the finished ``tmp`` to ``out`` (replacing an old ``out`` only with ``force``)."""
    fsync_path(tmp)
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(out)
    fsync_path(out.parent)


def export_student(path: str | Path, out: str | Path, *, quantize: str | None = None, data: str | None = None,
                   split: str = "valid", force: bool = False, log: Any = print) -> dict[str, Any]:
    """Export the student of ``path`` to ``out``; returns what ``export.json`` records."""
    out = Path(out)
    if quantize is not None and quantize not in QUANTIZE:
        raise TinyDistillError(f"--quantize {quantize}: unsupported; choose one of {', '.join(QUANTIZE)}")
    import_onnxruntime()  # before any slow work: the missing extra is a one-line error
    source = resolve_source(path)
    hf_config = check_architecture(source.model_dir)
    check_out(out, path, force)
    cfg = source.cfg
    student_cfg = saved_student_config(cfg.student if cfg else StudentConfig(model=str(source.model_dir)),
                                       source.model_dir)
    prefix = cfg.answer_prefix if cfg else RunConfig.model_fields["answer_prefix"].default
    max_length = student_cfg.max_input_length
    rows, rows_from = _valid_rows(source, data, split)

    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(out)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        log(f"loading {source.model_dir}")
        student = load_student(student_cfg)
        student.model.eval()
        started = time.perf_counter()
        example = _example_batch(student, rows, prefix, max_length)
        scorer = AutoModelForMultipleChoice.from_pretrained(source.model_dir).eval()
        fp32 = tmp / ("model.fp32.onnx" if quantize else ONNX_FILE)
        log(f"exporting to ONNX with torch.onnx (dynamo), opset 18 → {out / ONNX_FILE}")
        export_onnx(scorer, example, fp32)
        if quantize:
            log("quantising (int8, dynamic: onnxruntime.quantization)")
            quantize_int8(fp32, tmp / ONNX_FILE)
            fp32.unlink()
        export_s = time.perf_counter() - started
        student.tokenizer.save_pretrained(tmp)
        hf_config.save_pretrained(tmp)
        exported = onnx_student(tmp / ONNX_FILE, hf_config, student.tokenizer)
        with torch.inference_mode():
            batch = {k: v[None] for k, v in example.items()}
            batch["choice_mask"] = torch.ones(batch["input_ids"].shape[:2], dtype=torch.bool)
            max_diff = float((student.choice_scores(batch) - exported.choice_scores(batch)).abs().max())
        log(f"measuring the PyTorch and the exported model ({len(rows)} rows of {rows_from}; "
            f"{torch.get_num_threads()} threads)")
        meta: dict[str, Any] = {
            "format": "onnx", "file": ONNX_FILE, "quantization": quantize or "none", "opset": 18,
            "exporter": f"torch.onnx (dynamo) {torch.__version__}",
            "onnxruntime": import_onnxruntime().__version__,
            "source": str(source.model_dir), "answer_prefix": prefix, "max_input_length": max_length,
            "inputs": {"input_ids": "int64 (pairs, tokens)", "attention_mask": "int64 (pairs, tokens)",
                       "token_type_ids": "int64 (pairs, tokens)"},
            "outputs": {"scores": "float32 (pairs,): the choice head's score of each (question, choice) pair"},
            "max_abs_score_difference_vs_pytorch": max_diff, "export_seconds": round(export_s, 1),
            "measured_on": {"rows": len(rows), "data": rows_from, "threads": torch.get_num_threads(),
                            "cpu": _cpu_name()},
            "pytorch": {"size_bytes": size_on_disk(source.model_dir / "model.safetensors")
                        if (source.model_dir / "model.safetensors").is_file() else size_on_disk(source.model_dir),
                        **_measure(student, rows, prefix, max_length)},
            "exported": {"size_bytes": size_on_disk(tmp / ONNX_FILE), **_measure(exported, rows, prefix, max_length)},
        }
        del exported
        write_card(tmp, meta, str(out))
        write_json_atomic(tmp / EXPORT_META, meta)  # last: its presence marks a complete export
        _place(tmp, out, force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _remove_stale_partials(out: Path) -> None:
    """Delete ``.OUT.partial-PID`` folders left by exports that were killed (their process is gone)."""
    for stale in out.parent.glob(f".{out.name}.partial-*"):
        pid = stale.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
