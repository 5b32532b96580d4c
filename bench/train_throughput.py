"""TinyLLM training throughput: our trainer against the TinyLLM repository's ``Seq2SeqTrainer`` recipe, and the
quickstart's multiple-choice TinyLLM recipe on its own row.

Fair to the research code as it really runs (YikunHan42/TinyLLM, commit 9f5bebe):

- Same student (the offline bert2bert warm-started from all-MiniLM-L6-v2 on both sides), same rows (shipped ARC
  train rows with FLAN-T5 and LLaMA-2 rationales; synthetic rows if that folder is absent), same tokens (inputs
  cut at 100 tokens on both sides), same objective ``L = L_answer + 0.5·L_flan + 0.5·L_llama``, batch size, lr
  schedule and number of examples.
- The baseline is an HF ``Seq2SeqTrainer`` whose ``compute_loss`` runs three separate forward passes per batch
  (answer, rationale of teacher 1, rationale of teacher 2; task prefix in the encoder input), every input padded
  to ``max_input_length`` = 100 as the repository's tokeniser does (see :data:`REPO_MAX_INPUT_LENGTH`).
- It runs at both precisions: fp32 (the repository's default: ``--bf16`` is an opt-in flag) and bf16 autocast;
  each is compared with our product defaults at the same precision. bf16 rows are skipped on a CPU without
  native bf16 (there bf16 matmuls are emulated, ~100x slower than fp32: not a setting anyone trains with).
- Both sides are timed the same way: the whole ``train`` call including its setup (the ``Seq2SeqTrainer`` is
  constructed inside the timed region; our ``train`` builds its accelerator and optimizer inside it), after a
  2-step warm-up, and neither writes a checkpoint (``save_strategy="no"`` there; ``save_checkpoint`` and
  ``mark_completed`` stubbed here).
- Every variant runs ``--repeats`` times, each in its own process (peak RSS is its own); the table shows the
  mean examples/s and the spread (max − min) / mean, and the ratios use the means.

"quickstart" is the recipe ``tinydistill quickstart`` trains as TinyLLM: the MiniLM multiple-choice student with
its masked-rationale head, OBQA rows (the embedded data), the rationale stage (both teachers' rationales, one
epoch) then the answer stage (one epoch), at the product defaults; examples/s counts rows through both stages.
"quickstart_whole" is the same with the encoder run whole, as transformers runs it (``students/bert_readout.py``
off): the quickstart row's "vs base" is the selective readout's gain in the same run.

tokens/s counts real tokens (no padding). GFLOP/s is the model FLOPs the work needs (6 · Linear weights · real
tokens; the masked-rationale head's H×H + V×H on each masked token) per second. "util" divides it by the peak: the
best of several matmul probes (``--probes``, before and after the timed run, in the same process) at the run's
own Linear shapes, in fp32 and (on a bf16-native CPU) bf16, the larger of the two; the probes' spread is printed.
``--json`` writes the table with ``ratio`` (product defaults ÷ baseline at the precision ``auto`` picks here),
``ratio_fp32`` and ``ratio_bf16``.

    python bench/train_throughput.py [--quick] [--json PATH] [--rows N] [--repeats N] [--threads N] [--clock wall|cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import resource
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from bench_io import report, run_worker, write_results

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "tinyllm" / "arc"
TEACHERS = ("flan_t5", "llama2")
#: The TinyLLM repository pads every encoder input to ``args.max_input_length`` — tiny.py lines 101-103
#: (``max_length=args.max_input_length, padding="max_length", truncation=True``), default 100 (tiny.py line 163).
#: Its per-dataset values (ARC: 200, tiny.py line 47) go into a local ``max_input_length`` that is never read.
REPO_MAX_INPUT_LENGTH = 100

_BF16 = {"train.mixed_precision": "bf16"}
_FP32 = {"train.mixed_precision": "no"}
_TUNED = {"train.group_by_length": True, "student.prefix_side": "decoder", "student.attn_implementation": "eager",
          "train.reuse_host_memory": True}
#: name → (label, config overrides). "baseline_*" is the Seq2SeqTrainer recipe at that precision; "defaults_*"
#: the product's own config defaults but the precision; "quickstart" the multiple-choice recipe at its defaults.
#: The rest (not run unless named in ``--variants``) take one knob at a time from the old defaults, in bf16.
VARIANTS: dict[str, tuple[str, dict]] = {
    "baseline_fp32": ("TinyLLM repo: Seq2SeqTrainer, 3 passes, pad to 100, fp32", _FP32),
    "defaults_fp32": ("product defaults, fp32", _FP32),
    "baseline_bf16": ("TinyLLM repo: Seq2SeqTrainer, 3 passes, pad to 100, bf16", _BF16),
    "defaults_bf16": ("product defaults, bf16 autocast", _BF16),
    "quickstart": ("quickstart recipe: MC student, rationale + answer stages", {}),
    "quickstart_whole": ("  same, encoder run whole (no selective readout)", {"selective_readout": False}),
    "dynamic": ("ours, bf16: dynamic padding", {"train.group_by_length": False, "student.prefix_side": "encoder",
                                                 "student.attn_implementation": "sdpa",
                                                 "train.reuse_host_memory": False, **_BF16}),
    "grouped": ("+ length-grouped batches", {"train.group_by_length": True, "student.prefix_side": "encoder",
                                             "student.attn_implementation": "sdpa", "train.reuse_host_memory": False,
                                             **_BF16}),
    "shared": ("+ shared encoder (prefix in decoder)",
               {"train.group_by_length": True, "student.prefix_side": "decoder", "student.attn_implementation": "sdpa",
                "train.reuse_host_memory": False, **_BF16}),
    "eager": ("+ eager attention instead of SDPA", {**_TUNED, "train.reuse_host_memory": False, **_BF16}),
    "reuse": ("+ freed host memory kept for reuse", {**_TUNED, **_BF16}),
    "fp32": ("  same, fp32 (no autocast): tuned", {**_TUNED, **_FP32}),
    "compile": ("  reuse, + torch.compile", {**_TUNED, **_BF16, "compile": True}),
}
DEFAULT_VARIANTS = ("baseline_fp32", "defaults_fp32", "baseline_bf16", "defaults_bf16", "quickstart",
                    "quickstart_whole")
PAIRS = {"fp32": ("defaults_fp32", "baseline_fp32"), "bf16": ("defaults_bf16", "baseline_bf16")}
#: the quickstart recipe against itself with the encoder run whole (students/bert_readout.py switched off)
READOUT_PAIR = ("quickstart", "quickstart_whole")


def precision_of(name: str) -> str:
    """The mixed_precision a variant's config asks for (``auto`` unless set)."""
    return VARIANTS[name][1].get("train.mixed_precision", "auto")


