"""The process group every command shares (accelerate's ``PartialState``) and work done on the main process."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar, cast

from accelerate import PartialState
from accelerate.utils import broadcast_object_list, parse_flag_from_env

from .deepspeed import state_kwargs

T = TypeVar("T")

#: How long a process waits in a collective: the others wait there while the main process evaluates on valid.
COLLECTIVE_TIMEOUT = timedelta(hours=2)


def process_state() -> PartialState:
    """accelerate's process group (created on first use, with :data:`COLLECTIVE_TIMEOUT`); CPU-only processes
    join theirs when ``ACCELERATE_USE_CPU`` is set, or over gloo under DeepSpeed (:func:`.deepspeed.state_kwargs`)."""
    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"), timeout=COLLECTIVE_TIMEOUT,
                        **state_kwargs())


def is_main_process() -> bool:
    """True on the main process (and when not launched in parallel)."""
    return process_state().is_main_process


def main_process_first(fn: Callable[[], T]) -> T:
    """Run ``fn`` on the main process, then on the others (e.g. building a cache they then reuse)."""
    with process_state().main_process_first():
        return fn()


def share_from_main(fn: Callable[[], T]) -> T:
    """``fn()`` on the main process; the others wait and receive its result."""
    state = process_state()
    box = [fn() if state.is_main_process else None]
    if state.num_processes > 1:
        broadcast_object_list(box, from_process=0)
    return cast(T, box[0])  # set on every process by the broadcast
