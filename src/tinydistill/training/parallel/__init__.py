"""How training runs across processes: one :class:`~.base.Strategy` per way of launching (see :mod:`.base`),
chosen by :func:`strategy_for`; the process group and main-process helpers (:mod:`.process`); which rows a
process takes (:mod:`.shards`)."""

from __future__ import annotations

from collections.abc import Iterable

from accelerate import Accelerator

from ...config import TrainConfig
from ...methods import Objective
from .base import Share, Strategy
from .data_parallel import DataParallel, task_units
from .ddp import DDP, ShardedAdamW
from .deepspeed import DeepSpeedZero, zero_stage
from .fsdp import FSDP, fsdp_plugin
from .local import Local
from .process import is_main_process, main_process_first, process_state, share_from_main
from .shards import launched_shard, parse_shard, shard


def strategy_for(accelerator: Accelerator, cfg: TrainConfig, tasks: Iterable[str], precision: str) -> Strategy:
    """The strategy of this launch: FSDP2 or DeepSpeed ZeRO-2 when ``accelerate launch`` was given their config,
    else hand-written DDP over several processes, else one process. ``tasks``: of all training rows;
    ``precision``: the one in effect (``no``, ``bf16`` or ``fp16``)."""
    plugin = fsdp_plugin(accelerator)
    if plugin is not None:
        return FSDP(accelerator, cfg, tasks, precision, plugin)
    stage = zero_stage(accelerator)
    if stage is not None:
        return DeepSpeedZero(accelerator, cfg, tasks, precision, stage)
    kind = DDP if accelerator.num_processes > 1 else Local
    return kind(accelerator, cfg, tasks, precision)


__all__ = ["DDP", "FSDP", "DataParallel", "DeepSpeedZero", "Local", "Objective", "Share", "ShardedAdamW", "Strategy",
           "is_main_process", "launched_shard", "main_process_first", "parse_shard", "process_state",
           "share_from_main", "shard", "strategy_for", "task_units"]