# ------------------------------------------------------------------------------------------------ setup
def bench_config(overrides: dict | None = None):
    """The bench's run config; ``overrides`` (dotted keys) set knobs the product would otherwise default."""
    from tinydistill.config.loader import config_from_dict

    train = {"path": str(DATA)} if DATA.is_dir() else {"path": "synthetic"}
    raw = {
        "name": "bench", "method": "tinyllm", "data": {"train": train, "valid": train},
        "student": {"model": "minilm", "architecture": "bert2bert", "max_input_length": REPO_MAX_INPUT_LENGTH,
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


def linear_weights(module: torch.nn.Module, skip: set[int] = frozenset()) -> int:
    return sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Linear) and id(m) not in skip)


def matmul_params(model: torch.nn.Module) -> tuple[int, int]:
    """Weights of the Linear layers (the LM head included) on the encoder side and on the decoder side."""
    enc = model.get_encoder()
    return linear_weights(enc), linear_weights(model, {id(m) for m in enc.modules()})


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


def choice_work(rows: list[dict], model: torch.nn.Module) -> tuple[float, float]:
    """(real tokens, FLOPs) of a multiple-choice student's rows: every (question, choice) pair and every
    (source, rationale) sequence through the encoder, plus the masked-rationale head on each masked token."""
    n_enc = linear_weights(model.encoder)
    hidden, vocab = model.config.hidden_size, model.config.vocab_size
    tokens = flops = 0.0
    for row in rows:
        for item in row.values():
            tokens += item.n_tokens
            flops += 6 * n_enc * item.n_tokens
            masked = sum(label != -100 for label in getattr(item, "mlm_labels", ()))
            flops += 6 * (hidden * hidden + vocab * hidden) * masked
    return tokens, flops


