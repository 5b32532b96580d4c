"""Where the quickstart's TinyLLM run spends its time: per phase, per op family, padding share, GFLOP/s per phase.

Runs ``method: tinyllm`` of the quickstart recipe at the product defaults (the embedded OBQA data; ``auto``
precision) through ``tinydistill.run.run`` with timers around its phases (setup, tokenising, the rationale
stage, the reload between stages, the answer stage with its valid evaluation, the final reporting). Then, on a
fresh student, ``torch.profiler`` over ``--profile-steps`` steps of each stage groups CPU time by op family.
Padding share and FLOPs come from the batches the trainer builds (same rows, same batching).

    python bench/profile_quickstart.py [--threads N] [--profile-steps N] [--json PATH] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from bench_io import write_results

#: aten op name → family (self CPU time); anything else is "other".
FAMILIES = {
    "gemm (Linear)": ("aten::addmm", "aten::mm"),
    "attention bmm": ("aten::bmm", "aten::baddbmm"),
    "softmax": ("aten::_softmax", "aten::_softmax_backward_data"),
    "cross-entropy": ("aten::_log_softmax", "aten::_log_softmax_backward_data", "aten::nll_loss_forward",
                      "aten::nll_loss_backward"),
    "layer norm": ("aten::native_layer_norm", "aten::native_layer_norm_backward"),
    "gelu": ("aten::gelu", "aten::gelu_backward"),
    "dropout masks": ("aten::random_", "aten::bitwise_and", "aten::__rshift__", "aten::bitwise_right_shift",
                      "aten::lt", "aten::bernoulli_", "aten::native_dropout", "aten::native_dropout_backward"),
    "embedding": ("aten::embedding_dense_backward", "aten::index_select", "aten::embedding_backward",
                  "aten::index_add_", "aten::index"),
    "optimizer": ("aten::_fused_adamw_", "aten::_foreach_add_", "aten::_foreach_mul_", "aten::_foreach_lerp_",
                  "aten::_foreach_addcmul_", "aten::_foreach_sqrt", "aten::_foreach_div_",
                  "aten::_foreach_addcdiv_", "aten::_foreach_norm", "aten::_foreach_mul", "aten::linalg_vector_norm"),
    "elementwise": ("aten::mul", "aten::add", "aten::add_", "aten::div", "aten::mul_", "aten::sub", "aten::rsub",
                    "aten::masked_fill", "aten::masked_fill_", "aten::where", "aten::tanh", "aten::sum",
                    "aten::fill_", "aten::zero_", "aten::threshold_backward", "aten::div_"),
    "copies": ("aten::copy_", "aten::clone", "aten::cat", "aten::contiguous", "aten::_to_copy", "aten::empty",
               "aten::empty_strided", "aten::resize_", "aten::set_"),
}


def family(name: str) -> str:
    for fam, names in FAMILIES.items():
        if name in names:
            return fam
    return "other"


class Phases:
    """Wall seconds per named phase (nested calls are counted in the outer phase only)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.depth = 0

    def wrap(self, name, fn):
        def timed(*args, **kwargs):
            self.depth += 1
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.depth -= 1
                if self.depth == 0:
                    self.seconds[name(args, kwargs) if callable(name) else name] += time.perf_counter() - t0
        return timed


def linear_weights(module: torch.nn.Module) -> int:
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Linear))


