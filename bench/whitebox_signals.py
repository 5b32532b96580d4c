"""White-box KD: cached top-k teacher logits against an online teacher (speed, peak memory, accuracy).

Teacher: the offline bert2bert warm-started from all-MiniLM-L6-v2 (6 layers a side), fine-tuned here on a small
learnable task (``what goes with a cat?`` → ``milk``, 4 shuffled choices, chance 25%). Student: the fine-tuned
teacher cut to ``student.num_layers`` evenly spaced layers a side (DistilBERT's initialisation), so it starts
with a trained output layer and both runs can learn the task in a few epochs. ``method: kd`` with
``whitebox.signals: online`` (the teacher runs every batch, full vocabulary) against ``signals: cached`` (one
teacher pass before training, top-k log-probabilities on disk, the teacher then released). Each run is a separate
process (its own peak RSS); time counts the whole ``tinydistill`` run (teacher caching included for ``cached``)
and the training alone. Prints a table; ``--json`` writes it with a top-level ``ratio`` = online training seconds
÷ cached training seconds.

    python bench/whitebox_signals.py [--quick] [--json PATH] [--threads N] [--top-k K]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_io import report, run_worker, write_results

PAIRS = {"cat": "milk", "dog": "bone", "bird": "seed", "cow": "grass", "bee": "honey", "fish": "water",
         "horse": "hay", "frog": "fly"}


def write_rows(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            animal = rng.choice(list(PAIRS))
            choices = [PAIRS[animal], *rng.sample([v for k, v in PAIRS.items() if k != animal], 3)]
            rng.shuffle(choices)
            f.write(json.dumps({"id": f"{seed}-{i}", "question": f"what goes with a {animal}?",
                                "choices": choices, "answer": PAIRS[animal]}) + "\n")
    return path


def config(work: Path, name: str, method: str, model: str, **extra) -> dict:
    cfg = {
        "name": name, "output_dir": str(work / "runs"), "seed": 0, "method": method, "answer_prefix": "answer: ",
        "data": {"train": {"path": str(work / "train.jsonl")}, "valid": {"path": str(work / "valid.jsonl")}},
        "student": {"model": model, "architecture": "bert2bert" if model == "minilm" else "auto",
                    "max_input_length": 64, "max_answer_length": 8, "answer_target": "text",
                    "attn_implementation": "eager"},
        "train": {"epochs": 1, "batch_size": 16, "lr": 1e-4, "new_params_lr_scale": 5.0, "warmup_ratio": 0.1,
                  "eval_every": 100_000},
        "eval": {"modes": ["rank"], "batch_size": 64},
    }
    for key, value in extra.items():
        node = cfg
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return cfg


def worker(spec: dict) -> None:
    """Run one config end to end; print its timings, accuracy and peak RSS."""
    from tinydistill.config.loader import config_from_dict
    from tinydistill.run import run

    torch.set_num_threads(spec["threads"])
    t0 = time.perf_counter()
    outcome = run(config_from_dict(spec["config"]), progress=False, log=lambda *a: None)
    m = outcome.valid.metrics
    report({
        "total_seconds": time.perf_counter() - t0, "train_seconds": outcome.train_seconds,
        "rank_accuracy": m["rank_accuracy"], "n_valid": m["n"], "n_train": outcome.n_train,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def spawn(spec: dict) -> dict:
    return run_worker(__file__, ["--worker", json.dumps(spec)], spec["config"]["name"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer rows and epochs (a few minutes on 2 cores)")
    ap.add_argument("--json", type=Path, default=None, help="write results here")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--top-k", type=int, default=16, help="whitebox.top_k of the cached run")
    ap.add_argument("--student-layers", type=int, default=3, help="student.num_layers (of the teacher's 6)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    n_train, n_valid, epochs = (256, 96, 2) if args.quick else (640, 192, 3)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_rows(work / "train.jsonl", n_train, 1)
        write_rows(work / "valid.jsonl", n_valid, 2)
        specs = {"teacher": config(work, "teacher", "finetune", "minilm", **{"train.epochs": epochs})}
        results = {"teacher": spawn({"config": specs["teacher"], "threads": args.threads})}
        teacher_dir = str(work / "runs" / "teacher" / "best")
        for signals in ("online", "cached"):
            cfg = config(work, f"kd-{signals}", "kd", teacher_dir, **{  # student: the teacher's layer subset
                "train.epochs": epochs, "train.lr": 3e-4, "student.num_layers": args.student_layers,
                "whitebox.teacher_model": teacher_dir, "whitebox.signals": signals,
                "whitebox.top_k": args.top_k if signals == "cached" else 0})
            results[signals] = spawn({"config": cfg, "threads": args.threads})
    on, ca = results["online"], results["cached"]
    ratio = on["train_seconds"] / ca["train_seconds"]
    print(f"\n{'run':<44}{'train s':>9}{'total s':>9}{'ex/s':>8}{'RSS MB':>8}{'rank acc':>10}")
    labels = {"teacher": "teacher: 6+6-layer bert2bert, fine-tuned",
              "online": f"student {args.student_layers}+{args.student_layers} layers, KD online (full vocab)",
              "cached": f"student, KD cached top-{args.top_k}"}
    for name, r in results.items():
        eps = r["n_train"] * epochs / r["train_seconds"]
        print(f"{labels[name]:<44}{r['train_seconds']:>9.1f}{r['total_seconds']:>9.1f}{eps:>8.1f}"
              f"{r['peak_rss_mb']:>8.0f}{100 * r['rank_accuracy']:>9.1f}%")
    print(f"\n{n_train} train / {n_valid} valid rows, {epochs} epochs, batch 16, {args.threads} threads; "
          f"training speed ratio (online / cached) = {ratio:.2f}x; peak RSS ratio = "
          f"{on['peak_rss_mb'] / ca['peak_rss_mb']:.2f}x; accuracy difference (cached - online) = "
          f"{100 * (ca['rank_accuracy'] - on['rank_accuracy']):+.1f} points")
    write_results(args.json, {
        "ratio": ratio, "total_time_ratio": on["total_seconds"] / ca["total_seconds"],
        "peak_rss_ratio": on["peak_rss_mb"] / ca["peak_rss_mb"],
        "accuracy_delta_points": 100 * (ca["rank_accuracy"] - on["rank_accuracy"]),
        "top_k": args.top_k, "epochs": epochs, "threads": args.threads, "runs": results,
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
