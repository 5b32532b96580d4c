"""Fully sharded data parallelism: PyTorch FSDP2 (``fully_shard``) with the settings of accelerate's ``fsdp.yaml``.

Three things make the training loop's objectives work when every parameter lives in shards:

- **One root forward.** Objectives call student methods (a choice head, a shared encoder pass, a rationale
  decoder) rather than ``model(...)``; FSDP gathers a unit's weights only inside that unit's ``forward``. The
  loop therefore shards :class:`ObjectiveForward`, whose ``forward(batch)`` *is* ``objective.terms``: the root
  unit's weights are gathered for the whole objective, each transformer block's inside its own forward.
- **The same modules on every process.** Each forward and backward of a unit is a collective, so every process
  must run the same tasks even when its share of the global batch lacks one (rows without a rationale, or no
  rows at all): :func:`.shards.same_tasks_everywhere` borrows such a task's item from the global batch, and its
  loss is scaled to zero.
- **Sharded checkpoints.** Model and AdamW state are written by every process with torch.distributed.checkpoint
  (``checkpoints/step-N/fsdp/``), beside accelerate's RNG and scheduler state, and resume at any process count.
- **Full weights for evaluation and best/.** Selection on valid runs on the main process, on a plain copy of the
  student that receives the gathered full state dict before each evaluation (:class:`FullCopy`), so evaluation,
  generation and ``save_pretrained`` see an ordinary Hugging Face model.

Gradients are summed, not averaged (the divide factor is 1): the loop already scales each process's loss terms so
that the sum is the global batch's gradient (see :mod:`.data_parallel`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar, cast

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from accelerate import Accelerator
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin, parse_flag_from_env
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

from ...config import TrainConfig
from ...errors import ConfigError
from ...methods import Objective
from ...students import Student
from .base import BestFn, Strategy, ValidFn

STUDENT = "student"  # ObjectiveForward's attribute holding the student model (state-dict key prefix)


def fsdp_plugin(accelerator: Accelerator) -> FullyShardedDataParallelPlugin | None:
    """The FSDP settings ``accelerate launch`` was given (``fsdp.yaml``), or None without FSDP.

    On GPUs accelerate reports the FSDP distributed type; CPU processes (gloo) keep MULTI_CPU there, so the
    launcher's ``ACCELERATE_USE_FSDP`` flag is read directly. Only FSDP2 (``fsdp_version: 2``) is supported."""
    kind = accelerator.distributed_type
    if kind == DistributedType.FSDP:
        plugin = accelerator.state.fsdp_plugin
    elif kind == DistributedType.MULTI_CPU and parse_flag_from_env("ACCELERATE_USE_FSDP"):
        plugin = FullyShardedDataParallelPlugin()
    else:
        return None
    if plugin.fsdp_version != 2:
        raise ConfigError("accelerate FSDP: set fsdp_version: 2 in the accelerate config (FSDP1 is not supported; "
                          "see configs/accelerate/fsdp.yaml)")
    return plugin


def shard_model(root: nn.Module, plugin: FullyShardedDataParallelPlugin, device: torch.device) -> list[str]:
    """``fully_shard`` every transformer block of ``root`` (the plugin's classes, else the model's
    ``_no_split_modules``), then ``root`` itself; gradients are summed over processes. → the wrapped classes."""
    root.to(device)
    wrap = set(plugin.transformer_cls_names_to_wrap or getattr(root, "_no_split_modules", ()))
    if plugin.auto_wrap_policy is None:  # fsdp_auto_wrap_policy: NO_WRAP: one unit for the whole model
        wrap = set()
    options = {"reshard_after_forward": plugin.reshard_after_forward,
               "mp_policy": plugin.mixed_precision_policy or MixedPrecisionPolicy()}
    if plugin.cpu_offload is not None:
        options["offload_policy"] = plugin.cpu_offload
    for module in reversed(list(root.modules())):  # innermost first: fully_shard wants children before parents
        if module is not root and type(module).__name__ in wrap:
            fully_shard(module, **options)
    fully_shard(root, **options)
    plain_sum = dist.get_backend() == "gloo"  # gloo has no pre-multiplied sum (NCCL's PreMulSum)
    for module in root.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)  # the loop's loss scaling needs the sum, not the mean
            if plain_sum:
                module.set_force_sum_reduction_for_comms(True)
    return sorted(wrap)


class ObjectiveForward(nn.Module):
    """The module FSDP shards: the student model plus the objective's own weights; ``forward`` computes the
    objective's named ``(weight, loss)`` terms for one batch."""

    _objective: Any  # set past nn.Module's __setattr__ (see __init__)

    def __init__(self, student: Any, objective: Any) -> None:
        super().__init__()
        self._student = student  # the Student (tokenizer, kind); its .model is registered below
        # never a submodule, even if it is a Module: a frozen teacher it holds must stay outside the shards
        object.__setattr__(self, "_objective", objective)
        self.student = student.model
        extra = getattr(objective, "checkpoint_module", None)
        self.objective_weights = extra if isinstance(extra, nn.Module) else None
        # shard_model wraps these block classes (each its own FSDP unit)
        inner = student.model
        blocks = set(getattr(inner, "_no_split_modules", None) or [])
        for child in inner.children():
            blocks |= set(getattr(child, "_no_split_modules", None) or [])
        self._no_split_modules = sorted(blocks - {"BertEmbeddings"})  # embeddings stay in the root unit

    def forward(self, batch: dict[str, dict[str, torch.Tensor]]) -> dict[str, tuple[float, torch.Tensor]]:
        return self._objective.terms(self._student, batch)