def batch_work(student, rows: list[dict], cfg_train, seed: int) -> dict:
    """Real and padded tokens, and model FLOPs (6 · Linear weights · tokens, attention left out), of one epoch of
    the trainer's batches of ``rows``: ``flops`` as the whole forward needs them on the real tokens (the nominal
    figure), ``executed_flops`` as the selective readout runs them (the last layer's queries, attention output and
    feed-forward only where a head reads: each pair's first token, the masked rationale tokens)."""
    from tinydistill.data import epoch_batches
    from tinydistill.students import MultiTaskCollator
    from tinydistill.training.trainer import epoch_order

    model = student.model
    n_enc = linear_weights(model.encoder)
    last = model.encoder.encoder.layer[-1]
    keys_values = linear_weights(last.attention.self.key) + linear_weights(last.attention.self.value)
    read_only = linear_weights(last) - keys_values  # the last layer's weights applied at read positions only
    pooler = linear_weights(model.encoder.pooler) if model.encoder.pooler is not None else 0  # the choice head's
    hidden, vocab = model.config.hidden_size, model.config.vocab_size
    collate = MultiTaskCollator(student.kind, student.pad_token_id)
    real = padded = flops = padded_flops = executed = 0
    for batch_rows in epoch_batches(epoch_order(len(rows), seed, 0), rows, cfg_train.batch_size,
                                    group_by_length=cfg_train.group_by_length, seed=seed, epoch=0):
        for tensors in collate([rows[i] for i in batch_rows]).values():
            mask = tensors["attention_mask"]
            r, p = int(mask.sum()), mask.numel()
            real, padded = real + r, padded + p
            head = 0
            if "mlm_labels" in tensors:  # the masked-rationale head: dense H×H + tied output V×H per masked token
                read = int((tensors["mlm_labels"] != -100).sum())
                head = 6 * (hidden * hidden + vocab * hidden) * read
                pooled = 0
            else:  # the choice head reads each pair's first token
                read = pooled = mask.numel() // mask.shape[-1]
            flops += 6 * n_enc * r + head
            padded_flops += 6 * n_enc * p + head
            executed += 6 * ((n_enc - read_only - pooler) * r + read_only * read + pooler * pooled) + head
    return {"real_tokens": real, "padded_tokens": padded, "padding_share": 1 - real / max(padded, 1),
            "flops": flops, "padded_flops": padded_flops, "executed_flops": executed}


def op_profile(stage: str, student, rows, objective, cfg_train, steps: int, seed: int) -> dict:
    """Self CPU seconds per op family over ``steps`` training steps (after 2 unprofiled ones)."""
    from torch.profiler import ProfilerActivity, profile

    import tinydistill.training.trainer as trainer

    trainer.save_checkpoint = trainer.mark_completed = lambda *a, **k: None
    with tempfile.TemporaryDirectory() as tmp:
        trainer.train(student, rows, objective, cfg_train.model_copy(update={"max_steps": 2}), seed=seed + 1,
                      run_dir=Path(tmp), progress=False)
    with tempfile.TemporaryDirectory() as tmp, profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        trainer.train(student, rows, objective, cfg_train.model_copy(update={"max_steps": steps}), seed=seed,
                      run_dir=Path(tmp), progress=False)
        wall = time.perf_counter() - t0
    fam: dict[str, float] = defaultdict(float)
    ops = []
    for ev in prof.key_averages():
        fam[family(ev.key)] += ev.self_cpu_time_total / 1e6
        ops.append((ev.self_cpu_time_total / 1e6, ev.key, ev.count))
    total = sum(fam.values())
    top = [{"op": k, "seconds": s, "calls": c} for s, k, c in sorted(ops, reverse=True)[:15]]
    return {"stage": stage, "steps": steps, "wall_seconds": wall, "self_cpu_seconds": total,
            "families": {k: v for k, v in sorted(fam.items(), key=lambda kv: -kv[1])}, "top_ops": top}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--profile-steps", type=int, default=12)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--set", action="append", default=[], help="config override key=value (as --set in the CLI)")
    ap.add_argument("--skip-run", action="store_true", help="only the op profile and the padding/FLOP counts")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    import tinydistill.run as run_mod
    from tinydistill.config import config_from_dict, effective_precision
    from tinydistill.quickstart import embedded_data_dir, quickstart_config

    out = tempfile.mkdtemp(prefix="qs-profile-")
    cfg = config_from_dict(quickstart_config(embedded_data_dir(), out, "qs", "tinyllm", args.set))
    phases, captured = Phases(), {}
    train_calls = []

    def train_name(a, k):
        train_calls.append(1)
        return "rationale stage (train)" if len(train_calls) == 1 else "answer stage (train + valid eval)"

    real_train, real_tokenise = run_mod.train, run_mod._tokenise

    def capture_train(student, rows, objective, tcfg, **kw):
        captured["rationale" if not captured else "answer"] = (student, rows, objective, tcfg)
        return real_train(student, rows, objective, tcfg, **kw)

    run_mod.train = phases.wrap(train_name, capture_train)
    run_mod._tokenise = phases.wrap("tokenise", real_tokenise)
    run_mod.load_student = phases.wrap("load student", run_mod.load_student)
    run_mod._student_after_rationale_stage = phases.wrap("save + reload between stages",
                                                         run_mod._student_after_rationale_stage)
    run_mod.evaluate_on = phases.wrap("valid evaluation", run_mod.evaluate_on)
    run_mod.write_run_extras = phases.wrap("report, analysis, model card", run_mod.write_run_extras)
    result: dict = {"threads": args.threads, "precision": effective_precision(cfg.train.mixed_precision),
                    "overrides": args.set}
    if not args.skip_run:
        t0 = time.perf_counter()
        outcome = run_mod.run(cfg, progress=False, log=lambda *_: None)
        total = time.perf_counter() - t0
        phases.seconds["other (data, teachers, plan)"] = total - sum(phases.seconds.values())
        result.update(total_seconds=total, phases=dict(phases.seconds),
                      valid_accuracy=outcome.valid.metrics.get("rank_accuracy"),
                      train_seconds=outcome.train_seconds, eval_seconds=outcome.eval_seconds)
    else:  # tokenise the same rows, without training
        student = run_mod.load_student(cfg.student, with_rationale_head=True)
        train_rows, _ = run_mod.load_train_valid(cfg)
        plan = run_mod.build_method(cfg, train_rows, run_mod.build_teachers(cfg, train_rows), student)
        stage = plan.rationale_stage
        srows, _ = run_mod._tokenise(cfg, student, train_rows, stage.tasks, lambda *_: None)
        arows, _ = run_mod._tokenise(cfg, student, train_rows, plan.tasks, lambda *_: None)
        scfg = cfg.train.model_copy(update={"epochs": stage.epochs, "lr": cfg.train.rationale_stage_lr})
        captured = {"rationale": (student, srows, stage.objective, scfg), "answer": (student, arows, plan.objective,
                                                                                     cfg.train)}
    work = {name: batch_work(s, rows, tcfg, cfg.seed) for name, (s, rows, _, tcfg) in captured.items()}
    result["work"] = work
    seconds = result.get("phases", {})
    for name, key in (("rationale", "rationale stage (train)"), ("answer", "answer stage (train + valid eval)")):
        if key in seconds:
            w = work[name]
            w["gflops_per_s"] = w["flops"] / seconds[key] / 1e9
            w["executed_gflops_per_s"] = w["executed_flops"] / seconds[key] / 1e9
    profiles = []
    from tinydistill.students import load_student

    for name, (_, rows, objective, tcfg) in captured.items():
        fresh = load_student(cfg.student, with_rationale_head=name == "rationale")
        profiles.append(op_profile(name, fresh, rows, objective, tcfg, args.profile_steps, cfg.seed))
    result["op_profiles"] = profiles
    print_report(result)
    write_results(args.json, result)
    return 0


