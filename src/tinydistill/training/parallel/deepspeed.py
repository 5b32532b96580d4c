"""DeepSpeed ZeRO stage 2 under accelerate's ``deepspeed_zero2.yaml``: AdamW's state and the gradients are
partitioned across the processes, the weights stay whole on every process.

How the training loop fits DeepSpeed's engine (made by ``accelerator.prepare``):

- **One engine module.** The engine wraps :class:`.fsdp.ObjectiveForward` (student plus the
  objective's own weights; ``forward(batch)`` is the objective), so every trained weight is in the engine, its
  checkpoints and its gradient partitions.
- **The same parameters on every process.** ZeRO reduces gradients in buckets filled by backward hooks; the buckets
  line up only if every process runs backward through the same parameters, so (as under FSDP) a process borrows an
  item of each task its share of the global batch lacks, and that item's loss is scaled to zero.
- **Sums, not means.** The loop scales each process's loss terms so that summing gradients over processes gives the
  global batch's gradient (:mod:`.data_parallel`); DeepSpeed averages, so the loss given to backward is
  multiplied by the process count. The loop already divides micro-batch losses by ``train.grad_accum_steps``, so
  DeepSpeed must not (``scale_wrt_gas=False``); the loop marks the step's last micro-batch, where the engine clips
  (``gradient_clipping`` = ``train.max_grad_norm``) and steps AdamW. The scheduler stays the loop's.
- **Checkpoints** are DeepSpeed's own (``checkpoints/step-N/pytorch_model/``, one optimizer partition per process),
  written and read by accelerate's ``save_state``/``load_state``; resume with the same process count.
- **CPU.** Without a GPU accelerate gives CPU processes no DeepSpeed process group; :func:`state_kwargs` asks it for
  gloo (DeepSpeed's CPU accelerator). Launch without ``ACCELERATE_USE_CPU`` / ``--cpu``: those select plain DDP.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedType, parse_flag_from_env

from ...config import TrainConfig
from ...errors import ConfigError
from ...methods import Objective
from ...students import Student
from .base import Strategy
from .fsdp import ObjectiveForward


def requested() -> bool:
    """``accelerate launch`` was given a DeepSpeed config (it sets ``ACCELERATE_USE_DEEPSPEED``)."""
    return parse_flag_from_env("ACCELERATE_USE_DEEPSPEED") and not parse_flag_from_env("ACCELERATE_USE_CPU")


def state_kwargs() -> dict[str, Any]:
    """Extra arguments for accelerate's ``PartialState``: gloo for DeepSpeed's launched processes on a machine
    without CUDA (accelerate would otherwise start them as single processes, each with world size 1)."""
    launched = int(os.environ.get("LOCAL_RANK", -1)) != -1
    return {"backend": "gloo"} if requested() and launched and not torch.cuda.is_available() else {}


def zero_stage(accelerator: Accelerator) -> int | None:
    """The ZeRO stage of accelerate's DeepSpeed plugin, or None without DeepSpeed. Only stage 2 is supported."""
    if accelerator.distributed_type != DistributedType.DEEPSPEED:
        return None
    stage = int(accelerator.state.deepspeed_plugin.deepspeed_config.get("zero_optimization", {}).get("stage", 0))
    if stage != 2:
        raise ConfigError(f"accelerate DeepSpeed: zero_stage {stage} is not supported by the training loop; use "
                          "zero_stage 2 (configs/accelerate/deepspeed_zero2.yaml), fsdp.yaml to shard the weights "
                          "too (ZeRO-3-like), or ddp.yaml with train.shard_optimizer_state (ZeRO-1)")
    return stage


