"""How the training loop runs across processes: the :class:`Strategy` interface, and what every strategy shares.

The loop (:func:`tinydistill.training.trainer.train`) never asks which strategy it has. Per micro-batch it calls
:meth:`~Strategy.share` (this process's rows of the global batch), :meth:`~Strategy.forward` (the objective's
named terms, scaled so that summing gradients over processes gives the global batch's) and
:meth:`~Strategy.backward`; per optimizer step :meth:`~Strategy.reduce_gradients`,
:meth:`~Strategy.clip_gradients` and :meth:`~Strategy.optimizer_step`. Checkpoints pass
:meth:`~Strategy.save_shards` / :meth:`~Strategy.load_shards` to :mod:`tinydistill.training.checkpoint`; selection on
valid runs through :meth:`~Strategy.selection` (the main process evaluates, on a full copy where the weights are
sharded), and :meth:`~Strategy.finalize` hands the caller an ordinary model.

The strategies: :mod:`.local` (one process), :mod:`.ddp` (hand-written data parallelism, optionally with
ZeRO-1 optimizer sharding), :mod:`.fsdp` (FSDP2) and :mod:`.deepspeed` (DeepSpeed ZeRO-2); :func:`.strategy_for`
picks one from the way the processes were launched.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from accelerate import Accelerator
from torch import nn
from transformers import get_scheduler

from ...config import TrainConfig
from ...methods import Objective
from ...students import Student
from ..cpu_dropout import cpu_dropout
from .data_parallel import Batch, DataParallel, Terms, scale_terms
from .shards import same_tasks_everywhere

T = TypeVar("T")
ValidFn = Callable[[Student], dict]
BestFn = Callable[[Student], None]


@dataclass
class Share:
    """This process's part of one global batch: its items (with any ``borrowed`` task items, whose loss terms
    count for nothing) and how many of the global batch's rows are its own."""

    items: Sequence[Mapping[str, Any]]
    rows: int
    borrowed: set[str] = field(default_factory=set)


def param_groups(student: Student, objective: Objective, cfg: TrainConfig) -> list[dict]:
    """AdamW's groups: decay / no decay (biases, norms), at ``lr`` for pretrained weights and at
    ``lr · new_params_lr_scale`` for new ones (heads, the objective's own weights)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    new_decay: list[nn.Parameter] = []
    new_no_decay: list[nn.Parameter] = []
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
    groups = [g for g in groups if g["params"]]
    if objective.parameters():
        groups.append({"params": objective.parameters(), "weight_decay": 0.0, "lr": new_lr})
    return groups


def make_optimizer(groups: list[dict], lr: float, cls: Callable[..., torch.optim.Optimizer] = torch.optim.AdamW,
                   ) -> torch.optim.Optimizer:
    """AdamW (or ``cls``, e.g. :class:`.ddp.ShardedAdamW`), fused (one kernel for all tensors) where every
    parameter is a float tensor on CPU or CUDA."""
    params = [p for g in groups for p in g["params"]]
    fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return cls(groups, lr=lr, fused=fused or None)


def local_share(parameters: Sequence[nn.Parameter]) -> float:
    """The fraction of these parameters' elements stored on this process (1.0 unless sharded)."""
    from torch.distributed.tensor import DTensor

    total = sum(p.numel() for p in parameters)
    local = sum(p.to_local().numel() if isinstance(p, DTensor) else p.numel() for p in parameters)
    return local / max(total, 1)


