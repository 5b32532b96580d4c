"""Evaluation throughput: choice ranking vs batched generation vs a naive per-example ``generate`` loop.

Same student (the offline bert2bert warm-started from all-MiniLM-L6-v2), same shipped ARC valid rows (synthetic
rows if that folder is absent), same prompts, through :mod:`tinydistill.evaluation.evaluate`: ``rank_choices`` (one
encoder pass per row, every choice's answer scored in one batched decoder pass, bf16 autocast as in training),
``generate_answers`` batched (greedy, ``max_new_tokens``), and the same ``generate_answers`` one row at a time.
Prints a table; ``--json`` writes it with a top-level ``ratio`` = rank rows/s ÷ per-example loop rows/s.

    python bench/eval_throughput.py [--quick] [--json PATH] [--threads N] [--batch-size N]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
from bench_io import write_results

from tinydistill.config.schema import StudentConfig
from tinydistill.data.loaders import load_examples
from tinydistill.data.records import Example
from tinydistill.evaluation.evaluate import generate_answers, rank_choices
from tinydistill.students.registry import load_student

ARC = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyllm" / "arc"


def rows(n: int) -> list[Example]:
    if ARC.is_dir():
        return load_examples(ARC, "valid")[:n]
    return [Example(str(i), f"Question {i}: which of these is a metal?", ("iron", "wood", "glass", "sand"), 0)
            for i in range(n)]


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="32 rows (the loop over 16)")
    ap.add_argument("--json", type=Path, default=None, help="write results here")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--batch-size", type=int, default=32, help="EvalConfig.batch_size")
    ap.add_argument("--max-new-tokens", type=int, default=32, help="EvalConfig.max_new_tokens")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    n, n_loop = (32, 16) if args.quick else (128, 32)
    examples = rows(n)
    torch.manual_seed(0)
    student = load_student(StudentConfig(model="minilm", architecture="bert2bert", attn_implementation="eager"))
    student.model.eval()
    common = dict(prefix="answer: ", max_input_length=256)
    rank_kw = dict(common, answer_style="letter_text", max_answer_length=32, autocast_dtype=torch.bfloat16)
    rank_choices(student, examples[:4], **rank_kw)  # warm-up
    generate_answers(student, examples[:2], max_new_tokens=4, **common)

    t_rank, _ = timed(lambda: rank_choices(student, examples, batch_size=args.batch_size, **rank_kw))
    t_gen, batched = timed(lambda: generate_answers(student, examples, max_new_tokens=args.max_new_tokens,
                                                    batch_size=args.batch_size, **common))
    t_loop, looped = timed(lambda: generate_answers(student, examples[:n_loop], max_new_tokens=args.max_new_tokens,
                                                    batch_size=1, **common))
    rates = {"rank": n / t_rank, "generate": n / t_gen, "loop": n_loop / t_loop}
    same = sum(a == b for a, b in zip(batched[:n_loop], looped, strict=True))  # type: ignore[index]
    labels = {"rank": f"rank_choices, batched ({args.batch_size})",
              "generate": f"generate_answers, batched ({args.batch_size})",
              "loop": "generate_answers, one row at a time"}
    print(f"\n{'mode':<40}{'rows/s':>9}{'vs loop':>9}")
    for k, label in labels.items():
        print(f"{label:<40}{rates[k]:>9.1f}{rates[k] / rates['loop']:>8.1f}x")
    ratio = rates["rank"] / rates["loop"]
    print(f"\n{n} ARC valid rows (loop: {n_loop}), {args.max_new_tokens} new tokens, {args.threads} threads; "
          f"{same}/{n_loop} batched generations identical to the loop's; ratio (rank / loop) = {ratio:.1f}x")
    write_results(args.json, {
        "ratio": ratio, "generate_vs_loop": rates["generate"] / rates["loop"], "rows": n, "loop_rows": n_loop,
        "rows_per_s": rates, "identical_generations": same, "threads": args.threads,
        "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
