"""The training loop, top to bottom: multi-task batches, named weighted loss terms, accelerate, selection on valid.

``L = L_answer + Σ_m α_m · L_rationale(teacher m)`` (TinyLLM eq. 2); every term is logged by name.
Test data never enters this module.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
import torch.distributed as dist
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import DataLoaderConfiguration, gather_object, set_seed
from tqdm.auto import tqdm
from transformers import get_scheduler

from . import tracking
from .batching import epoch_batches
from .checkpoint import LoopState, load_latest, mark_completed, save_checkpoint, write_json_atomic
from .collate import MultiTaskCollator, TaskItem
from .config import TrainConfig
from .distributed import DataParallel, ShardedAdamW, process_state, scale_terms
from .errors import ConfigError
from .fsdp import (
    FullCopy,
    ObjectiveForward,
    fsdp_plugin,
    load_sharded,
    local_share,
    same_tasks_everywhere,
    save_sharded,
    select_on_full_copy,
    shard_model,
    sync_gradients_now,
)
from .host_memory import keep_freed_host_memory, release_freed_host_memory
from .losses import weighted_total
from .students import Student
from .zero import backward as zero_backward
from .zero import configure as configure_zero
from .zero import optimizer_state_share as zero_state_share
from .zero import zero_stage


class Objective(Protocol):
    """What a method optimises: named ``(weight, loss)`` terms per batch, and any weights of its own."""

    def terms(self, student: Student, batch: dict[str, dict[str, torch.Tensor]]) -> dict[
        str, tuple[float, torch.Tensor]]: ...

    def parameters(self) -> list[torch.nn.Parameter]: ...


#: Evaluates the current student on valid; returns metrics including ``TrainConfig.select_metric``.
ValidFn = Callable[[Student], dict]


@dataclass
class TrainResult:
    state: LoopState
    seconds: float
    examples_seen: int


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX): there bf16 matmuls run ~3x fp32's rate;
    without them bf16 is emulated and autocast trains slower than fp32 (bench/train_throughput.py)."""
    return any(getattr(torch.cpu, f"_is_{name}_supported", lambda: False)() for name in ("avx512_bf16", "amx_tile"))


def effective_precision(mixed_precision: str) -> str:
    """The precision actually used. ``auto``: bf16 on a CUDA GPU with bf16 support (fp16 only when asked), on a
    CPU bf16 where it multiplies bf16 natively (:func:`cpu_has_native_bf16`) and fp32 ("no") where it does not.
    fp16 falls back to bf16 without CUDA."""
    cuda = torch.cuda.is_available()
    if mixed_precision == "auto":
        native = torch.cuda.is_bf16_supported() if cuda else cpu_has_native_bf16()
        return "bf16" if native else "no"
    return "bf16" if mixed_precision == "fp16" and not cuda else mixed_precision


def autocast_dtype(mixed_precision: str) -> torch.dtype | None:
    """The autocast dtype for ``mixed_precision`` (None: full precision)."""
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(effective_precision(mixed_precision))


def make_accelerator(mixed_precision: str, log_with: list | None = None,
                     project_dir: Path | None = None) -> Accelerator:
    """bf16/fp16 autocast where the device supports it (see :func:`effective_precision`); experiment trackers
    ``log_with`` (see :mod:`tinydistill.tracking`) logging under ``project_dir``."""
    mixed_precision = effective_precision(mixed_precision)
    # one process may hold several runs (quickstart, stages, tests) with different precision or accumulation:
    # start each from a fresh accelerator state, keeping the process group (PartialState) as it is
    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()
    process_state()  # the process group, with a timeout long enough for main-only evaluation
    # split_batches: train.batch_size is the global batch, split across processes (one scheduler step per step)
    # the loop accumulates itself (it divides each micro-batch loss by grad_accum), so accelerate must not divide
    # again: gradient_accumulation_steps stays 1 here
    return Accelerator(mixed_precision=mixed_precision, gradient_accumulation_steps=1,
                       dataloader_config=DataLoaderConfiguration(split_batches=True), log_with=log_with or None,
                       project_dir=None if project_dir is None else str(project_dir))


