"""TinyLLM training throughput: our trainer against the TinyLLM repository's ``Seq2SeqTrainer`` recipe.

Same student (the offline bert2bert warm-started from all-MiniLM-L6-v2 on both sides), same rows (shipped ARC
train rows with FLAN-T5 and LLaMA-2 rationales; synthetic rows if that folder is absent), same tokens, same
objective ``L = L_answer + 0.5·L_flan + 0.5·L_llama``, batch size, lr schedule and number of examples. The
baseline is the research code's way: an HF ``Seq2SeqTrainer`` (bf16 autocast) whose ``compute_loss`` runs three
separate forward passes per batch (answer, rationale of teacher 1, rationale of teacher 2; task prefix in the
encoder input), with every input padded to ``max_input_length``. "defaults" is our trainer with the product's
own config defaults (precision, batching, attention, prefix side: none set here); the other rows set each knob,
one measured step at a time (bf16), then the same in fp32.

Every variant runs in its own process (so peak RSS is its own), after a 2-step warm-up; examples/s counts a
whole ``train`` call (one epoch over the rows, setup included, checkpoint writing left out). tokens/s counts
real tokens (source + target of every task, no padding). GFLOP/s is the model FLOPs the work needs (6 · matmul
parameters · real tokens; one encoder pass per row with the shared encoder) per second; "util" divides it by
the best matmul rate (fp32 or bf16) the same process reaches right before its timed run at the run's own Linear
shapes, and is printed at most 100%. ``--json`` writes the table with a top-level ``ratio`` = product defaults
examples/s ÷ baseline examples/s and ``ratio_tuned`` = the faster tuned row (bf16 or fp32) ÷ baseline.

    python bench/train_throughput.py [--quick] [--json PATH] [--rows N] [--threads N] [--clock wall|cpu] [--compile]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import resource
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from bench_io import report, run_worker, write_results

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyllm" / "arc"
TEACHERS = ("flan_t5", "llama2")

#: name → (label, config overrides). "baseline" is the Seq2SeqTrainer recipe (always bf16, as the research code);
#: the others are our trainer. "defaults" sets none of the knobs below: the product's own config defaults decide.
VARIANTS: dict[str, tuple[str, dict]] = {
    "baseline": ("TinyLLM repo: Seq2SeqTrainer, 3 passes, max-length padding", {}),
    "defaults": ("product defaults (nothing below set)", {}),
    "dynamic": ("ours, bf16: dynamic padding", {"train.group_by_length": False, "student.prefix_side": "encoder",
                                                 "student.attn_implementation": "sdpa",
                                                 "train.mixed_precision": "bf16", "train.reuse_host_memory": False}),
    "grouped": ("+ length-grouped batches", {"train.group_by_length": True, "student.prefix_side": "encoder",
                                             "student.attn_implementation": "sdpa", "train.mixed_precision": "bf16",
                                             "train.reuse_host_memory": False}),
    "shared": ("+ shared encoder (prefix in decoder)",
               {"train.group_by_length": True, "student.prefix_side": "decoder",
                "student.attn_implementation": "sdpa", "train.mixed_precision": "bf16",
                "train.reuse_host_memory": False}),
    "eager": ("+ eager attention instead of SDPA", {"train.group_by_length": True, "student.prefix_side": "decoder",
                                                   "student.attn_implementation": "eager",
                                                   "train.mixed_precision": "bf16",
                                                   "train.reuse_host_memory": False}),
    "reuse": ("+ freed host memory kept for reuse", {"train.group_by_length": True, "student.prefix_side": "decoder",
                                                    "student.attn_implementation": "eager",
                                                    "train.mixed_precision": "bf16",
                                                    "train.reuse_host_memory": True}),
    "fp32": ("  same, fp32 (no autocast): tuned", {"train.group_by_length": True, "student.prefix_side": "decoder",
                                                  "student.attn_implementation": "eager",
                                                  "train.mixed_precision": "no", "train.reuse_host_memory": True}),
    "defaults_bf16": ("  product defaults, but bf16 autocast", {"train.mixed_precision": "bf16"}),
    "defaults_fp32": ("  product defaults, but fp32", {"train.mixed_precision": "no"}),
    "compile": ("  reuse, + torch.compile", {"train.group_by_length": True, "student.prefix_side": "decoder",
                                            "student.attn_implementation": "eager", "train.mixed_precision": "bf16",
                                            "train.reuse_host_memory": True, "compile": True}),
}
HEADLINE = "defaults"  # the top-level ratio: the product's default config ÷ baseline
TUNED = ("reuse", "fp32")  # the best opt-in settings (bf16 / fp32): ``ratio_tuned`` is the faster of them


# ------------------------------------------------------------------------------------------------ setup
def bench_config(overrides: dict | None = None):
    """The bench's run config; ``overrides`` (dotted keys) set knobs the product would otherwise default."""
    from tinydistill.config.loader import config_from_dict

    train = {"path": str(DATA)} if DATA.is_dir() else {"path": "synthetic"}
    raw = {
        "name": "bench", "method": "tinyllm", "data": {"train": train, "valid": train},
        "student": {"model": "minilm", "architecture": "bert2bert", "max_input_length": 256,
                    "max_answer_length": 32, "max_rationale_length": 64},
        "teachers": [{"name": t, "kind": "imported", "alpha_rationale": 0.5} for t in TEACHERS],
        "train": {"epochs": 1, "batch_size": 8, "lr": 1e-4, "warmup_ratio": 0.06, "weight_decay": 0.01},
    }
    for key, value in (overrides or {}).items():
        section, field = key.split(".")
        raw[section][field] = value
    return config_from_dict(raw)


