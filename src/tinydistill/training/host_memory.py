"""Host-memory reuse for CPU training: freed large blocks stay in the process for the next step.

glibc serves every allocation above its mmap threshold (32 MB at most) with a fresh ``mmap`` and returns it to
the OS on free, so each training step page-faults the same memory in again: a 30k-vocabulary embedding gradient
(47 MB), a batch's vocabulary logits. Measured on the MiniLM choice student: zeroing a fresh 47 MB gradient took
86 ms, and a rationale pass ran 8–10% faster with the blocks kept. jemalloc or tcmalloc (``LD_PRELOAD``) do the
same; this needs nothing installed. Memory is then returned to the OS only past 1 GiB of free heap top, and
at the end of each training run (:func:`release_freed_host_memory`), so a process running many runs one after
another (``tinydistill reproduce``, a search) does not grow with the heap's fragments.
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
M_MMAP_MAX = -4
_applied: bool | None = None


def keep_freed_host_memory() -> bool:
    """Serve large allocations from the heap and keep freed ones (glibc only); True when in effect. Idempotent."""
    global _applied
    if _applied is None:
        _applied = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL("libc.so.6")
                libc.gnu_get_libc_version  # noqa: B018 — glibc only (musl has no mallopt semantics to rely on)
            except (OSError, AttributeError):
                return False
            _applied = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, 1 << 30) == 1
    return _applied


def release_freed_host_memory() -> bool:
    """Give the heap's free pages back to the OS (glibc ``malloc_trim``); True when something was released."""
    if not _applied:
        return False
    return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