def _param_groups(student: Student, cfg: TrainConfig) -> list[dict]:
    decay, no_decay, new_decay, new_no_decay = [], [], [], []
    for name, p in student.model.named_parameters():
        if not p.requires_grad:
            continue
        skip_decay = p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name
        is_new = name in student.new_param_names
        (new_no_decay if is_new and skip_decay else new_decay if is_new else no_decay if skip_decay
         else decay).append(p)
    new_lr = cfg.lr * cfg.new_params_lr_scale
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay, "lr": cfg.lr},
        {"params": no_decay, "weight_decay": 0.0, "lr": cfg.lr},
        {"params": new_decay, "weight_decay": cfg.weight_decay, "lr": new_lr},
        {"params": new_no_decay, "weight_decay": 0.0, "lr": new_lr},
    ]
    return [g for g in groups if g["params"]]


def make_optimizer(groups: list[dict], lr: float, shard_state: bool = False) -> torch.optim.Optimizer:
    """AdamW, fused (one kernel for all tensors) where every parameter is a float tensor on CPU or CUDA;
    with ``shard_state`` under several processes, its moments split across them (:class:`ShardedAdamW`)."""
    params = [p for g in groups for p in g["params"]]
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    if shard_state and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return ShardedAdamW(groups, lr=lr, fused=fused or None)
    return torch.optim.AdamW(groups, lr=lr, fused=fused or None)


def optimizer_state_share(optimizer: torch.optim.Optimizer) -> float:
    """The fraction of the parameters whose AdamW moments this process keeps (1.0 unless sharded)."""
    if not isinstance(optimizer, ShardedAdamW):
        return 1.0
    local = sum(p.numel() for g in optimizer.optim.param_groups for p in g["params"])
    return local / sum(p.numel() for g in optimizer.param_groups for p in g["params"])


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The row order of one epoch: a permutation that depends only on (seed, epoch), so resume can replay it."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def total_optimizer_steps(n_rows: int, cfg: TrainConfig) -> int:
    if cfg.max_steps:
        return cfg.max_steps
    micro_per_epoch = math.ceil(n_rows / cfg.batch_size)
    return max(1, math.ceil(cfg.epochs * micro_per_epoch / cfg.grad_accum_steps))


