"""Inference cost of a trained multiple-choice student, every way it can run, in one process and one run:

- PyTorch fp32 eager, the transformers forward (the baseline every ratio is against);
- PyTorch fp32 through the selective readout (``students/bert_readout.py``: the encoder on real tokens only, its
  last layer only at each pair's first token) — what ``eval``, ``serve`` and training run for a BERT student;
- PyTorch bf16 autocast, where the CPU multiplies bf16 natively (AVX512-BF16 / AMX; else recorded as skipped);
- ONNX fp32 and ONNX int8 (``tinydistill export``'s graph: torch.onnx dynamo, ONNX Runtime's dynamic quantiser).

For each: batch-1 latency (one question with its choices; median and p95 over ``--rows`` valid rows × ``--rounds``),
batch-32 throughput (rows/s over the same rows), size on disk, and ranked accuracy on the whole valid split. The
model only is timed (inputs tokenised beforehand), each variant on ``--threads`` intra-op threads; the variants take
turns input by input, so a shared machine's load falls on all alike. Prints a table and writes JSON (``--json``).

    python bench/inference_latency.py [RUN_DIR] [--threads 2] [--rows 100] [--no-onnx] [--json docs/results/x.json]

RUN_DIR defaults to runs/quickstart/tinyllm (the quickstart's TinyLLM student; train one with
``tinydistill quickstart``), else runs/quickstart/finetune.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from bench_io import write_results
from transformers import AutoModelForMultipleChoice

from tinydistill.config import cpu_has_native_bf16
from tinydistill.export import accuracy, encoded_batches, size_on_disk
from tinydistill.export.exporter import _cpu_name, _example_batch, _valid_rows, resolve_source
from tinydistill.export.graph import export_onnx, quantize_int8
from tinydistill.students import load_student, onnx_student, saved_student_config

DEFAULT_RUNS = ("runs/quickstart/tinyllm", "runs/quickstart/finetune")


def interleaved(variants: dict[str, tuple[Any, torch.dtype | None]], singles: list, batches: list,
                rounds: int) -> dict[str, dict[str, float]]:
    """Time every variant on the same inputs, taking turns input by input (the order rotating), so that the load
    of a shared machine falls on all of them alike: batch-1 median/p95 (ms) and batch-32 rows/s."""
    names = list(variants)
    one: dict[str, list[float]] = {n: [] for n in names}
    many: dict[str, float] = dict.fromkeys(names, 0.0)

    def timed(name: str, batch: dict) -> float:
        student, dtype = variants[name]
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            student.choice_scores(batch)
        return time.perf_counter() - start

    with torch.inference_mode():
        for b in singles[:3]:  # warm-up
            for n in names:
                timed(n, b)
        for r in range(rounds):
            for i, b in enumerate(singles):
                k = (i + r) % len(names)
                for n in names[k:] + names[:k]:
                    one[n].append(timed(n, b))
            for i, b in enumerate(batches):
                k = (i + r) % len(names)
                for n in names[k:] + names[:k]:
                    many[n] += timed(n, b)
    rows = rounds * sum(len(b["labels"]) for b in batches)
    out = {}
    for n in names:
        xs = sorted(one[n])
        out[n] = {"batch1_median_ms": 1000 * statistics.median(xs),
                  "batch1_p95_ms": 1000 * xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))],
                  "batch32_rows_per_s": rows / many[n]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", nargs="?", default=None, help="run folder or saved student (default: the quickstart's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rows", type=int, default=100, help="valid rows timed one at a time and in batches of 32")
    ap.add_argument("--rounds", type=int, default=2, help="times each timed row is run per variant")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--no-onnx", action="store_true",
                    help="the PyTorch variants only (ONNX Runtime's spinning threads slow the next PyTorch call)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    run = args.run or next((r for r in DEFAULT_RUNS if Path(r, "best").is_dir()), None)
    if run is None:
        sys.exit("no quickstart run found: run `tinydistill quickstart` first, or give a run folder")
    source = resolve_source(run)
    cfg = source.cfg
    student_cfg = saved_student_config(cfg.student, source.model_dir) if cfg else None
    pt = load_student(student_cfg) if student_cfg else None
    assert pt is not None, "a run folder with config.yaml is needed (its valid split and prefix)"
    pt.model.eval()
    whole = load_student(student_cfg)  # the baseline: the transformers forward, every position of every layer
    whole.model.selective_readout = False
    whole.model.eval()
    prefix, max_length = cfg.answer_prefix, student_cfg.max_input_length
    rows, rows_from = _valid_rows(source, None, "valid")
    timed = rows[: args.rows]
    print(f"{run}: {len(rows)} valid rows ({rows_from}), {len(timed)} timed; {args.threads} threads; "
          f"{_cpu_name()}", file=sys.stderr)
    weights = source.model_dir / "model.safetensors"
    variants: dict[str, tuple[Any, torch.dtype | None]] = {"pytorch fp32 eager": (whole, None),
                                                           "pytorch fp32 readout": (pt, None)}
    sizes = {"pytorch fp32 eager": size_on_disk(weights), "pytorch fp32 readout": size_on_disk(weights)}
    skipped = {}
    if cpu_has_native_bf16():
        variants["pytorch bf16 autocast"] = (pt, torch.bfloat16)
        sizes["pytorch bf16 autocast"] = size_on_disk(weights)
    else:
        skipped["pytorch bf16 autocast"] = {"skipped": "this CPU has no native bf16 (AVX512-BF16 / AMX): autocast "
                                                       "would emulate it, slower than fp32"}
    with tempfile.TemporaryDirectory() as tmp:
        example = _example_batch(pt, rows, prefix, max_length)
        batch = {k: v[None] for k, v in example.items()}
        batch["choice_mask"] = torch.ones(batch["input_ids"].shape[:2], dtype=torch.bool)
        with torch.inference_mode():
            readout_diff = float((whole.choice_scores(batch) - pt.choice_scores(batch)).abs().max())
        diff = None
        if not args.no_onnx:
            fp32_path, int8_path = Path(tmp, "fp32.onnx"), Path(tmp, "int8.onnx")
            export_onnx(AutoModelForMultipleChoice.from_pretrained(source.model_dir).eval(), example, fp32_path)
            quantize_int8(fp32_path, int8_path)
            config = pt.model.config
            fp32 = onnx_student(fp32_path, config, pt.tokenizer, args.threads)
            int8 = onnx_student(int8_path, config, pt.tokenizer, args.threads)
            with torch.inference_mode():
                diff = float((whole.choice_scores(batch) - fp32.choice_scores(batch)).abs().max())
            variants["onnx fp32"], variants["onnx int8"] = (fp32, None), (int8, None)
            sizes["onnx fp32"], sizes["onnx int8"] = size_on_disk(fp32_path), size_on_disk(int8_path)
        t0 = time.perf_counter()
        results: dict[str, Any] = interleaved(variants, encoded_batches(pt, timed, prefix, max_length, 1),
                                              encoded_batches(pt, timed, prefix, max_length, 32), args.rounds)
        print(f"timed in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
        for name, (student, dtype) in variants.items():
            results[name]["size_mb"] = sizes[name] / 1e6
            results[name]["valid_accuracy"] = accuracy(student, rows, prefix=prefix, max_length=max_length,
                                                       autocast_dtype=dtype)
        results.update(skipped)
    base = results["pytorch fp32 eager"]
    for r in results.values():
        if "skipped" in r:
            continue
        r["speedup_batch1"] = base["batch1_median_ms"] / r["batch1_median_ms"]
        r["speedup_batch32"] = r["batch32_rows_per_s"] / base["batch32_rows_per_s"]
        r["size_ratio"] = r["size_mb"] / base["size_mb"]
        r["accuracy_delta_points"] = 100 * (r["valid_accuracy"] - base["valid_accuracy"])

    print(f"{'variant':<24}{'b1 med ms':>10}{'b1 p95 ms':>10}{'b32 rows/s':>11}{'MB':>7}{'acc %':>7}"
          f"{'×b1':>6}{'×b32':>6}{'Δacc':>7}")
    for name, r in results.items():
        if "skipped" in r:
            print(f"{name:<24}skipped: {r['skipped']}")
            continue
        print(f"{name:<24}{r['batch1_median_ms']:>10.1f}{r['batch1_p95_ms']:>10.1f}{r['batch32_rows_per_s']:>11.1f}"
              f"{r['size_mb']:>7.1f}{100 * r['valid_accuracy']:>7.2f}{r['speedup_batch1']:>6.2f}"
              f"{r['speedup_batch32']:>6.2f}{r['accuracy_delta_points']:>+7.2f}")
    print(f"the selective readout vs the transformers forward, largest score difference on a test batch: "
          f"{readout_diff:.2e}")
    targets = {}
    if diff is not None:
        print(f"fp32 ONNX vs PyTorch: {diff:.2e}")
        targets = {"int8_speedup_batch1_ge_2.5": results["onnx int8"]["speedup_batch1"] >= 2.5,
                   "int8_accuracy_within_0.5_points": abs(results["onnx int8"]["accuracy_delta_points"]) <= 0.5,
                   "int8_size_le_25_mb": results["onnx int8"]["size_mb"] <= 25,
                   "fp32_onnx_max_score_diff_le_1e-4": diff <= 1e-4}
        print("targets: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in targets.items()))
    write_results(args.json, {"ratio": results.get("onnx int8", results["pytorch fp32 readout"])["speedup_batch1"],
                              "run": str(run),
                              "valid_rows": len(rows), "timed_rows": len(timed),
                              "rounds": args.rounds, "timing": "interleaved: variants take turns input by input",
                              "threads": args.threads, "cpu": _cpu_name(), "fp32_onnx_max_score_diff": diff,
                              "readout_max_score_diff": readout_diff,
                              "targets": targets, "variants": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