class Strategy(ABC):
    """One way of running the training loop across processes (see the module docstring).

    ``tasks``: the tasks of all training rows (the same on every process). After :meth:`prepare`,
    ``optimizer`` and ``scheduler`` are the prepared ones; ``compute(batch)`` returns the objective's terms."""

    #: Logged as ``data_parallel`` in the first record of each process start.
    name: str
    #: An engine reduces the gradients in backward: every process must run the same modules (borrowed items).
    engine_reduces: ClassVar[bool] = False

    def __init__(self, accelerator: Accelerator, cfg: TrainConfig, tasks: Iterable[str], precision: str) -> None:
        self.accelerator, self.cfg, self.precision = accelerator, cfg, precision
        self.dp = DataParallel(accelerator, tasks, engine_reduces=self.engine_reduces)
        self.optimizer: torch.optim.Optimizer
        self.scheduler: Any
        self.compute: Callable[[Batch], Terms]
        self.clipped: list[nn.Parameter] = []  # every trained weight (as DeepSpeed clips)

    # ------------------------------------------------------------------------------------ the processes
    @property
    def index(self) -> int:
        return self.dp.index

    @property
    def count(self) -> int:
        return self.dp.count

    @property
    def is_main(self) -> bool:
        return self.dp.is_main

    def share(self, global_batch: Sequence[int], rows: Sequence[Mapping[str, Any]]) -> Share:
        """This process's items of one global batch (every ``count``-th row; an engine's borrow the tasks
        they lack)."""
        part = self.dp.shard(global_batch)
        if self.engine_reduces:
            items, borrowed = same_tasks_everywhere(part, global_batch, rows)
            return Share(items, len(part), borrowed)
        return Share([rows[i] for i in part], len(part))

    def main_only(self, fn: Callable[..., T]) -> Callable[..., T]:
        """``fn`` run on the main process only; the others wait and receive its result. Collective."""
        return self.dp.main_only(fn)

    def sum_values(self, values: Mapping[str, float]) -> dict[str, float]:
        """Per-name sums over processes. Collective."""
        return self.dp.sum_values(values)

    # ------------------------------------------------------------------------------------------ set-up
    @abstractmethod
    def prepare(self, student: Student, objective: Objective, total_steps: int) -> None:
        """Place (or shard, or wrap) the student and the objective's weights, and build the optimizer and
        schedule; afterwards ``optimizer``, ``scheduler``, ``compute`` and ``clipped`` are set."""

    def _optimizer(self, student: Student, objective: Objective, total_steps: int,
                   cls: Callable[..., torch.optim.Optimizer] = torch.optim.AdamW) -> None:
        self.optimizer = make_optimizer(param_groups(student, objective, self.cfg), self.cfg.lr, cls)
        self.scheduler = get_scheduler(self.cfg.schedule, self.optimizer,
                                       num_warmup_steps=int(self.cfg.warmup_ratio * total_steps),
                                       num_training_steps=total_steps)

    def describe(self) -> dict[str, Any]:
        """Logged once per process start: did sharding take effect? What this process holds."""
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        parameter_share = local_share(params)
        return {"optimizer_state_share": self.optimizer_state_share(parameter_share), "data_parallel": self.name,
                "parameter_share": parameter_share}

    def optimizer_state_share(self, parameter_share: float) -> float:
        """The fraction of the parameters whose AdamW moments this process keeps."""
        return 1.0

    # ---------------------------------------------------------------------------------------- one step
    def forward(self, batch: Batch, share: Share, sync: bool) -> Terms | None:
        """The objective's named terms of this process's ``batch``, scaled for its share of the global batch;
        None when it has no rows. Collective. ``sync``: the step's last micro-batch (gradients reduce there)."""
        scales, row_share = self.dp.term_scales(batch, share.borrowed)
        if not batch:
            return None
        self.before_forward(sync)
        with self.accelerator.autocast(), cpu_dropout(self.accelerator.device):
            terms = self.compute(batch)
            return scale_terms(terms, scales, row_share) if self.dp.active else terms

    def before_forward(self, sync: bool) -> None:  # noqa: B027 (a no-op unless overridden)
        """Hook before the forward of a micro-batch (FSDP: reduce-scatter in this backward or keep accumulating)."""

    def backward(self, loss: torch.Tensor, last_micro_batch: bool) -> None:
        """Backward of one micro-batch's (already accumulation-divided) loss."""
        self.accelerator.backward(loss)

    def reduce_gradients(self) -> None:
        """Sum the step's gradients over processes where no engine did (hand-written DDP; collective)."""
        self.dp.reduce_gradients([p for g in self.optimizer.param_groups for p in g["params"]])

    def clip_gradients(self) -> None:
        """Clip the norm of every trained weight's gradient to ``train.max_grad_norm``."""
        self.accelerator.clip_grad_norm_(self.clipped, self.cfg.max_grad_norm)

    def optimizer_step(self) -> None:
        """AdamW and the schedule take one step; gradients are cleared."""
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    @property
    def lr(self) -> float:
        return self.scheduler.get_last_lr()[0]

    # ------------------------------------------------------------------------- checkpoints, selection
    def save_shards(self, folder: Path) -> None:  # noqa: B027 (a no-op unless overridden)
        """Write what accelerate's ``save_state`` does not hold into checkpoint ``folder``. Collective."""

    def load_shards(self, folder: Path) -> None:  # noqa: B027 (a no-op unless overridden)
        """Read back what :meth:`save_shards` wrote. Collective."""

    def selection(self, valid_fn: ValidFn, on_best: BestFn | None) -> tuple[ValidFn, BestFn | None]:
        """``valid_fn`` / ``on_best`` as the loop calls them: the main process evaluates and saves ``best/``, the
        others wait for its metrics."""
        return self.main_only(valid_fn), on_best and self.main_only(on_best)

    def finalize(self, student: Student) -> None:  # noqa: B027 (a no-op unless overridden)
        """After training: leave an ordinary model in ``student`` (on the main process) for what follows."""
