"""The quickstart's rationale stage, one pass per teacher against one joint pass per batch, in the same process.

The MiniLM multiple-choice student with its masked-rationale head, the quickstart's OBQA rows and both teachers'
rationales, the trainer's own batches (8 rows, length-grouped). Each measured batch runs forward + backward both
ways, alternating which goes first, timed by ``--clock`` (``cpu``: process CPU time, for a shared machine); the
table gives the median seconds per batch, the ratio, and the padded tokens of each layout.

    python bench/rationale_pass.py [--batches N] [--threads N] [--clock wall|cpu] [--json PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_io import write_results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batches", type=int, default=24)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="cpu")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    now = time.process_time if args.clock == "cpu" else time.perf_counter

    import tinydistill.run as run_mod
    from tinydistill.config import config_from_dict
    from tinydistill.data import epoch_batches
    from tinydistill.quickstart import embedded_data_dir, quickstart_config
    from tinydistill.students import MultiTaskCollator
    from tinydistill.training.cpu_dropout import cpu_dropout
    from tinydistill.training.host_memory import keep_freed_host_memory
    from tinydistill.training.trainer import epoch_order

    cfg = config_from_dict(quickstart_config(embedded_data_dir(), tempfile.mkdtemp(), "bench", "tinyllm", []))
    rows, _ = run_mod.load_train_valid(cfg)
    torch.manual_seed(0)
    student = run_mod.load_student(cfg.student, with_rationale_head=True)
    plan = run_mod.build_method(cfg, rows, run_mod.build_teachers(cfg, rows), student)
    stage = plan.rationale_stage
    items, _ = run_mod._tokenise(cfg, student, rows, stage.tasks, lambda *_: None)
    collate = MultiTaskCollator(student.kind, student.pad_token_id)
    batches = epoch_batches(epoch_order(len(items), cfg.seed, 0), items, cfg.train.batch_size,
                            group_by_length=cfg.train.group_by_length, seed=cfg.seed, epoch=0)[: args.batches + 1]
    weights = stage.objective.task_weights
    keep_freed_host_memory()
    student.model.train()

    def step(batch: dict, joint: bool) -> float:
        student.model.zero_grad(set_to_none=True)
        t0 = now()
        with cpu_dropout(torch.device("cpu")):
            if joint:
                losses = student.masked_rationale_losses(batch)
            else:
                losses = {t: student.masked_rationale_loss(b) for t, b in batch.items()}
            sum(weights[t] * v for t, v in losses.items()).backward()
        return now() - t0

    times = {"per teacher": [], "joint": []}
    padded = {"per teacher": 0, "joint": 0}
    real = 0
    for k, rows_of_batch in enumerate(batches):
        batch = collate([items[i] for i in rows_of_batch])
        masks = [b["attention_mask"] for b in batch.values()]
        if k == 0:  # warm-up
            step(batch, False), step(batch, True)
            continue
        real += sum(int(m.sum()) for m in masks)
        padded["per teacher"] += sum(m.numel() for m in masks)
        lengths = sorted((int(x) for m in masks for x in m.sum(1)), reverse=True)
        size = -(-len(lengths) // len(masks))
        padded["joint"] += sum(lengths[i] * len(lengths[i: i + size]) for i in range(0, len(lengths), size))
        order = (False, True) if k % 2 else (True, False)
        for joint in order:
            times["joint" if joint else "per teacher"].append(step(batch, joint))
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["per teacher"] / med["joint"]
    print(f"\nrationale stage, {args.batches} batches of {cfg.train.batch_size} rows x {len(weights)} teachers, "
          f"{args.threads} thread(s), {args.clock} clock, forward + backward:")
    print(f"{'layout':<14}{'s / batch (median)':>20}{'padding':>10}")
    for k in times:
        print(f"{k:<14}{med[k]:>20.3f}{100 * (1 - real / padded[k]):>9.1f}%")
    print(f"ratio (per teacher / joint) = {ratio:.2f}x")
    write_results(args.json, {"ratio": ratio, "median_seconds": med, "times": times, "real_tokens": real,
                              "padded_tokens": padded, "batches": args.batches, "threads": args.threads,
                              "clock": args.clock})
    return 0


if __name__ == "__main__":
    sys.exit(main())