def examples(n: int) -> list:
    from tinydistill.data.loaders import load_examples
    from tinydistill.data.records import Example

    if DATA.is_dir():
        return load_examples(DATA, "train")[:n]
    return [Example(str(i), f"Question {i}: which of these is a metal that rusts in {'wet ' * (i % 9)}air?",
                    ("iron", "wood", "glass", "sand"), 0,
                    {"flan_t5": "Iron rusts. " * (1 + i % 7), "llama2": "Metals like iron rust. " * (2 + i % 5)})
            for i in range(n)]


def tokenised(cfg, n: int):
    """(student, tokenised rows, objective) exactly as ``tinydistill train`` builds them."""
    from tinydistill.methods.registry import build_method
    from tinydistill.run import build_teachers
    from tinydistill.students.collate import tokenize_tasks
    from tinydistill.students.registry import load_student

    rows = examples(n)
    torch.manual_seed(0)
    student = load_student(cfg.student, with_rationale_head=True)
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
def run_ours(n: int, settings: dict, clock: str = "wall") -> dict:
    import tinydistill.training.trainer as trainer

    overrides = {k: v for k, v in settings.items() if k != "compile"}
    cfg = bench_config(overrides)
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
        peak = matmul_peak(student.model, cfg.train.batch_size * mean_source_length(items), clock=clock)
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.train(student, items, objective, cfg.train, seed=0, run_dir=Path(tmp) / "r",
                      progress=False)
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
        losses = [json.loads(x)["loss"] for x in (Path(tmp) / "r" / "metrics.jsonl").read_text().splitlines()]
    from tinydistill.students.collate import resolve_prefix_side

    side = resolve_prefix_side(student, cfg.student.prefix_side)
    tokens, flops = work_per_row(items, student.model, shared=side == "decoder")
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "tokens_per_row": tokens, "flops_per_row": flops,
            "first_loss": losses[0], "last_loss": losses[-1],
            "precision": trainer.effective_precision(cfg.train.mixed_precision), "prefix_side": side,
            "attn_implementation": cfg.student.attn_implementation,
            "group_by_length": cfg.train.group_by_length, "reuse_host_memory": cfg.train.reuse_host_memory, **peak}


def run_baseline(n: int, clock: str = "wall") -> dict:
    """The research recipe: Seq2SeqTrainer + a data collator per task + compute_loss with one pass per task."""
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments

    cfg = bench_config({"student.prefix_side": "encoder", "student.attn_implementation": "sdpa"})  # the paper's
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
        peak = matmul_peak(student.model, cfg.train.batch_size * max_len, clock=clock)  # sources padded to max
        t0, c0 = time.perf_counter(), time.process_time()
        t.train()
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    losses = [r["loss"] for r in t.state.log_history if "loss" in r]
    tokens, flops = work_per_row(items, student.model, shared=False)
    n_enc, _ = matmul_params(student.model)
    padded_flops = flops + 6 * n_enc * sum(max_len * len(r) - sum(len(it.source_ids) for it in r.values())
                                           for r in items) / len(items)
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "tokens_per_row": tokens, "flops_per_row": flops,
            "padded_flops_per_row": padded_flops, "first_loss": losses[0], "last_loss": losses[-1],
            "precision": "bf16", "prefix_side": "encoder", **peak}


