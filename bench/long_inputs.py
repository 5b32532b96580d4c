"""Long inputs on CPU: the attention kernel and the attention dropout, at the recipe's other settings.

Fine-tunes the offline MiniLM multiple-choice student on shipped TinyLLM rows (default PubMedQA: an abstract,
then the question; three choices) at ``max_input_length`` 512. There, attention's score matrices (batch ·
choices · heads · length²) dominate time and memory. SDPA's fused CPU kernel avoids them, but only without
dropout on the attention probabilities: with the checkpoint's 0.1, PyTorch falls back to the unfused path.
Each variant runs ``tinydistill.run.run`` for the same optimizer steps in its own process (its own peak RSS);
the valid rows are few and the test split is off, so training dominates. The baseline is the recipe as
``tinydistill reproduce`` runs it (eager attention, the checkpoint's dropout, freed host memory kept for reuse;
one row leaves the allocator alone). Prints a table of examples/s and
peak RSS with ratios to the baseline; ``--json`` writes them.

    python bench/long_inputs.py [--dataset pubmedqa] [--max-input-length 512] [--steps N] [--threads N] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
from pathlib import Path

from bench_io import report, run_worker, write_results

DATA_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyllm"

#: name → (label, overrides of the reproduce recipe). "baseline" is the recipe itself.
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "baseline": ("recipe: eager attention, checkpoint's attention dropout (0.1)", []),
    "no_reuse": ("  same, allocator left alone (reuse_host_memory: false)", ["train.reuse_host_memory=false"]),
    "sdpa": ("SDPA, attention dropout 0.1", ["student.attn_implementation=sdpa"]),
    "eager_nodrop": ("eager, attention dropout 0", ["student.attention_dropout=0"]),
    "sdpa_nodrop": ("SDPA, attention dropout 0", ["student.attn_implementation=sdpa", "student.attention_dropout=0"]),
}
FINAL = "sdpa_nodrop"


def worker(name: str, dataset: str, length: int, steps: int, threads: int) -> None:
    import torch

    from tinydistill.config.loader import apply_overrides, config_from_dict
    from tinydistill.run import run
    from tinydistill.study.configs import base_config

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as out:
        raw = base_config(DATA_ROOT, dataset, train_limit=None, valid_rows=16, epochs=1.0, output_dir=Path(out),
                          seed=0, overrides=[])
        raw["data"]["test"] = None
        raw = apply_overrides(raw, ["method=finetune", f"student.max_input_length={length}",
                                    f"train.max_steps={steps}", "eval.batch_size=8", *VARIANTS[name][1]])
        outcome = run(config_from_dict(raw), progress=False)
    report({"name": name, "examples_per_s": steps * raw["train"]["batch_size"] / outcome.train_seconds,
            "train_seconds": outcome.train_seconds,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="pubmedqa", help="a folder of the shipped TinyLLM data")
    p.add_argument("--max-input-length", type=int, default=512)
    p.add_argument("--steps", type=int, default=30, help="optimizer steps of batch 8 per variant")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args.worker, args.dataset, args.max_input_length, args.steps, args.threads)
        return
    if not (DATA_ROOT / args.dataset).is_dir():
        sys.exit(f"{DATA_ROOT / args.dataset}: the shipped TinyLLM data is missing")
    shape = ["--dataset", args.dataset, "--max-input-length", str(args.max_input_length), "--steps", str(args.steps),
             "--threads", str(args.threads)]
    results = {name: run_worker(__file__, ["--worker", name, *shape], name) for name in VARIANTS}
    base = results["baseline"]
    print(f"\n{args.dataset}, MiniLM choice student, {args.max_input_length} tokens, {args.steps} steps of 8, "
          f"{args.threads} thread(s)\n")
    print("| variant | examples/s | vs baseline | peak RSS (MB) | vs baseline |\n|---|---|---|---|---|")
    for name, r in results.items():
        r["speed_ratio"] = r["examples_per_s"] / base["examples_per_s"]
        r["memory_ratio"] = r["peak_rss_mb"] / base["peak_rss_mb"]
        print(f"| {VARIANTS[name][0]} | {r['examples_per_s']:.2f} | {r['speed_ratio']:.2f}x | "
              f"{r['peak_rss_mb']:.0f} | {r['memory_ratio']:.2f}x |")
    write_results(args.json, {"dataset": args.dataset, "max_input_length": args.max_input_length,
                              "steps": args.steps, "threads": args.threads, "variants": results,
                              "ratio": results[FINAL]["speed_ratio"]})


if __name__ == "__main__":
    main()