def sync_gradients_now(model: nn.Module, sync: bool) -> None:
    """Reduce-scatter gradients in this backward (the last micro-batch of a step) or keep accumulating them."""
    if isinstance(model, FSDPModule):
        model.set_requires_gradient_sync(sync)


class FullCopy:
    """A plain (unsharded) copy of the student on the main process, refreshed from the shards on demand."""

    def __init__(self, student: Any, is_main: bool) -> None:
        self.is_main = is_main
        self.student = copy.copy(student) if is_main else None
        if self.student is not None:
            self.student.model = copy.deepcopy(student.model)  # taken before sharding: an ordinary HF model
            self.student.model.eval()

    def refresh(self, sharded: ObjectiveForward, device: torch.device) -> Any:
        """Gather the full weights (collective; every process must call it) into the copy; → the copy (main)."""
        full = get_model_state_dict(sharded, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        if self.student is None:
            return None
        prefix = STUDENT + "."
        weights = {k[len(prefix):]: v for k, v in full.items() if k.startswith(prefix)}
        self.student.model.load_state_dict(weights, strict=True)
        self.student.model.to(device)
        return self.student


def select_on_full_copy(
    valid_fn: Callable[[Any], dict], on_best: Callable[[Any], None] | None, full_copy: FullCopy,
    sharded: ObjectiveForward, device: torch.device, main_only: Callable[[Callable[..., Any]], Callable[..., Any]],
) -> tuple[Callable[[Any], dict], Callable[[Any], None] | None]:
    """The loop's ``valid_fn`` / ``on_best`` under FSDP: every process gathers the weights into the main
    process's full copy, which alone evaluates (then shares the metrics) and saves ``best/``."""

    def valid(_sharded_student: Any) -> dict:
        full_copy.refresh(sharded, device)
        return main_only(lambda: valid_fn(full_copy.student))()

    best = None if on_best is None else main_only(lambda _sharded_student: on_best(full_copy.student))
    return valid, best


SHARDED_DIR = "fsdp"  # inside a checkpoint folder: the model and optimizer shards (torch.distributed.checkpoint)


def save_sharded(root: nn.Module, optimizer: torch.optim.Optimizer, folder: Path) -> None:
    """Every process writes its shards of the model and AdamW state into ``folder/fsdp``. Collective."""
    model_state, optimizer_state = get_state_dict(root, optimizer)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=str(folder / SHARDED_DIR))


def load_sharded(root: nn.Module, optimizer: torch.optim.Optimizer, folder: Path) -> None:
    """Load ``folder/fsdp`` into the sharded model and optimizer (any process count). Collective."""
    model_state, optimizer_state = get_state_dict(root, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    dcp.load(state, checkpoint_id=str(folder / SHARDED_DIR))
    set_state_dict(root, optimizer, model_state_dict=cast(Any, state["model"]),
                   optim_state_dict=cast(Any, state["optimizer"]))


class FSDP(Strategy):
    """FSDP2: weights, gradients and AdamW state sharded over the processes (see the module docstring)."""

    name = "fsdp"
    engine_reduces: ClassVar[bool] = True

    def __init__(self, accelerator: Accelerator, cfg: TrainConfig, tasks: Iterable[str], precision: str,
                 plugin: FullyShardedDataParallelPlugin) -> None:
        if cfg.shard_optimizer_state:
            raise ConfigError("train.shard_optimizer_state: FSDP already shards the optimizer state; drop one")
        if precision == "fp16":
            raise ConfigError("train.mixed_precision: fp16 is not supported under FSDP; use bf16")
        super().__init__(accelerator, cfg, tasks, precision)
        self.plugin = plugin

    def prepare(self, student: Student, objective: Objective, total_steps: int) -> None:
        # shard student + objective weights as one root module whose forward is the objective
        device = self.accelerator.device
        self.full_copy = FullCopy(student, self.accelerator.is_main_process)  # before sharding: a plain model
        self.root = ObjectiveForward(student, objective)
        shard_model(self.root, self.plugin, device)
        self._optimizer(student, objective, total_steps)
        # model and optimizer checkpoint as shards (save_shards); accelerate keeps RNG and scheduler state
        self.accelerator.register_for_checkpointing(self.scheduler)
        self.compute = self.root
        self.clipped = list(self.root.parameters())  # every trained weight: the student's and the objective's own

    def optimizer_state_share(self, parameter_share: float) -> float:
        return parameter_share  # FSDP shards the AdamW state as it shards the weights

    def before_forward(self, sync: bool) -> None:
        sync_gradients_now(self.root, sync)  # accumulate locally until the step's last micro-batch

    def save_shards(self, folder: Path) -> None:
        save_sharded(self.root, self.optimizer, folder)

    def load_shards(self, folder: Path) -> None:
        load_sharded(self.root, self.optimizer, folder)

    def selection(self, valid_fn: ValidFn, on_best: BestFn | None) -> tuple[ValidFn, BestFn | None]:
        """The main process evaluates a gathered full copy and saves it as ``best/``."""
        return select_on_full_copy(valid_fn, on_best, self.full_copy, self.root, self.accelerator.device,
                                   self.main_only)

    def finalize(self, student: Student) -> None:
        copy_ = self.full_copy.refresh(self.root, self.accelerator.device)  # collective
        if copy_ is not None:
            student.model = copy_.model