def no_checkpoints() -> None:
    """Time training, not checkpoint writing (the baseline writes none either: ``save_strategy="no"``)."""
    import tinydistill.training.trainer as trainer

    trainer.save_checkpoint = lambda *a, **k: None
    trainer.mark_completed = lambda *a, **k: None


class Probes:
    """Matmul peak probes at the run's shapes, several times in the process (see :func:`matmul_peak`)."""

    def __init__(self, hidden: int, ffn: int, token_counts: list[int], clock: str, bf16: bool) -> None:
        self.args = hidden, ffn, token_counts, clock, bf16
        self.results: list[dict] = []

    def probe(self, seconds: float = 0.5) -> None:
        hidden, ffn, counts, clock, bf16 = self.args
        per_shape = [matmul_peak(hidden, ffn, t, seconds, clock, bf16) for t in counts]
        self.results.append({k: max(p[k] for p in per_shape) for k in per_shape[0]})

    def summary(self) -> dict:
        out = {"peak_tokens": self.args[2], "probes": self.results}
        for key in ("fp32", "bf16"):
            values = [p[key] for p in self.results if key in p]
            if values:
                out[f"peak_{key}_gflops"] = max(values)
                out[f"peak_{key}_spread"] = (max(values) - min(values)) / max(values)
        best = max(("fp32", "bf16"), key=lambda k: out.get(f"peak_{k}_gflops", 0.0))
        out["peak_gflops"], out["peak_spread"] = out[f"peak_{best}_gflops"], out[f"peak_{best}_spread"]
        return out


def probes_for(model_config, token_counts: list[int], clock: str) -> Probes:
    from tinydistill.config.precision import cpu_has_native_bf16

    ffn = getattr(model_config, "intermediate_size", 4 * model_config.hidden_size)
    return Probes(model_config.hidden_size, ffn, token_counts, clock, cpu_has_native_bf16())


def timed(fn, clock: str) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


