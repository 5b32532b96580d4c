"""Run one benchmark variant in a fresh Python process (its own peak RSS and allocator state) and read its result."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
