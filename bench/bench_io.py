"""Benchmarks' plumbing: one variant in a fresh Python process (its own peak RSS and allocator state), and the
results JSON with the environment it was measured in."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

PREFIX = "RESULT "


def report(result: dict) -> None:
    """In the worker: hand the result back to the parent (one stdout line)."""
    print(PREFIX + json.dumps(result), flush=True)


def run_worker(script: str, args: list[str], what: str) -> dict:
    """Run ``python script *args`` offline and return the dict its worker reported; stderr's tail on failure."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, env=env)
    line = next((x for x in proc.stdout.splitlines() if x.startswith(PREFIX)), None)
    if proc.returncode or line is None:
        raise RuntimeError(f"{what} failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[len(PREFIX):])


def write_results(path: Path | None, results: dict) -> None:
    """``results`` plus python, torch and machine, as indented JSON at ``path`` (nothing when ``path`` is None)."""
    if path is None:
        return
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    env = {"python": sys.version.split()[0], "torch": torch.__version__, "machine": platform.machine()}
    path.write_text(json.dumps({**results, **env}, indent=2) + "\n")