def train(
    student: Student, rows: Sequence[dict[str, TaskItem]], objective: Objective, cfg: TrainConfig,
    *, seed: int, run_dir: Path, valid_fn: ValidFn | None, on_best: Callable[[Student], None] | None = None,
    stop_after_steps: int | None = None, progress: bool = True,
    on_eval: Callable[[int, dict], None] | None = None,
) -> TrainResult:
    """Train ``student`` on tokenised multi-task ``rows``; resume from ``run_dir/checkpoints`` if present.

    ``objective.terms(student, batch)`` returns the named, weighted loss terms of one batch
    (see :mod:`tinydistill.methods`); ``objective.parameters()`` are trained alongside the student.
    ``valid_fn`` scores the student on valid for early stopping and best-checkpoint selection;
    ``on_best`` saves the best student; ``on_eval(step, record)`` sees each valid evaluation's logged record
    (it may raise, e.g. a search's pruner). ``stop_after_steps`` ends the process-equivalent early (tests).
    """
    started = time.perf_counter()
    set_seed(seed)
    trackers = tracking.log_with(cfg.report_to, run_dir)  # fails fast on a tracker that is not installed
    accelerator = make_accelerator(cfg.mixed_precision, trackers, run_dir if trackers else None)
    if cfg.reuse_host_memory and accelerator.device.type == "cpu":
        keep_freed_host_memory()  # no page faults for each step's large gradients and logits (host_memory.py)
    model = student.model
    model.train()
    plugin = fsdp_plugin(accelerator)
    fsdp = plugin is not None
    stage = zero_stage(accelerator)  # DeepSpeed ZeRO-2 (zero.py): its engine trains ObjectiveForward
    same_tasks = fsdp or stage is not None  # an engine reduces in backward: every process runs the same modules
    if same_tasks and cfg.shard_optimizer_state:
        raise ConfigError(f"train.shard_optimizer_state: {'FSDP' if fsdp else 'DeepSpeed ZeRO'} already shards the "
                          f"optimizer state; drop one")
    if fsdp:  # shard student + objective weights as one root module whose forward is the objective (fsdp.py)
        if effective_precision(cfg.mixed_precision) == "fp16":
            raise ConfigError("train.mixed_precision: fp16 is not supported under FSDP; use bf16")
        full_copy = FullCopy(student, accelerator.is_main_process)  # before sharding: a plain model
        root = ObjectiveForward(student, objective)
        shard_model(root, plugin, accelerator.device)
    groups = _param_groups(student, cfg)
    if objective.parameters():
        groups.append({"params": objective.parameters(), "weight_decay": 0.0,
                       "lr": cfg.lr * cfg.new_params_lr_scale})
    optimizer = make_optimizer(groups, cfg.lr, cfg.shard_optimizer_state)
    total_steps = total_optimizer_steps(len(rows), cfg)
    scheduler = get_scheduler(cfg.schedule, optimizer, num_warmup_steps=int(cfg.warmup_ratio * total_steps),
                              num_training_steps=total_steps)
    save_extra = load_extra = None
    if stage is not None:  # accelerate saves and loads the engine's own checkpoints (model, AdamW partitions)
        hidden = getattr(getattr(model, "config", None), "hidden_size", None)
        configure_zero(accelerator, cfg.batch_size, cfg.grad_accum_steps, cfg.max_grad_norm,
                       effective_precision(cfg.mixed_precision), hidden)
        root, optimizer, scheduler = accelerator.prepare(ObjectiveForward(student, objective), optimizer, scheduler)
    elif fsdp:  # model and optimizer checkpoint as shards (fsdp.py); accelerate keeps RNG and scheduler state
        accelerator.register_for_checkpointing(scheduler)
        clipped = list(root.parameters())  # every trained weight: the student's and the objective's own
        save_extra = lambda folder: save_sharded(root, optimizer, folder)  # noqa: E731
        load_extra = lambda folder: load_sharded(root, optimizer, folder)  # noqa: E731
    else:
        # a sharded optimizer's state_dict is collective and main-only: accelerate must not round-trip it
        sharded = isinstance(optimizer, ShardedAdamW)
        model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler,
                                                          device_placement=[True, not sharded, True])
        extra = getattr(objective, "checkpoint_module", None)  # e.g. white-box projections: saved, resumed too
        if extra is not None:
            accelerator.register_for_checkpointing(extra)
        student.model = accelerator.unwrap_model(model)  # objectives call model methods; gradients synced by dp
        clipped = [*model.parameters(), *objective.parameters()]  # every trained weight (as DeepSpeed clips)
    dp = DataParallel(accelerator, {task for row in rows for task in row}, engine_reduces=same_tasks)
    collate = MultiTaskCollator(student.kind, student.pad_token_id)
    ckpt_dir, metrics_path = run_dir / "checkpoints", run_dir / "metrics.jsonl"

    state = load_latest(accelerator, ckpt_dir, load_extra) or LoopState()
    if dp.is_main:
        _truncate_metrics(metrics_path, state.step)

    def finish(state: LoopState, seconds: float, seen: int) -> TrainResult:
        tracking.finish(accelerator)
        release_freed_host_memory()  # kept blocks served this run's steps; the next run starts from a lean heap
        if fsdp:  # the caller gets an ordinary model (on the main process) for what follows training
            copy_ = full_copy.refresh(root, accelerator.device)
            if copy_ is not None:
                student.model = copy_.model
        return TrainResult(state, seconds, seen)

    if state.completed:
        return finish(state, 0.0, 0)
    if trackers:  # the run's name and config, once per process start
        tracking.start(accelerator, trackers, run_dir.name,
                       tracking.run_config(run_dir, {"train": cfg.model_dump(mode="json")}), state.step)

    eval_every = cfg.eval_every or max(1, math.ceil(len(rows) / cfg.batch_size / cfg.grad_accum_steps))
    eval_every = min(eval_every, total_steps)
    checkpoint_every = cfg.checkpoint_every or eval_every
    bar = tqdm(total=total_steps, initial=state.step, desc="train", disable=not (progress and dp.is_main),
               dynamic_ncols=True)
    # sums of the logged values since the last logged step (per process): restored on resume, so a logged
    # figure always averages the same steps (those since the last multiple of log_every)
    running: dict[str, float] = _own_window(state.log_windows, dp.index, dp.count)
    micro_in_step, seen = 0, 0
    # logged once per process start: did sharding take effect? (FSDP shards weights, gradients and AdamW state)
    data_parallel = "fsdp" if fsdp else f"zero{stage}" if stage is not None else "ddp" if dp.active else "none"
    param_share = local_share([p for g in optimizer.param_groups for p in g["params"]])
    state_share: float | None = param_share if fsdp else zero_state_share(root) if stage is not None else (
        optimizer_state_share(getattr(optimizer, "optimizer", optimizer)))
    log_every = max(1, min(10, total_steps // 20 or 1))

    def log(record: dict) -> None:
        if not dp.is_main:
            return
        with open(metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if trackers:
            accelerator.log(tracking.values(record), step=record["step"])

    if valid_fn is not None and fsdp:  # the main process evaluates a gathered full copy and saves it as best/
        valid_fn, on_best = select_on_full_copy(valid_fn, on_best, full_copy, root, accelerator.device,
                                                dp.main_only)
    elif valid_fn is not None:  # the main process evaluates and saves best/; the others wait for its metrics
        valid_fn, on_best = dp.main_only(valid_fn), on_best and dp.main_only(on_best)
    while state.step < total_steps and not state.stopped_early:
        order = epoch_order(len(rows), seed, state.epoch)
        batches = epoch_batches(order, rows, cfg.batch_size, group_by_length=cfg.group_by_length, seed=seed,
                                epoch=state.epoch)
        while state.batch_in_epoch < len(batches) and state.step < total_steps:
            global_batch = batches[state.batch_in_epoch]
            batch_rows = dp.shard(global_batch)
            items, borrowed = (same_tasks_everywhere(batch_rows, global_batch, rows) if same_tasks
                               else ([rows[i] for i in batch_rows], set()))
            batch = collate(items) if items else {}
            state.batch_in_epoch += 1
            seen += len(batch_rows)
            batch = {task: {k: v.to(accelerator.device) for k, v in t.items()} for task, t in batch.items()}
            # several processes: the global batch's gradient, summed (borrowed tasks count for nothing)
            scales, row_share = dp.term_scales(batch, borrowed)
            last_micro = micro_in_step + 1 >= cfg.grad_accum_steps or state.batch_in_epoch >= len(batches)
            if batch:
                if fsdp:  # accumulate locally until the step's last micro-batch, then reduce-scatter
                    sync_gradients_now(root, last_micro)
                with accelerator.autocast():
                    terms = root(batch) if same_tasks else objective.terms(student, batch)
                    if dp.active:
                        terms = scale_terms(terms, scales, row_share)
                    loss = weighted_total(terms)
                if stage is not None:  # the engine reduces, clips and steps AdamW on the last micro-batch
                    zero_backward(root, loss / cfg.grad_accum_steps, dp.count, last_micro)
                else:
                    accelerator.backward(loss / cfg.grad_accum_steps)
                for task, (_, value) in terms.items():
                    running[f"loss/{task}"] = running.get(f"loss/{task}", 0.0) + value.item()
                running["loss"] = running.get("loss", 0.0) + loss.item()
            running["_n"] = running.get("_n", 0) + 1
            micro_in_step += 1
            if not last_micro:
                continue
            micro_in_step = 0
            dp.reduce_gradients([p for g in optimizer.param_groups for p in g["params"]])
            if stage is None:  # the engine clipped
                accelerator.clip_grad_norm_(clipped, cfg.max_grad_norm)
            optimizer.step()  # under DeepSpeed, accelerate's wrapper: a no-op (the engine stepped)
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            bar.update(1)
            if state.step % log_every == 0 or state.step == total_steps:
                n = running.pop("_n")
                record = {"step": state.step, "epoch": state.epoch, "lr": scheduler.get_last_lr()[0]}
                record.update({k: v / n for k, v in dp.sum_values(running).items()})
                running.clear()
                if state_share is not None:
                    record["optimizer_state_share"], state_share = state_share, None
                    record.update(data_parallel=data_parallel, parameter_share=param_share)
                log(record)
                bar.set_postfix(loss=f"{record['loss']:.3f}")
            if valid_fn is not None and (state.step % eval_every == 0 or state.step == total_steps):
                _evaluate_and_select(student, valid_fn, cfg, state, on_best, log)
                if on_eval is not None:
                    try:
                        on_eval(state.step, state.history[-1])
                    except BaseException:  # e.g. a search's pruner: the trial ends here
                        tracking.finish(accelerator)
                        raise
            if state.step % checkpoint_every == 0 or state.step == total_steps or state.stopped_early:
                state.log_windows = gather_object([dict(running)])  # one per process (collective)
                save_checkpoint(accelerator, ckpt_dir, state, cfg.keep_checkpoints, save_extra)
            if state.stopped_early or (stop_after_steps is not None and state.step >= stop_after_steps):
                break
        if stop_after_steps is not None and state.step >= stop_after_steps:
            bar.close()
            return finish(state, time.perf_counter() - started, seen)
        if state.batch_in_epoch >= len(batches):
            state.epoch += 1
            state.batch_in_epoch = 0
    bar.close()
    state.completed = True  # recorded in the last step's checkpoint (its state file only: the weights are there)
    mark_completed(accelerator, ckpt_dir, state, cfg.keep_checkpoints, save_extra)
    return finish(state, time.perf_counter() - started, seen)


def _evaluate_and_select(
    student: Student, valid_fn: ValidFn, cfg: TrainConfig, state: LoopState,
    on_best: Callable[[Student], None] | None, log: Callable[[dict], None],
) -> None:
    metrics = valid_fn(student)
    value = metrics[cfg.select_metric]
    higher_is_better = cfg.select_metric != "valid_loss"
    improved = state.best_metric is None or (value > state.best_metric if higher_is_better
                                             else value < state.best_metric)
    record = {"step": state.step, "epoch": state.epoch, "split": "valid", **_scalars(metrics),
              "improved": improved}
    log(record)
    state.history.append(record)
    if improved:
        state.best_metric, state.best_step = value, state.step
        state.evals_without_improvement = 0
        if on_best is not None:
            on_best(student)
    else:
        state.evals_without_improvement += 1
        if cfg.early_stopping_patience and state.evals_without_improvement >= cfg.early_stopping_patience:
            state.stopped_early = True


def _scalars(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, int | float)}


def _own_window(windows: list[dict[str, float]], rank: int, count: int) -> dict[str, float]:
    """This process's share of the logging window saved at the checkpoint. When the process count changed, the
    main process takes every sum (the logged figure sums over processes); the micro-batch count ``_n``, the same
    on every process, is each one's."""
    if len(windows) == count:
        return dict(windows[rank])
    if not windows:
        return {}
    total: dict[str, float] = {"_n": windows[0].get("_n", 0)} if "_n" in windows[0] else {}
    for window in windows if rank == 0 else ():
        for k, v in window.items():
            if k != "_n":
                total[k] = total.get(k, 0.0) + v
    return total


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop log lines written after the checkpoint we resume from, so a resumed log has no duplicates."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line and json.loads(line).get("step", 0) <= step]
    path.write_text("".join(line + "\n" for line in keep))


__all__ = ["train", "TrainResult", "make_accelerator", "epoch_order", "total_optimizer_steps",
           "write_json_atomic"]
