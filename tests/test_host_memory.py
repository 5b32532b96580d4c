"""Freed large host blocks are kept for reuse: a repeated 64 MB allocation stops page-faulting; after a run they
are given back."""

import subprocess
import sys

import pytest

SCRIPT = """
import resource, torch
from tinydistill.training.host_memory import keep_freed_host_memory

def faults_of_five_steps():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        torch.empty(16 * 1024 * 1024).fill_(1.0)  # 64 MB: above glibc's largest mmap threshold; freed at once
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

plain = faults_of_five_steps()
applied = keep_freed_host_memory()
faults_of_five_steps(), faults_of_five_steps()  # the heap grows to the working set once
kept = faults_of_five_steps()
print(applied, plain, kept)
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_large_blocks_are_reused_instead_of_faulted_in_each_step():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True).stdout.split()
    applied, plain, kept = out[0] == "True", int(out[1]), int(out[2])
    if not applied:
        pytest.skip("not glibc")
    assert plain > 5 * 10_000  # each fresh 64 MB block faulted in again: ~16k pages a step
    assert kept < plain / 20, (plain, kept)


RELEASE = """
import torch
from tinydistill.training.host_memory import keep_freed_host_memory, release_freed_host_memory

def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

applied = keep_freed_host_memory()
blocks = [torch.ones(16 * 1024 * 1024) for _ in range(8)]  # 512 MB on the heap
keep = torch.ones(1024)  # allocated after them: the heap's top stays in use, so free blocks cannot be cut off it
del blocks
held = rss_mb()
released = release_freed_host_memory()
print(applied, released, held, rss_mb())
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim")
def test_freed_blocks_go_back_to_the_os_after_a_run():
    out = subprocess.run([sys.executable, "-c", RELEASE], capture_output=True, text=True, check=True).stdout.split()
    if out[0] != "True":
        pytest.skip("not glibc")
    held, after = float(out[2]), float(out[3])
    assert out[1] == "True" and held > after + 400, (held, after)  # the 512 MB kept, then returned
