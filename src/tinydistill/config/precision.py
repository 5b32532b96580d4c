"""The precision a run trains and scores at on this machine: ``train.mixed_precision`` resolved against the
device (``auto`` becomes bf16 where the hardware multiplies bf16 natively, fp32 elsewhere)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch loads when a precision is resolved, not for `tinydistill --help`
    import torch


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX): there bf16 matmuls run ~3x fp32's rate;
    without them bf16 is emulated and autocast trains slower than fp32 (bench/train_throughput.py)."""
    import torch

    return any(getattr(torch.cpu, f"_is_{name}_supported", lambda: False)() for name in ("avx512_bf16", "amx_tile"))


def effective_precision(mixed_precision: str) -> str:
    """The precision actually used. ``auto``: bf16 on a CUDA GPU with bf16 support (fp16 only when asked), on a
    CPU bf16 where it multiplies bf16 natively (:func:`cpu_has_native_bf16`) and fp32 ("no") where it does not.
    fp16 falls back to bf16 without CUDA."""
    import torch

    cuda = torch.cuda.is_available()
    if mixed_precision == "auto":
        native = torch.cuda.is_bf16_supported() if cuda else cpu_has_native_bf16()
        return "bf16" if native else "no"
    return "bf16" if mixed_precision == "fp16" and not cuda else mixed_precision


def precision_label(precision: str) -> str:
    """How reports name an :func:`effective_precision`: ``fp32``, ``bf16 autocast`` or ``fp16 autocast``."""
    return "fp32" if precision == "no" else f"{precision} autocast"


def autocast_dtype(mixed_precision: str) -> torch.dtype | None:
    """The autocast dtype for ``mixed_precision`` (None: full precision)."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(effective_precision(mixed_precision))