# ----------------------------------------------------------------------------------------------- workers
def run_ours(n: int, settings: dict, clock: str = "wall", n_probes: int = 5) -> dict:
    import tinydistill.training.trainer as trainer

    overrides = {k: v for k, v in settings.items() if k != "compile"}
    cfg = bench_config(overrides)
    student, items, objective = tokenised(cfg, n)
    if settings.get("compile"):
        student.model.get_encoder().compile(dynamic=True)
        student.model.get_decoder().compile(dynamic=True)
    no_checkpoints()
    probes = probes_for(student.model.get_encoder().config, [cfg.train.batch_size * mean_source_length(items)], clock)
    with tempfile.TemporaryDirectory() as tmp:
        for sub in ("w", "r"):
            (Path(tmp) / sub).mkdir()
        warm = cfg.train.model_copy(update={"max_steps": 2})
        trainer.train(student, items, objective, warm, seed=1, run_dir=Path(tmp) / "w", progress=False)
        for _ in range(n_probes - n_probes // 2):
            probes.probe()
        seconds, cpu_seconds = timed(lambda: trainer.train(student, items, objective, cfg.train, seed=0,
                                                           run_dir=Path(tmp) / "r", progress=False), clock)
        for _ in range(n_probes // 2):
            probes.probe()
        losses = [json.loads(x)["loss"] for x in (Path(tmp) / "r" / "metrics.jsonl").read_text().splitlines()]
    from tinydistill.students.collate import resolve_prefix_side

    side = resolve_prefix_side(student, cfg.student.prefix_side)
    tokens, flops = work_per_row(items, student.model, shared=side == "decoder")
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "tokens_per_row": tokens, "flops_per_row": flops,
            "first_loss": losses[0], "last_loss": losses[-1],
            "precision": trainer.effective_precision(cfg.train.mixed_precision), "prefix_side": side,
            "attn_implementation": cfg.student.attn_implementation,
            "group_by_length": cfg.train.group_by_length, "reuse_host_memory": cfg.train.reuse_host_memory,
            **probes.summary()}


def run_baseline(n: int, precision: str, clock: str = "wall", n_probes: int = 5) -> dict:
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
            max_grad_norm=cfg.train.max_grad_norm, bf16=precision == "bf16", use_cpu=True, report_to="none",
            save_strategy="no", logging_steps=1, disable_tqdm=True, remove_unused_columns=False,
            dataloader_pin_memory=False, seed=seed)
        return TaskPrefixTrainer(model=student.model, args=args, train_dataset=features, data_collator=collate)

    probes = probes_for(student.model.get_encoder().config, [cfg.train.batch_size * max_len], clock)  # padded
    done: list[Seq2SeqTrainer] = []

    def timed_run() -> None:  # setup (the trainer's construction) inside the timed region, as for ours
        done.append(trainer(tmp, -1, 0))
        done[0].train()

    with tempfile.TemporaryDirectory() as tmp:
        trainer(tmp, 2, 1).train()  # warm-up
        for _ in range(n_probes - n_probes // 2):
            probes.probe()
        seconds, cpu_seconds = timed(timed_run, clock)
        for _ in range(n_probes // 2):
            probes.probe()
    losses = [r["loss"] for r in done[0].state.log_history if "loss" in r]
    tokens, flops = work_per_row(items, student.model, shared=False)
    n_enc, _ = matmul_params(student.model)
    padded_flops = flops + 6 * n_enc * sum(max_len * len(r) - sum(len(it.source_ids) for it in r.values())
                                           for r in items) / len(items)
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "tokens_per_row": tokens, "flops_per_row": flops,
            "padded_flops_per_row": padded_flops, "first_loss": losses[0], "last_loss": losses[-1],
            "precision": precision, "prefix_side": "encoder", "max_input_length": max_len, **probes.summary()}


def run_quickstart(n: int, clock: str = "wall", n_probes: int = 5, selective_readout: bool = True) -> dict:
    """The quickstart's TinyLLM recipe on ``n`` embedded OBQA rows: the rationale stage, then the answer stage
    (``selective_readout=False``: the encoder run whole, as transformers runs it, for the in-run ratio)."""
    import tinydistill.training.trainer as trainer
    from tinydistill.config import config_from_dict
    from tinydistill.quickstart import embedded_data_dir, quickstart_config
    from tinydistill.run import _tokenise, build_method, build_teachers, load_student, load_train_valid

    with tempfile.TemporaryDirectory() as tmp:
        cfg = config_from_dict(quickstart_config(embedded_data_dir(), tmp, "bench", "tinyllm", []))
        rows = load_train_valid(cfg)[0][:n]
        torch.manual_seed(0)
        student = load_student(cfg.student, with_rationale_head=True)
        student.model.selective_readout = selective_readout
        plan = build_method(cfg, rows, build_teachers(cfg, rows), student)
        stage = plan.rationale_stage
        quiet = lambda *_: None  # noqa: E731
        stage_rows, _ = _tokenise(cfg, student, rows, stage.tasks, quiet)
        answer_rows, _ = _tokenise(cfg, student, rows, plan.tasks, quiet)
        stage_cfg = cfg.train.model_copy(update={"epochs": stage.epochs, "lr": cfg.train.rationale_stage_lr})
        no_checkpoints()
        per_seq = [it.n_tokens for r in stage_rows for it in r.values()]
        pairs = [len(p) for r in answer_rows for it in r.values() for p in it.pair_ids]
        shapes = [cfg.train.batch_size * round(statistics.mean(per_seq)),
                  cfg.train.batch_size * round(statistics.mean(pairs)) * 4]
        probes = probes_for(student.model.config, shapes, clock)
        for sub in ("w1", "w2", "r1", "r2"):
            (Path(tmp) / sub).mkdir()
        warm = {"max_steps": 2}
        trainer.train(student, stage_rows, stage.objective, stage_cfg.model_copy(update=warm), seed=1,
                      run_dir=Path(tmp) / "w1", progress=False)
        trainer.train(student, answer_rows, plan.objective, cfg.train.model_copy(update=warm), seed=1,
                      run_dir=Path(tmp) / "w2", progress=False)
        for _ in range(n_probes - n_probes // 2):
            probes.probe()
        split: dict[str, tuple[float, float]] = {}

        def both() -> None:
            split["rationale"] = timed(lambda: trainer.train(student, stage_rows, stage.objective, stage_cfg,
                                                             seed=cfg.seed, run_dir=Path(tmp) / "r1",
                                                             progress=False), clock)
            split["answer"] = timed(lambda: trainer.train(student, answer_rows, plan.objective, cfg.train,
                                                          seed=cfg.seed, run_dir=Path(tmp) / "r2",
                                                          progress=False), clock)

        seconds, cpu_seconds = timed(both, clock)
        for _ in range(n_probes // 2):
            probes.probe()
        losses = {s: [json.loads(x)["loss"] for x in (Path(tmp) / d / "metrics.jsonl").read_text().splitlines()]
                  for s, d in (("rationale", "r1"), ("answer", "r2"))}
    work = {"rationale": choice_work(stage_rows, student.model), "answer": choice_work(answer_rows, student.model)}
    stages = {s: {"seconds": split[s][0], "cpu_seconds": split[s][1], "tokens": work[s][0], "flops": work[s][1],
                  "first_loss": losses[s][0], "last_loss": losses[s][-1]} for s in work}
    return {"seconds": seconds, "cpu_seconds": cpu_seconds,
            "tokens_per_row": sum(w[0] for w in work.values()) / n,
            "flops_per_row": sum(w[1] for w in work.values()) / n, "stages": stages,
            "first_loss": losses["rationale"][0], "last_loss": losses["answer"][-1],
            "precision": trainer.effective_precision(cfg.train.mixed_precision), **probes.summary()}


def worker(name: str, n: int, threads: int, cpu: int | None = None, clock: str = "wall", n_probes: int = 5) -> None:
    if cpu is not None:  # --jobs: this variant's own core
        os.sched_setaffinity(0, {cpu})
    torch.set_num_threads(threads)
    settings = VARIANTS[name][1]
    if name.startswith("baseline"):
        result = run_baseline(n, "bf16" if settings.get("train.mixed_precision") == "bf16" else "no", clock,
                              n_probes)
    elif name.startswith("quickstart"):
        result = run_quickstart(n, clock, n_probes, settings.get("selective_readout", True))
    else:
        result = run_ours(n, settings, clock, n_probes)
    result["rows"] = n
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report(result)


# -------------------------------------------------------------------------------------------------- main
def mean_source_length(items: list[dict]) -> int:
    """Mean source length of a task item: a dynamically padded batch's typical width."""
    lengths = [len(it.source_ids) for row in items for it in row.values()]
    return max(1, round(sum(lengths) / len(lengths)))


def matmul_peak(hidden: int, ffn: int, tokens: int, seconds: float = 0.5, clock: str = "wall",
                bf16: bool = True) -> dict:
    """The matmul rate this process gets right now at the run's own shapes, fp32 (and bf16), in GFLOP/s.

    One round is a Linear layer's forward and backward GEMMs (``X·W``, ``dY·Wᵀ``, ``Xᵀ·dY``) for the model's
    hidden×hidden and hidden×ffn weights at ``tokens`` rows (batch × sequence); the best of the rounds in
    ``seconds`` per dtype, each round timed by ``clock`` as the run is."""
    now = time.process_time if clock == "cpu" else time.perf_counter
    out = {}
    for dtype, key in ((torch.float32, "fp32"), (torch.bfloat16, "bf16"))[: 2 if bf16 else 1]:
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
        out[key] = best
    return out


def spawn(name: str, n: int, threads: int, cpu: int | None, clock: str, n_probes: int) -> dict:
    pin = [] if cpu is None else ["--cpu", str(cpu)]
    return run_worker(__file__, ["--worker", name, "--rows", str(n), "--threads", str(threads), "--clock", clock,
                                 "--probes", str(n_probes), *pin], f"variant {name}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="96 rows per variant (12 steps)")
    ap.add_argument("--json", type=Path, default=None, help="write results here")
    ap.add_argument("--rows", type=int, default=None, help="training rows per variant (default 96 / 256)")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each variant (the spread is printed)")
    ap.add_argument("--probes", type=int, default=5, help="matmul peak probes per run (best taken)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch intra-op threads")
    ap.add_argument("--compile", action="store_true", help="also measure torch.compile (slow to compile)")
    ap.add_argument("--variants", default=None, help="comma-separated subset of: " + ", ".join(VARIANTS))
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="time a run by the wall clock, or by its process CPU time (with --threads 1 on a machine "
                         "shared with other work: what an idle core would take)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="variants measured at once, each pinned to its own core (with --threads 1 --clock cpu)")
    ap.add_argument("--force-bf16", action="store_true", help="run the bf16 rows even without native bf16")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--cpu", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    n = args.rows or (96 if args.quick else 256)
    if args.worker:
        worker(args.worker, n, args.threads, args.cpu, args.clock, args.probes)
        return 0
    from tinydistill.config.precision import cpu_has_native_bf16, effective_precision

    names = args.variants.split(",") if args.variants else [*DEFAULT_VARIANTS, *(["compile"] if args.compile else [])]
    skipped = [] if cpu_has_native_bf16() or args.force_bf16 else [x for x in names if precision_of(x) == "bf16"]
    names = [x for x in names if x not in skipped]
    if skipped:
        print(f"skipped (this CPU has no native bf16; --force-bf16 runs them): {', '.join(skipped)}", file=sys.stderr)
    runs: dict[str, list[dict]] = {}
    cpus = queue.Queue()
    for cpu in sorted(os.sched_getaffinity(0))[: args.jobs] if args.jobs > 1 else [None]:
        cpus.put(cpu)
    auto = "bf16" if effective_precision("auto") == "bf16" else "fp32"
    meta = {"skipped": skipped, "auto_precision": auto}

    def measure(name: str) -> None:
        cpu = cpus.get()
        try:
            r = spawn(name, n, args.threads, cpu, args.clock, args.probes)
        finally:
            cpus.put(cpu)
        r["examples_per_s"] = n / r["cpu_seconds" if args.clock == "cpu" else "seconds"]
        runs.setdefault(name, []).append(r)
        print(f"  {name}: {r['examples_per_s']:.2f} examples/s", file=sys.stderr, flush=True)
        summarise(runs, names, n, args, meta, final=False)  # partial results kept

    order = [x for _ in range(args.repeats) for x in names]  # repeat i of every variant before repeat i + 1
    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        list(pool.map(measure, order))
    summarise(runs, names, n, args, meta, final=True)
    return 0


def combine(runs: list[dict]) -> dict:
    """One variant's repeats: the first run's details, mean rates, the spread (max − min) / mean."""
    rates = [r["examples_per_s"] for r in runs]
    mean = statistics.mean(rates)
    r = dict(runs[0])
    r.update(examples_per_s=mean, spread=(max(rates) - min(rates)) / mean, runs=[x["examples_per_s"] for x in runs],
             peak_gflops=max(x["peak_gflops"] for x in runs),
             peak_spread=max(max(x["peak_gflops"] for x in runs) / min(x["peak_gflops"] for x in runs) - 1,
                             max(x["peak_spread"] for x in runs)),
             peak_rss_mb=max(x["peak_rss_mb"] for x in runs))
    r["tokens_per_s"] = mean * r["tokens_per_row"]
    r["achieved_gflops"] = mean * r["flops_per_row"] / 1e9
    r["mfu_raw"] = r["achieved_gflops"] / r["peak_gflops"]
    r["mfu"] = min(r["mfu_raw"], 1.0)  # never above 100%: a peak measured low (load) would read as >100%
    if "stages" in r:  # per stage of the quickstart recipe: its own GFLOP/s and utilisation
        key = "cpu_seconds" if runs[0].get("clock") == "cpu" else "seconds"
        for s, st in r["stages"].items():
            secs = statistics.mean(x["stages"][s][key] for x in runs)
            st["gflops"] = st["flops"] / secs / 1e9
            st["mfu"] = st["gflops"] / r["peak_gflops"]
    return r


def summarise(runs: dict[str, list[dict]], names: list[str], n: int, args: argparse.Namespace, meta: dict,
              final: bool) -> None:
    """Print the table (``final``) and write the JSON (every time: a long run keeps what it measured)."""
    for rs in runs.values():
        for r in rs:
            r["clock"] = args.clock
    results = {k: combine(runs[k]) for k in names if k in runs}
    out = print if final else (lambda *a, **k: None)
    out(f"\n{'variant':<60}{'prec':>5}{'ex/s':>7}{'spread':>7}{'tok/s':>7}{'vs base':>8}{'GFLOP/s':>8}{'peak':>6}"
        f"{'(±)':>5}{'util':>7}{'RSS MB':>7}{'loss':>13}")

    def base_of(name: str) -> str | None:
        return next((b for d, b in (*PAIRS.values(), READOUT_PAIR) if d == name), None)

    for name, r in results.items():
        base = results.get(base_of(name) or "", {}).get("examples_per_s")
        vs = f"{r['examples_per_s'] / base:.2f}x" if base else "-"
        loss = f"{r['first_loss']:.2f}->{r['last_loss']:.2f}"
        util = f"{100 * r['mfu']:.1f}%" + ("*" if r["mfu_raw"] > 1 else "")
        out(f"{VARIANTS[name][0]:<60}{r['precision']:>5}{r['examples_per_s']:>7.2f}{100 * r['spread']:>6.1f}%"
            f"{r['tokens_per_s']:>7.0f}{vs:>8}{r['achieved_gflops']:>8.1f}{r['peak_gflops']:>6.0f}"
            f"{100 * r['peak_spread']:>4.0f}%{util:>7}{r['peak_rss_mb']:>7.0f} {loss:>12}")
        for s, st in r.get("stages", {}).items():
            out(f"    {s + ' stage':<56}{'':>5}{'':>7}{'':>7}{'':>7}{'':>8}{st['gflops']:>8.1f}{'':>6}{'':>5}"
                f"{100 * st['mfu']:>6.1f}%")

    ratios = {}
    for prec, (ours, base) in PAIRS.items():
        if ours in results and base in results:
            ratios[prec] = results[ours]["examples_per_s"] / results[base]["examples_per_s"]
    ratio = ratios.get(meta["auto_precision"])
    ours, whole = (results.get(k, {}).get("examples_per_s") for k in READOUT_PAIR)
    readout_ratio = ours / whole if ours and whole else None

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}x"

    out(f"\n{n} {'ARC' if DATA.is_dir() else 'synthetic'} rows (quickstart: {n} OBQA rows), batch 8, "
        f"{args.threads} threads, {args.clock} clock, {args.repeats} runs per variant; spread = (max - min) / mean.\n"
        f"ratio (product defaults / baseline, same precision): fp32 {fmt(ratios.get('fp32'))}, "
        f"bf16 {fmt(ratios.get('bf16'))}; at auto ({meta['auto_precision']}) = {fmt(ratio)} (goal 5x); "
        f"quickstart recipe, selective readout / whole encoder: {fmt(readout_ratio)}."
        + (f"\nskipped (no native bf16 on this CPU): {', '.join(meta['skipped'])}" if meta["skipped"] else "")
        + "\nGFLOP/s: model FLOPs actually needed (6 x Linear weights x real tokens, no padding; the encoder "
        "counted once per row when shared; the masked-rationale head's on each masked token) per second.\n"
        "peak: the best of several matmul probes this same process ran before and after its timed run, at the "
        "run's own Linear shapes (fp32, and bf16 on a bf16-native CPU); (±): the probes' spread.\n"
        "util = GFLOP/s / peak, printed at most 100% (* = clamped); attention, softmax, norms, the optimizer and "
        "data handling are not in the FLOPs, so well under 100% is expected on a CPU.")
    write_results(args.json, {
        "ratio": ratio, "ratio_fp32": ratios.get("fp32"), "ratio_bf16": ratios.get("bf16"),
        "ratio_selective_readout": readout_ratio,
        "auto_precision": meta["auto_precision"], "skipped": meta["skipped"], "rows": n, "threads": args.threads,
        "clock": args.clock, "repeats": args.repeats, "max_input_length": REPO_MAX_INPUT_LENGTH,
        "variants": {k: {"label": VARIANTS[k][0], **v} for k, v in results.items()},
        "runs": runs,
    })


if __name__ == "__main__":
    sys.exit(main())