def worker(name: str, n: int, threads: int, cpu: int | None = None, clock: str = "wall") -> None:
    if cpu is not None:  # --jobs: this variant's own core
        os.sched_setaffinity(0, {cpu})
    torch.set_num_threads(threads)
    settings = VARIANTS[name][1]
    result = run_baseline(n, clock) if name == "baseline" else run_ours(n, settings, clock)
    result["rows"] = n
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report(result)


# -------------------------------------------------------------------------------------------------- main
def mean_source_length(items: list[dict]) -> int:
    """Mean source length of a task item: a dynamically padded batch's typical width."""
    lengths = [len(it.source_ids) for row in items for it in row.values()]
    return max(1, round(sum(lengths) / len(lengths)))


def matmul_peak(model: torch.nn.Module, tokens: int, seconds: float = 1.0, clock: str = "wall") -> dict:
    """The matmul rate this process gets right now at the run's own shapes, fp32 and bf16 (GFLOP/s).

    One round is a Linear layer's forward and backward GEMMs (``X·W``, ``dY·Wᵀ``, ``Xᵀ·dY``) for the model's
    hidden×hidden and hidden×ffn weights at ``tokens`` rows (batch × sequence); the best of the rounds in
    ``seconds`` per dtype, each round timed by ``clock`` as the run is. ``peak_gflops`` is the larger of the two:
    the denominator of ``mfu``."""
    now = time.process_time if clock == "cpu" else time.perf_counter
    enc = model.get_encoder().config
    hidden, ffn = enc.hidden_size, getattr(enc, "intermediate_size", 4 * enc.hidden_size)
    out = {"peak_tokens": tokens, "peak_shapes": [[tokens, hidden, hidden], [tokens, hidden, ffn]]}
    for dtype, key in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        gemms = []
        for width in (hidden, ffn):
            x, w, dy = (torch.randn(tokens, hidden, dtype=dtype), torch.randn(hidden, width, dtype=dtype),
                        torch.randn(tokens, width, dtype=dtype))
            gemms += [(x, w), (dy, w.t()), (x.t(), dy)]
        flops = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in gemms)
        for a, b in gemms:  # warm-up
            a @ b
        best, end = 0.0, now() + seconds
        while now() < end:
            t0 = now()
            for a, b in gemms:
                a @ b
            best = max(best, flops / max(now() - t0, 1e-9) / 1e9)
        out[f"peak_{key}_gflops"] = best
    out["peak_gflops"] = max(out["peak_fp32_gflops"], out["peak_bf16_gflops"])
    return out


