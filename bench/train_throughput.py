"""TinyLLM training throughput: our trainer against the TinyLLM repository's ``Seq2SeqTrainer`` recipe.

Same student (the offline bert2bert warm-started from all-MiniLM-L6-v2 on both sides), same rows (shipped ARC
train rows with FLAN-T5 and LLaMA-2 rationales; synthetic rows if that folder is absent), same tokens, same
objective ``L = L_answer + 0.5·L_flan + 0.5·L_llama``, batch size, lr schedule, bf16 autocast and number of
examples. The baseline is the research code's way: an HF ``Seq2SeqTrainer`` whose ``compute_loss`` runs three
separate forward passes per batch (answer, rationale of teacher 1, rationale of teacher 2; task prefix in the
encoder input), with every input padded to ``max_input_length``. Each variant of ours adds one measured step.

Every variant runs in its own process (so peak RSS is its own), after a 2-step warm-up; examples/s counts a
whole ``train`` call (one epoch over the rows, setup included, checkpoint writing left out). tokens/s counts
real tokens (source + target of every task, no padding); "MFU" is the executed model FLOPs without padding
(6 · matmul parameters · tokens; one encoder pass per row with the shared encoder) over the bf16 matmul peak
measured here. Prints a table; ``--json`` writes it with a top-level ``ratio`` = ours (all steps) examples/s
÷ baseline examples/s.

    python bench/train_throughput.py [--quick] [--json PATH] [--rows N] [--threads N] [--compile]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_io import report, run_worker, write_results

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyllm" / "arc"
TEACHERS = ("flan_t5", "llama2")

#: name → (label, settings). "baseline" is the Seq2SeqTrainer recipe; the others are our trainer.
VARIANTS: dict[str, tuple[str, dict]] = {
    "baseline": ("TinyLLM repo: Seq2SeqTrainer, 3 passes, max-length padding", {}),
    "dynamic": ("ours: dynamic padding", dict(group=False, side="encoder", attn="sdpa", bf16=True, reuse=False)),
    "grouped": ("+ length-grouped batches", dict(group=True, side="encoder", attn="sdpa", bf16=True, reuse=False)),
    "shared": ("+ shared encoder (prefix in decoder)",
               dict(group=True, side="decoder", attn="sdpa", bf16=True, reuse=False)),
    "eager": ("+ eager attention instead of SDPA", dict(group=True, side="decoder", attn="eager", bf16=True,
                                                          reuse=False)),
    "reuse": ("+ freed host memory kept for reuse", dict(group=True, side="decoder", attn="eager", bf16=True,
                                                           reuse=True)),
    "fp32": ("  same, fp32 (no bf16 autocast)", dict(group=True, side="decoder", attn="eager", bf16=False,
                                                        reuse=True)),
    "compile": ("  same, + torch.compile", dict(group=True, side="decoder", attn="eager", bf16=True, reuse=True,
                                               compile=True)),
    "defaults": ("product defaults (prefix in encoder, SDPA, reuse)",
                 dict(group=True, side="encoder", attn="sdpa", bf16=True, reuse=True)),
}
FINAL = "reuse"  # the last cumulative step: the top-level ratio


# ------------------------------------------------------------------------------------------------ setup
def bench_config(group: bool = True, side: str = "encoder", attn: str = "sdpa", bf16: bool = True,
                 reuse: bool = True):
    from tinydistill.config import config_from_dict

    train = {"path": str(DATA)} if DATA.is_dir() else {"path": "synthetic"}
    return config_from_dict({
        "name": "bench", "method": "tinyllm", "data": {"train": train, "valid": train},
        "student": {"model": "minilm", "architecture": "bert2bert", "max_input_length": 256,
                    "max_answer_length": 32, "max_rationale_length": 64, "attn_implementation": attn,
                    "prefix_side": side},
        "teachers": [{"name": t, "kind": "imported", "alpha_rationale": 0.5} for t in TEACHERS],
        "train": {"epochs": 1, "batch_size": 8, "lr": 1e-4, "warmup_ratio": 0.06, "weight_decay": 0.01,
                  "mixed_precision": "bf16" if bf16 else "no", "group_by_length": group,
                  "reuse_host_memory": reuse},
    })


def examples(n: int) -> list:
    from tinydistill.data import Example, load_examples

    if DATA.is_dir():
        return load_examples(DATA, "train")[:n]
    return [Example(str(i), f"Question {i}: which of these is a metal that rusts in {'wet ' * (i % 9)}air?",
                    ("iron", "wood", "glass", "sand"), 0,
                    {"flan_t5": "Iron rusts. " * (1 + i % 7), "llama2": "Metals like iron rust. " * (2 + i % 5)})
            for i in range(n)]


def tokenised(cfg, n: int):
    """(student, tokenised rows, objective) exactly as ``tinydistill train`` builds them."""
    from tinydistill.collate import tokenize_tasks
    from tinydistill.methods import build_method
    from tinydistill.run import build_teachers
    from tinydistill.students import load_student

    rows = examples(n)
    torch.manual_seed(0)
    student = load_student(cfg.student, with_decoder=True)
    plan = build_method(cfg, rows, build_teachers(cfg), student)
    items, _ = tokenize_tasks(student, rows, plan.tasks, cfg.student.max_input_length, cfg.student.prefix_side)
    return student, items, plan.objective


def matmul_params(model: torch.nn.Module) -> tuple[int, int]:
    """Weights of the Linear layers (the LM head included) on the encoder side and on the decoder side."""
    enc = model.get_encoder()
    enc_ids = {id(m) for m in enc.modules()}
    n_enc = sum(m.weight.numel() for m in enc.modules() if isinstance(m, torch.nn.Linear))
    n_dec = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear) and id(m) not in enc_ids)
    return n_enc, n_dec


def work_per_row(items: list[dict], model: torch.nn.Module, shared: bool) -> tuple[float, float]:
    """(real tokens, executed FLOPs) per row: no padding; the source counted once per row when shared."""
    n_enc, n_dec = matmul_params(model)
    tokens = flops = 0.0
    for row in items:
        sources = [len(it.source_ids) for it in row.values()]
        targets = sum(len(it.target_ids) for it in row.values())
        tokens += sum(sources) + targets if not shared else sources[0] * len(sources) + targets
        flops += 6 * (n_enc * (sources[0] if shared else sum(sources)) + n_dec * targets)
    return tokens / len(items), flops / len(items)


# ----------------------------------------------------------------------------------------------- workers
def run_ours(n: int, settings: dict) -> dict:
    import tinydistill.trainer as trainer

    cfg = bench_config(settings["group"], settings["side"], settings["attn"], settings["bf16"], settings["reuse"])
    student, items, objective = tokenised(cfg, n)
    if settings.get("compile"):
        student.model.get_encoder().compile(dynamic=True)
        student.model.get_decoder().compile(dynamic=True)
    trainer.save_checkpoint = lambda *a, **k: None  # time training, not checkpoint writing
    with tempfile.TemporaryDirectory() as tmp:
        for sub in ("w", "r"):
            (Path(tmp) / sub).mkdir()
        warm = cfg.train.model_copy(update={"max_steps": 2})
        trainer.train(student, items, objective, warm, seed=1, run_dir=Path(tmp) / "w", progress=False)
        t0 = time.perf_counter()
        trainer.train(student, items, objective, cfg.train, seed=0, run_dir=Path(tmp) / "r",
                      progress=False)
        seconds = time.perf_counter() - t0
        losses = [json.loads(x)["loss"] for x in (Path(tmp) / "r" / "metrics.jsonl").read_text().splitlines()]
    tokens, flops = work_per_row(items, student.model, shared=settings["side"] == "decoder")
    return {"seconds": seconds, "tokens_per_row": tokens, "flops_per_row": flops, "first_loss": losses[0],
            "last_loss": losses[-1]}


def run_baseline(n: int) -> dict:
    """The research recipe: Seq2SeqTrainer + a data collator per task + compute_loss with one pass per task."""
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

    cfg = bench_config()
    student, items, objective = tokenised(cfg, n)
    weights, max_len, tok = objective.task_weights, cfg.student.max_input_length, student.tokenizer
    features = [{task: {"input_ids": it.source_ids, "attention_mask": [1] * len(it.source_ids),
                        "labels": it.target_ids} for task, it in row.items()} for row in items]

    def collate(batch: list[dict]) -> dict:  # TaskPrefixDataCollator: split by task; inputs to max length
        out = {}
        for task in weights:
            rows = [f[task] for f in batch if task in f]
            if rows:
                out[task] = tok.pad([{k: v for k, v in r.items() if k != "labels"} for r in rows],
                                              padding="max_length", max_length=max_len, return_tensors="pt")
                width = max(len(r["labels"]) for r in rows)
                out[task]["labels"] = torch.tensor([r["labels"] + [-100] * (width - len(r["labels"])) for r in rows])
        return out

    class TaskPrefixTrainer(Seq2SeqTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            outputs = {task: model(**batch) for task, batch in inputs.items()}  # one full pass per task
            loss = sum(weights[task] * out.loss for task, out in outputs.items())
            return (loss, outputs) if return_outputs else loss

    def trainer(out_dir: str, max_steps: int, seed: int) -> Seq2SeqTrainer:
        steps = max_steps if max_steps > 0 else -(-len(features) // cfg.train.batch_size)
        args = Seq2SeqTrainingArguments(
            output_dir=out_dir, per_device_train_batch_size=cfg.train.batch_size, learning_rate=cfg.train.lr,
            weight_decay=cfg.train.weight_decay, num_train_epochs=1, max_steps=max_steps,
            warmup_steps=int(cfg.train.warmup_ratio * steps), lr_scheduler_type="linear",
            max_grad_norm=cfg.train.max_grad_norm, bf16=True, use_cpu=True, report_to="none", save_strategy="no",
            logging_steps=1, disable_tqdm=True, remove_unused_columns=False, dataloader_pin_memory=False,
            seed=seed)
        return TaskPrefixTrainer(model=student.model, args=args, train_dataset=features, data_collator=collate)

    with tempfile.TemporaryDirectory() as tmp:
        trainer(tmp, 2, 1).train()  # warm-up
        t = trainer(tmp, -1, 0)
        t0 = time.perf_counter()
        t.train()
        seconds = time.perf_counter() - t0
    losses = [r["loss"] for r in t.state.log_history if "loss" in r]
    tokens, flops = work_per_row(items, student.model, shared=False)
    n_enc, _ = matmul_params(student.model)
    padded_flops = flops + 6 * n_enc * sum(max_len * len(r) - sum(len(it.source_ids) for it in r.values())
                                           for r in items) / len(items)
    return {"seconds": seconds, "tokens_per_row": tokens, "flops_per_row": flops,
            "padded_flops_per_row": padded_flops, "first_loss": losses[0], "last_loss": losses[-1]}


def worker(name: str, n: int, threads: int) -> None:
    torch.set_num_threads(threads)
    settings = VARIANTS[name][1]
    result = run_baseline(n) if name == "baseline" else run_ours(n, settings)
    result["rows"] = n
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report(result)


# -------------------------------------------------------------------------------------------------- main
def bf16_peak(threads: int, size: int = 1024, seconds: float = 2.0) -> float:
    """GFLOP/s of back-to-back bf16 square matmuls (the best of a few timed rounds)."""
    torch.set_num_threads(threads)
    a = torch.randn(size, size, dtype=torch.bfloat16)
    b = torch.randn(size, size, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    best, end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0, iters = time.perf_counter(), 5
        for _ in range(iters):
            a @ b
        best = max(best, 2 * size**3 * iters / (time.perf_counter() - t0) / 1e9)
    return best


def spawn(name: str, n: int, threads: int) -> dict:
    return run_worker(__file__, ["--worker", name, "--rows", str(n), "--threads", str(threads)], f"variant {name}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="48 rows per variant (a few minutes on 2 cores)")
    ap.add_argument("--json", type=Path, default=None, help="write results here")
    ap.add_argument("--rows", type=int, default=None, help="training rows per variant (default 48 / 256)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch intra-op threads")
    ap.add_argument("--compile", action="store_true", help="also measure torch.compile (slow to compile)")
    ap.add_argument("--variants", default=None, help="comma-separated subset of: " + ", ".join(VARIANTS))
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    n = args.rows or (48 if args.quick else 256)
    if args.worker:
        worker(args.worker, n, args.threads)
        return 0
    names = args.variants.split(",") if args.variants else [v for v in VARIANTS if v != "compile" or args.compile]
    peak = bf16_peak(args.threads)
    results = {}
    for name in names:
        results[name] = r = spawn(name, n, args.threads)
        r["examples_per_s"] = n / r["seconds"]
        r["tokens_per_s"] = r["examples_per_s"] * r["tokens_per_row"]
        r["mfu"] = r["examples_per_s"] * r["flops_per_row"] / (peak * 1e9)
        print(f"  {name}: {r['examples_per_s']:.2f} examples/s", file=sys.stderr, flush=True)
    base = results.get("baseline", {}).get("examples_per_s")
    print(f"\n{'variant':<58}{'ex/s':>7}{'tok/s':>8}{'vs base':>9}{'MFU':>7}{'RSS MB':>8}{'loss':>13}")
    for name, r in results.items():
        vs = f"{r['examples_per_s'] / base:.2f}x" if base else "-"
        loss = f"{r['first_loss']:.2f}->{r['last_loss']:.2f}"
        print(f"{VARIANTS[name][0]:<58}{r['examples_per_s']:>7.2f}{r['tokens_per_s']:>8.0f}{vs:>9}"
              f"{100 * r['mfu']:>6.1f}%{r['peak_rss_mb']:>8.0f}{loss:>13}")
    ratio = results[FINAL]["examples_per_s"] / base if base and FINAL in results else None
    default = results["defaults"]["examples_per_s"] / base if base and "defaults" in results else None
    print(f"\n{n} {'ARC' if DATA.is_dir() else 'synthetic'} rows, batch 8, bf16 peak {peak:.0f} GFLOP/s on "
          f"{args.threads} threads; ratio (ours, all steps / baseline) = "
          f"{ratio if ratio is None else f'{ratio:.2f}x'} (goal 3x); product defaults "
          f"(prefix in encoder) = {default if default is None else f'{default:.2f}x'}")
    write_results(args.json, {
        "ratio": ratio, "ratio_default_config": default, "rows": n, "threads": args.threads,
        "bf16_peak_gflops": peak, "variants": {k: {"label": VARIANTS[k][0], **v} for k, v in results.items()},
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
