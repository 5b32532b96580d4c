"""The training loop's view of the other processes, shared by every strategy (see :mod:`.base`).

Every process builds the same global batches; process ``i`` of ``n`` takes rows ``i::n`` of each. Each named
loss term is rescaled so that *summing* gradients over processes gives the gradient of the global batch:
a task's term is a mean over its units (weighted target tokens, or weighted rows for a choice head), so
process k's term is multiplied by ``units_k / units_global``; any other term (KD, hidden MSE, …) by its share
of the batch's rows — exact for per-row means, the usual data-parallel approximation otherwise (a batch-level
statistic such as the shortcut penalty cannot be split exactly at all). Gradients are summed with explicit
all-reduces after the local backward (:mod:`.ddp`), so students whose objectives call model methods other than
``forward`` (choice heads, shared encoders) are synchronised too. With one process nothing here changes the loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar, cast

import torch
import torch.distributed as dist
from accelerate import Accelerator
from accelerate.utils import DistributedType, broadcast_object_list

from ...errors import ConfigError
from ...losses import IGNORE_INDEX
from .shards import launched_shard, shard

T = TypeVar("T")
Batch = dict[str, dict[str, torch.Tensor]]
Terms = dict[str, tuple[float, torch.Tensor]]

#: Gradients are all-reduced in flat buckets of about this many bytes.
BUCKET_BYTES = 32 * 2**20


def task_units(batch: Batch) -> dict[str, float]:
    """What each task's mean loss divides by in ``batch``: weighted target (or masked rationale) tokens, or weighted
    rows of a choice head (see :func:`~tinydistill.losses.token_cross_entropy`, ``choice_cross_entropy``). A causal
    student's loss drops label 0, always a masked prompt token, so counting every label is the same."""
    units = {}
    for task, t in batch.items():
        weights = t.get("row_weights")
        if "choice_mask" in t or ("labels" in t and t["labels"].ndim == 1):
            units[task] = float(weights.sum()) if weights is not None else float(t["labels"].shape[0])
            continue
        labels = t["mlm_labels"] if "mlm_labels" in t else t["labels"]  # a masked rationale: its masked tokens
        mask = (labels != IGNORE_INDEX).float()
        if weights is not None:
            mask = mask * weights.float().unsqueeze(1)
        units[task] = float(mask.sum())
    return units


def scale_terms(terms: Terms, scales: Mapping[str, float], default: float) -> Terms:
    """``terms`` with each value multiplied by its scale (``default`` for names without one)."""
    return {name: (w, value * scales.get(name, default)) for name, (w, value) in terms.items()}


class DataParallel:
    """The loop's view of the other processes: its share of each batch, loss scales, reductions, main-only work.

    ``tasks``: the same on every process (the tasks of all training rows). ``engine_reduces``: an engine
    reduces the gradients in backward — FSDP (:mod:`.fsdp`) or DeepSpeed (:mod:`.deepspeed`).
    """

    def __init__(self, accelerator: Accelerator, tasks: Iterable[str], *, engine_reduces: bool = False) -> None:
        kind = accelerator.distributed_type
        launched = launched_shard()[1]
        if launched != accelerator.num_processes:
            raise ConfigError(f"{launched} processes were launched but accelerate sees {accelerator.num_processes}; "
                              f"without a GPU set ACCELERATE_USE_CPU=1 (see README 'Scale-out')")
        if kind == DistributedType.DEEPSPEED and not engine_reduces:
            raise ConfigError("accelerate DEEPSPEED: DeepSpeed's engine reduces the gradients "
                              "(tinydistill.parallel.deepspeed); DataParallel must be told so (engine_reduces=True)")
        self.accelerator = accelerator
        self.engine_reduces = engine_reduces
        self.index, self.count = accelerator.process_index, accelerator.num_processes
        self.is_main = accelerator.is_main_process
        self.tasks = sorted(tasks)
        self._rows = (0, 0)  # (this process's, global) rows of the current batch

    @property
    def active(self) -> bool:
        return self.count > 1

    def shard(self, global_batch: Sequence[int]) -> list[int]:
        """This process's rows of one global batch (may be empty when the batch has fewer rows than processes)."""
        part = shard(global_batch, self.index, self.count)
        self._rows = (len(part), len(global_batch))
        return part

    def term_scales(self, batch: Batch, borrowed: Iterable[str] = ()) -> tuple[dict[str, float], float]:
        """(scale per task, scale for other terms) of this process's part of the last global batch. Collective.

        ``borrowed``: tasks present in ``batch`` only so that every process runs them (FSDP): scale 0."""
        if not self.active:
            return {}, 1.0
        local = task_units(batch)
        local.update(dict.fromkeys(borrowed, 0.0))
        totals = torch.tensor([local.get(t, 0.0) for t in self.tasks], dtype=torch.float64,
                              device=self.accelerator.device)
        dist.all_reduce(totals)
        scales = {t: local[t] / total for t, total in zip(self.tasks, totals.tolist(), strict=True)
                  if t in local and total > 0}
        local_rows, global_rows = self._rows
        return scales, local_rows / max(global_rows, 1)

    def reduce_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Sum gradients over processes. Collective; a gradient missing on some process counts as zero there,
        and a parameter no process touched keeps ``grad = None`` (so AdamW skips it, as one process would)."""
        if not self.active or self.engine_reduces:
            return
        params = [p for p in params if p.requires_grad]
        device = self.accelerator.device
        touched = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=device)
        dist.all_reduce(touched)
        grads = []
        for p, hit in zip(params, touched.tolist(), strict=True):
            if hit and p.grad is None:
                p.grad = torch.zeros_like(p)
            if hit:
                grads.append(cast(torch.Tensor, p.grad))
        for bucket in _buckets(grads):
            flat = torch._utils._flatten_dense_tensors(bucket)
            dist.all_reduce(flat)
            for g, reduced in zip(bucket, torch._utils._unflatten_dense_tensors(flat, bucket), strict=True):
                g.copy_(reduced)

    def sum_values(self, values: Mapping[str, float]) -> dict[str, float]:
        """Per-name sums over processes (names may differ between processes). Collective."""
        if not self.active:
            return dict(values)
        parts: list[Any] = [None] * self.count
        dist.all_gather_object(parts, dict(values))
        total: dict[str, float] = {}
        for part in parts:
            for k, v in part.items():
                total[k] = total.get(k, 0.0) + v
        return total

    def main_only(self, fn: Callable[..., T]) -> Callable[..., T]:
        """``fn`` run on the main process only; the others wait and receive its result. Collective."""
        if not self.active:
            return fn

        def wrapped(*args: Any, **kwargs: Any) -> T:
            box = [fn(*args, **kwargs) if self.is_main else None]
            broadcast_object_list(box, from_process=0)
            return cast(T, box[0])  # set on every process by the broadcast

        return wrapped


def _buckets(tensors: Sequence[torch.Tensor]) -> list[list[torch.Tensor]]:
    """Consecutive groups of same-dtype tensors of about :data:`BUCKET_BYTES` each."""
    out: list[list[torch.Tensor]] = []
    size = 0
    for t in tensors:
        nbytes = t.numel() * t.element_size()
        if not out or out[-1][0].dtype != t.dtype or size + nbytes > BUCKET_BYTES:
            out.append([])
            size = 0
        out[-1].append(t)
        size += nbytes
    return out