def print_report(r: dict) -> None:
    if "phases" in r:
        print(f"\nquickstart TinyLLM run, {r['precision']}, {r['threads']} thread(s): {r['total_seconds']:.1f} s, "
              f"valid rank accuracy {100 * r['valid_accuracy']:.1f}")
        for name, s in sorted(r["phases"].items(), key=lambda kv: -kv[1]):
            print(f"  {name:<40}{s:>8.1f} s{100 * s / r['total_seconds']:>6.1f}%")
    for name, w in r["work"].items():
        rate = (f", {w['gflops_per_s']:.1f} GFLOP/s nominal, {w['executed_gflops_per_s']:.1f} executed"
                if "gflops_per_s" in w else "")
        print(f"{name} stage: {w['real_tokens']} real of {w['padded_tokens']} tokens "
              f"(padding {100 * w['padding_share']:.1f}%), {w['flops'] / 1e12:.2f} TFLOP needed by the whole "
              f"forward, {w['executed_flops'] / 1e12:.2f} executed{rate}")
    for p in r["op_profiles"]:
        print(f"\nop families, {p['stage']} stage, {p['steps']} steps ({p['wall_seconds']:.1f} s wall, "
              f"{p['self_cpu_seconds']:.1f} s self CPU):")
        for fam, s in p["families"].items():
            print(f"  {fam:<20}{s:>8.2f} s{100 * s / p['self_cpu_seconds']:>6.1f}%")
        print("  top ops: " + ", ".join(f"{o['op']} {o['seconds']:.2f}s" for o in p["top_ops"][:8]))


if __name__ == "__main__":
    sys.exit(main())