def spawn(name: str, n: int, threads: int, cpu: int | None = None, clock: str = "wall") -> dict:
    pin = [] if cpu is None else ["--cpu", str(cpu)]
    return run_worker(__file__, ["--worker", name, "--rows", str(n), "--threads", str(threads), "--clock", clock,
                                 *pin],
                      f"variant {name}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="48 rows per variant (a few minutes on 2 cores)")
    ap.add_argument("--json", type=Path, default=None, help="write results here")
    ap.add_argument("--rows", type=int, default=None, help="training rows per variant (default 48 / 256)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch intra-op threads")
    ap.add_argument("--compile", action="store_true", help="also measure torch.compile (slow to compile)")
    ap.add_argument("--variants", default=None, help="comma-separated subset of: " + ", ".join(VARIANTS))
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="time a run by the wall clock, or by its process CPU time (with --threads 1 on a machine "
                         "shared with other work: what an idle core would take)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="variants measured at once, each pinned to its own core (with --threads 1 --clock cpu)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--cpu", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    n = args.rows or (48 if args.quick else 256)
    if args.worker:
        worker(args.worker, n, args.threads, args.cpu, args.clock)
        return 0
    names = args.variants.split(",") if args.variants else [v for v in VARIANTS if v != "compile" or args.compile]
    results: dict[str, dict] = {}
    cpus = queue.Queue()
    for cpu in sorted(os.sched_getaffinity(0))[: args.jobs] if args.jobs > 1 else [None]:
        cpus.put(cpu)

    def measure(name: str) -> None:
        cpu = cpus.get()
        try:
            r = spawn(name, n, args.threads, cpu, args.clock)
        finally:
            cpus.put(cpu)
        r["examples_per_s"] = n / r["cpu_seconds" if args.clock == "cpu" else "seconds"]
        r["tokens_per_s"] = r["examples_per_s"] * r["tokens_per_row"]
        r["achieved_gflops"] = r["examples_per_s"] * r["flops_per_row"] / 1e9
        r["mfu_raw"] = r["achieved_gflops"] / r["peak_gflops"]
        r["mfu"] = min(r["mfu_raw"], 1.0)  # never above 100%: a peak measured low (load) would read as >100%
        results[name] = r
        print(f"  {name}: {r['examples_per_s']:.2f} examples/s", file=sys.stderr, flush=True)
        summarise({k: results[k] for k in names if k in results}, n, args, final=False)  # partial results kept

    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        list(pool.map(measure, names))
    summarise({k: results[k] for k in names if k in results}, n, args, final=True)
    return 0


def summarise(results: dict[str, dict], n: int, args: argparse.Namespace, final: bool) -> None:
    """Print the table (``final``) and write the JSON (every time: a long run keeps what it measured)."""
    base = results.get("baseline", {}).get("examples_per_s")
    out = print if final else (lambda *a, **k: None)
    out(f"\n{'variant':<58}{'prec':>5}{'ex/s':>7}{'tok/s':>7}{'vs base':>8}{'GFLOP/s':>8}{'peak':>6}{'util':>7}"
          f"{'RSS MB':>7}{'loss':>12}")
    for name, r in results.items():
        vs = f"{r['examples_per_s'] / base:.2f}x" if base else "-"
        loss = f"{r['first_loss']:.2f}->{r['last_loss']:.2f}"
        util = f"{100 * r['mfu']:.1f}%" + ("*" if r["mfu_raw"] > 1 else "")
        out(f"{VARIANTS[name][0]:<58}{r['precision']:>5}{r['examples_per_s']:>7.2f}{r['tokens_per_s']:>7.0f}"
              f"{vs:>8}{r['achieved_gflops']:>8.1f}{r['peak_gflops']:>6.0f}{util:>7}{r['peak_rss_mb']:>7.0f}"
              f"{loss:>12}")

    def vs_base(name: str) -> float | None:
        return results[name]["examples_per_s"] / base if base and name in results else None

    ratio = vs_base(HEADLINE)
    tuned = max((t for t in TUNED if t in results), key=lambda t: results[t]["examples_per_s"], default=None)
    ratio_tuned = vs_base(tuned) if tuned else None

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}x"

    out(f"\n{n} {'ARC' if DATA.is_dir() else 'synthetic'} rows, batch 8, {args.threads} threads, "
          f"{args.clock} clock.\n"
          f"ratio (product defaults / baseline) = {fmt(ratio)} (goal 3x); tuned ({tuned}) = {fmt(ratio_tuned)}.\n"
          "GFLOP/s: model FLOPs actually needed (6 x matmul weights x real tokens, no padding, the encoder "
          "counted once per row when shared) per second.\npeak: the best matmul rate (fp32 or bf16) this same "
          "process reached right before its timed run, at the run's own Linear shapes (hidden x hidden and "
          "hidden x ffn, forward + backward GEMMs, batch x mean source length rows).\nutil = GFLOP/s / peak, "
          "printed at most 100% (* = clamped: the peak was measured low); attention, softmax, norms, the "
          "optimizer and data handling are not in the peak, so well under 100% is expected on a CPU.")
    write_results(args.json, {
        "ratio": ratio, "ratio_tuned": ratio_tuned, "tuned_variant": tuned, "headline_variant": HEADLINE,
        "rows": n, "threads": args.threads, "clock": args.clock,
        "variants": {k: {"label": VARIANTS[k][0], **v} for k, v in results.items()},
    })


if __name__ == "__main__":
    sys.exit(main())
