"""The training loop, top to bottom: multi-task batches, named weighted loss terms, accelerate, selection on valid.

``L = L_answer + Σ_m α_m · L_rationale(teacher m)`` (TinyLLM eq. 2); every term is logged by name.
Test data never enters this module.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from accelerate.utils import DataLoaderConfiguration, gather_object, set_seed
from tqdm.auto import tqdm

from ..config import TrainConfig, effective_precision
from ..data import epoch_batches
from ..errors import TinyDistillError
from ..files import bar_options, write_text_atomic
from ..losses import weighted_total
from ..methods import Objective
from ..students import MultiTaskCollator, Student, TaskItem
from . import tracking
from .checkpoint import LoopState, load_latest, mark_completed, save_checkpoint, write_json_atomic
from .host_memory import keep_freed_host_memory, release_freed_host_memory
from .parallel import Strategy, process_state, strategy_for

#: Evaluates the current student on valid; returns metrics including ``TrainConfig.select_metric``.
ValidFn = Callable[[Student], dict]


@dataclass
class Selection:
    """Selection on valid: ``valid_fn`` scores the student for early stopping and the best checkpoint,
    ``on_best`` saves the best student, ``on_eval(step, record)`` sees each valid evaluation's logged record
    (it may raise, e.g. a search's pruner)."""

    valid_fn: ValidFn
    on_best: Callable[[Student], None] | None = None
    on_eval: Callable[[int, dict], None] | None = None


@dataclass
class TrainResult:
    """``seconds``: the run's training time, every process start together (the interrupted ones up to their
    last checkpoint); a run found finished reports the time it took, not the seconds spent finding it so."""

    state: LoopState
    seconds: float
    examples_seen: int


def make_accelerator(mixed_precision: str, log_with: list | None = None,
                     project_dir: Path | None = None) -> Accelerator:
    """bf16/fp16 autocast where the device supports it (see :func:`effective_precision`); experiment trackers
    ``log_with`` (see :mod:`tinydistill.training.tracking`) logging under ``project_dir``."""
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
    student: Student, rows: Sequence[dict[str, TaskItem]], objective: Objective, cfg: TrainConfig, *, seed: int,
    run_dir: Path, select: Selection | None = None, stop_after_steps: int | None = None, progress: bool = True,
    tracked: tracking.TrackedStage | None = None,
) -> TrainResult:
    """Train ``student`` on tokenised multi-task ``rows``; resume from ``run_dir/checkpoints`` if present.

    ``objective.terms(student, batch)`` returns the named, weighted loss terms of one batch
    (see :mod:`tinydistill.methods`); ``objective.parameters()`` are trained alongside the student. ``select``
    evaluates on valid (see :class:`Selection`). ``stop_after_steps`` ends the process-equivalent early (tests).
    How the processes share the work is the :class:`~tinydistill.parallel.Strategy`'s business.
    ``tracked``: the run's trackers, opened by the caller (a run's stages share them); ``None`` with
    ``cfg.report_to`` set: this call opens and closes its own.
    """
    started = time.perf_counter()
    set_seed(seed)
    tracking.check_installed(cfg.report_to)  # fails fast on a tracker that is not installed
    accelerator = make_accelerator(cfg.mixed_precision)
    if cfg.reuse_host_memory and accelerator.device.type == "cpu":
        keep_freed_host_memory()  # no page faults for each step's large gradients and logits (host_memory.py)
    student.model.train()
    total_steps = total_optimizer_steps(len(rows), cfg)
    strategy = strategy_for(accelerator, cfg, {task for row in rows for task in row},
                            effective_precision(cfg.mixed_precision))
    strategy.prepare(student, objective, total_steps)
    collate = MultiTaskCollator(student.kind, student.pad_token_id)
    ckpt_dir, metrics_path = run_dir / "checkpoints", run_dir / "metrics.jsonl"
    state = load_latest(accelerator, ckpt_dir, strategy.load_shards) or LoopState()
    if strategy.is_main:
        _truncate_metrics(metrics_path, state.step)
    if state.completed:
        return _finish(strategy, student, state, state.train_seconds, 0, None)
    seconds_before = state.train_seconds  # training time of earlier process starts (resumed runs)

    def elapsed() -> float:
        return seconds_before + time.perf_counter() - started

    own = None
    if tracked is None and cfg.report_to:  # the run's name and config, once per process start
        own = tracking.TrackerRun.open(cfg.report_to, run_dir, run_dir.name, tracking.run_config(
            run_dir, {"train": cfg.model_dump(mode="json")}), state.step)
        tracked = tracking.TrackedStage(own)
    eval_every, checkpoint_every, log_every = _cadence(len(rows), cfg, total_steps)
    bar = tqdm(total=total_steps, initial=state.step, desc="train", disable=not (progress and strategy.is_main),
               dynamic_ncols=True, **bar_options())
    # sums of the logged values since the last logged step (per process): restored on resume, so a logged
    # figure always averages the same steps (those since the last multiple of log_every)
    running: dict[str, float] = _own_window(state.log_windows, strategy.index, strategy.count)
    first_record = strategy.describe()  # logged once per process start: what this process holds
    log = _logger(strategy, metrics_path, tracked)
    valid_fn, on_best = strategy.selection(select.valid_fn, select.on_best) if select else (None, None)
    micro_in_step, seen = 0, 0
    while state.step < total_steps and not state.stopped_early:
        batches = epoch_batches(epoch_order(len(rows), seed, state.epoch), rows, cfg.batch_size,
                                group_by_length=cfg.group_by_length, seed=seed, epoch=state.epoch)
        while state.batch_in_epoch < len(batches) and state.step < total_steps:
            share = strategy.share(batches[state.batch_in_epoch], rows)
            batch = _to_device(collate(share.items), accelerator.device) if share.items else {}
            state.batch_in_epoch += 1
            seen += share.rows
            micro_in_step += 1
            last_micro = micro_in_step >= cfg.grad_accum_steps or state.batch_in_epoch >= len(batches)
            terms = strategy.forward(batch, share, sync=last_micro)  # summed over processes: the global batch's
            if terms is not None:
                loss = weighted_total(terms)
                strategy.backward(loss / cfg.grad_accum_steps, last_micro)
                _accumulate(running, terms, loss)
            running["_n"] = running.get("_n", 0) + 1
            if not last_micro:
                continue
            micro_in_step = 0
            strategy.reduce_gradients()
            strategy.clip_gradients()
            strategy.optimizer_step()
            state.step += 1
            bar.update(1)
            if state.step % log_every == 0 or state.step == total_steps:
                log(record := {**_window_record(state, strategy, running), **first_record})
                first_record = {}
                bar.set_postfix(loss=f"{record['loss']:.3f}")
            if valid_fn is not None and (state.step % eval_every == 0 or state.step == total_steps):
                _evaluate_and_select(student, valid_fn, cfg, state, on_best, log)
                _notify(select, state, own)
            if state.step % checkpoint_every == 0 or state.step == total_steps or state.stopped_early:
                state.log_windows = gather_object([dict(running)])  # one per process (collective)
                state.train_seconds = elapsed()
                save_checkpoint(accelerator, ckpt_dir, state, cfg.keep_checkpoints, strategy.save_shards)
            if state.stopped_early or (stop_after_steps is not None and state.step >= stop_after_steps):
                break
        if stop_after_steps is not None and state.step >= stop_after_steps:
            bar.close()
            return _finish(strategy, student, state, elapsed(), seen, own)
        if state.batch_in_epoch >= len(batches):
            state.epoch, state.batch_in_epoch = state.epoch + 1, 0
    bar.close()
    state.completed = True  # recorded in the last step's checkpoint (its state file only: the weights are there)
    state.train_seconds = elapsed()
    mark_completed(accelerator, ckpt_dir, state, cfg.keep_checkpoints, strategy.save_shards)
    return _finish(strategy, student, state, state.train_seconds, seen, own)