def configure(accelerator: Accelerator, batch_size: int, grad_accum_steps: int, max_grad_norm: float,
              precision: str, hidden_size: int | None = None) -> None:
    """Fill the DeepSpeed config from the run's ``train`` settings (before ``accelerator.prepare``): micro-batch
    size, accumulation, clipping, precision (``train.mixed_precision`` wins over the launcher's, as under DDP), and
    an ``auto`` bucket size of a DeepSpeed config file (accelerate's rule: ``hidden_size`` squared)."""
    config = accelerator.state.deepspeed_plugin.deepspeed_config
    zero = config.get("zero_optimization", {})
    if zero.get("reduce_bucket_size") == "auto":
        zero["reduce_bucket_size"] = (hidden_size or 1024) ** 2
    if "optimizer" in config or "scheduler" in config:
        raise ConfigError("accelerate DeepSpeed: drop optimizer/scheduler from the DeepSpeed config; the training "
                          "loop builds AdamW and its schedule from train.*")
    world = accelerator.num_processes
    micro = max(1, math.ceil(batch_size / world))
    config.update(train_micro_batch_size_per_gpu=micro, gradient_accumulation_steps=grad_accum_steps,
                  train_batch_size=micro * grad_accum_steps * world, gradient_clipping=max_grad_norm)
    config["bf16"] = {**config.get("bf16", {}), "enabled": precision == "bf16"}
    config["fp16"] = {**config.get("fp16", {}), "enabled": precision == "fp16"}


def backward(engine: Any, loss: torch.Tensor, world_size: int, last_micro_batch: bool) -> None:
    """Backward of one micro-batch's (already accumulation-divided) loss; on the step's last micro-batch the engine
    reduces, clips and steps AdamW. DeepSpeed averages over processes, the loop's terms sum: × ``world_size``."""
    engine.set_gradient_accumulation_boundary(last_micro_batch)
    engine.backward(loss * world_size, scale_wrt_gas=False)
    if last_micro_batch:
        engine.step()


def optimizer_state_share(engine: Any) -> float:
    """The fraction of the trained parameters whose AdamW state (fp32 partition) this process keeps."""
    partitions = getattr(engine.optimizer, "single_partition_of_fp32_groups", None)
    total = sum(p.numel() for p in engine.module.parameters() if p.requires_grad)
    if not partitions or not total:
        return 1.0
    return sum(p.numel() for p in partitions) / total


class DeepSpeedZero(Strategy):
    """DeepSpeed ZeRO-2: whole weights on every process, gradients and AdamW state partitioned by the engine."""

    engine_reduces: ClassVar[bool] = True

    def __init__(self, accelerator: Accelerator, cfg: TrainConfig, tasks: Iterable[str], precision: str,
                 stage: int) -> None:
        if cfg.shard_optimizer_state:
            raise ConfigError("train.shard_optimizer_state: DeepSpeed ZeRO already shards the optimizer state; "
                              "drop one")
        super().__init__(accelerator, cfg, tasks, precision)
        self.name = f"zero{stage}"

    def prepare(self, student: Student, objective: Objective, total_steps: int) -> None:
        # accelerate saves and loads the engine's own checkpoints (model, AdamW partitions)
        self._optimizer(student, objective, total_steps)
        hidden = getattr(getattr(student.model, "config", None), "hidden_size", None)
        cfg = self.cfg
        configure(self.accelerator, cfg.batch_size, cfg.grad_accum_steps, cfg.max_grad_norm, self.precision, hidden)
        self.engine, self.optimizer, self.scheduler = self.accelerator.prepare(
            ObjectiveForward(student, objective), self.optimizer, self.scheduler)
        self.compute = self.engine

    def optimizer_state_share(self, parameter_share: float) -> float:
        return optimizer_state_share(self.engine)

    def backward(self, loss: torch.Tensor, last_micro_batch: bool) -> None:
        # the engine reduces, clips and steps AdamW on the last micro-batch
        backward(self.engine, loss, self.count, last_micro_batch)

    def clip_gradients(self) -> None:
        """A no-op: the engine clipped (``gradient_clipping``) when it stepped."""

    # optimizer_step: accelerate's optimizer wrapper does nothing (the engine stepped); the schedule is the loop's
