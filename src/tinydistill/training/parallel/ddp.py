"""Hand-written data parallelism (DDP under ``accelerate launch`` / ``torchrun``), optionally with ZeRO stage 1.

Each process trains on its rows ``i::n`` of every global batch with its loss terms scaled (:mod:`.data_parallel`),
then the gradients are summed with explicit all-reduces (:meth:`.DataParallel.reduce_gradients`): objectives call
model methods other than ``forward`` (choice heads, shared encoders), which a DDP wrapper would not synchronise.

``train.shard_optimizer_state`` adds :class:`ShardedAdamW` (ZeRO-1: AdamW's moments split across the processes).
It is kept beside DeepSpeed ZeRO-2 (:mod:`.deepspeed`), which also partitions them, because it needs no extra
package, works with every student and objective the DDP path does, and writes AdamW's own checkpoint format (so a
sharded run resumes in one process), which DeepSpeed's partitioned checkpoints do not.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.distributed.optim import ZeroRedundancyOptimizer

from .local import Local


class ShardedAdamW(ZeroRedundancyOptimizer):
    """AdamW whose moments are split across the processes (ZeRO stage 1, on PyTorch's ZeroRedundancyOptimizer):
    each process keeps and updates its share of the parameters, then broadcasts them. Gradients are still summed
    in full by :meth:`.DataParallel.reduce_gradients`, so training is the same as with plain AdamW; only the
    optimizer's memory (8 bytes a parameter) is divided by the process count.

    ``state_dict`` is collective — accelerate calls it on every process when it saves — and gathers the whole
    state on the main process in AdamW's own format, so a checkpoint resumes with or without sharding, at any
    process count."""

    def __init__(self, groups: list[dict], lr: float, **adamw: Any) -> None:
        super().__init__(groups, optimizer_class=torch.optim.AdamW, lr=lr, **adamw)

    def state_dict(self) -> dict[str, Any]:
        self.consolidate_state_dict(to=0)
        return super().state_dict() if self.rank == 0 else {}  # only the main process writes it


class DDP(Local):
    """Several processes, each with the whole model: explicit gradient sums, optionally sharded AdamW state."""

    name = "ddp"

    def optimizer_class(self) -> type:
        return ShardedAdamW if self.cfg.shard_optimizer_state else torch.optim.AdamW

    def place_optimizer(self) -> bool:
        # a sharded optimizer's state_dict is collective and main-only: accelerate must not round-trip it
        return not self.cfg.shard_optimizer_state

    def optimizer_state_share(self, parameter_share: float) -> float:
        optimizer = getattr(self.optimizer, "optimizer", self.optimizer)  # inside accelerate's wrapper
        if not isinstance(optimizer, ShardedAdamW):
            return 1.0
        local = sum(p.numel() for g in optimizer.optim.param_groups for p in g["params"])
        return local / sum(p.numel() for g in optimizer.param_groups for p in g["params"])