def _cadence(n_rows: int, cfg: TrainConfig, total_steps: int) -> tuple[int, int, int]:
    """Every how many optimizer steps the loop evaluates on valid, checkpoints and logs."""
    eval_every = min(cfg.eval_every or max(1, math.ceil(n_rows / cfg.batch_size / cfg.grad_accum_steps)),
                     total_steps)
    return eval_every, cfg.checkpoint_every or eval_every, max(1, min(10, total_steps // 20 or 1))


def _accumulate(running: dict[str, float], terms: dict[str, tuple[float, torch.Tensor]], loss: torch.Tensor) -> None:
    """Add one micro-batch's loss and named terms to the logging window."""
    for task, (_, value) in terms.items():
        running[f"loss/{task}"] = running.get(f"loss/{task}", 0.0) + value.item()
    running["loss"] = running.get("loss", 0.0) + loss.item()


def _window_record(state: LoopState, strategy: Strategy, running: dict[str, float]) -> dict:
    """The logged record of a step: the window's mean values over its micro-batches, summed over processes
    (collective); the window starts again empty."""
    n = running.pop("_n")
    record = {"step": state.step, "epoch": state.epoch, "lr": strategy.lr,
              **{k: v / n for k, v in strategy.sum_values(running).items()}}
    running.clear()
    return record


def _notify(select: Selection | None, state: LoopState, own: tracking.TrackerRun | None) -> None:
    """``select.on_eval`` sees the evaluation just logged; if it raises (a search's pruner), the trial ends here."""
    if select is None or select.on_eval is None:
        return
    try:
        select.on_eval(state.step, state.history[-1])
    except BaseException:
        if own is not None:
            own.finish()
        raise


def _to_device(batch: dict[str, dict[str, torch.Tensor]], device: torch.device) -> dict[str, dict[str, torch.Tensor]]:
    return {task: {k: v.to(device) for k, v in t.items()} for task, t in batch.items()}


def _logger(strategy: Strategy, metrics_path: Path, tracked: tracking.TrackedStage | None) -> Callable[[dict], None]:
    """Append a record to ``metrics.jsonl`` (and the trackers) on the main process."""

    def log(record: dict) -> None:
        if not strategy.is_main:
            return
        with open(metrics_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if tracked is not None:
            tracked.log(record)

    return log


def _finish(strategy: Strategy, student: Student, state: LoopState, seconds: float, seen: int,
            own: tracking.TrackerRun | None) -> TrainResult:
    if own is not None:  # trackers this call opened; a caller's stay open for its next stage
        own.finish()
    release_freed_host_memory()  # kept blocks served this run's steps; the next run starts from a lean heap
    strategy.finalize(student)  # the caller gets an ordinary model (on the main process) for what follows
    return TrainResult(state, seconds, seen)


def _evaluate_and_select(
    student: Student, valid_fn: ValidFn, cfg: TrainConfig, state: LoopState,
    on_best: Callable[[Student], None] | None, log: Callable[[dict], None],
) -> None:
    metrics = valid_fn(student)
    value = metrics[cfg.select_metric]  # every selection metric is an accuracy or a match rate: higher is better
    improved = state.best_metric is None or value > state.best_metric
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
    """Drop log lines written after the checkpoint we resume from, so a resumed log has no duplicates.

    The file is replaced atomically (a kill leaves the old log or the new one). A torn last line (a kill during
    an append) is dropped with a warning; an unreadable line elsewhere is a one-line error naming it."""
    if not path.exists():
        return
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    keep = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # a kill during the last append
                print(f"warning: {path}:{number}: dropped a half-written last line (the run was interrupted "
                      "while logging)", file=sys.stderr, flush=True)
                continue
            raise TinyDistillError(f"{path}:{number}: not a JSON record; fix or delete the line") from None
        if record.get("step", 0) <= step:
            keep.append(line)
    new = "".join(line + "\n" for line in keep)
    if new != text:
        write_text_atomic(path, new)


__all__ = ["train", "TrainResult", "make_accelerator", "epoch_order", "total_optimizer_steps",
           "write_json_atomic"]
