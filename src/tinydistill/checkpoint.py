"""Checkpoints: model, optimizer, scheduler and RNG (via accelerate) plus the loop's position, written atomically.

A resumed run continues from the exact micro-batch after the checkpoint, so it matches an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from accelerate import Accelerator

STATE_FILE = "trainer_state.json"


@dataclass
class LoopState:
    """Where the loop is: optimizer steps done, the next micro-batch to read, the selection bookkeeping."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    completed: bool = False
    stopped_early: bool = False
    history: list[dict] = field(default_factory=list)


def write_json_atomic(path: Path, data: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_checkpoint(accelerator: Accelerator, folder: Path, state: LoopState, keep: int,
                    save_extra: Callable[[Path], None] | None = None) -> Path:
    """Write ``folder/step-XXXXXXX`` via a temporary folder and a rename; prune older checkpoints.
    ``save_extra(folder)`` writes what accelerate does not hold (FSDP's sharded model and optimizer).

    Collective under several processes: all write into the temporary folder (each its own RNG state), the
    main process alone clears, renames and prunes (``folder`` must be on a filesystem they share).
    """
    main = accelerator.is_main_process
    final = folder / f"step-{state.step:07d}"
    tmp = folder / f".tmp-step-{state.step:07d}"
    if main:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    if save_extra is not None:
        save_extra(tmp)
    accelerator.wait_for_everyone()
    if main:
        write_json_atomic(tmp / STATE_FILE, asdict(state))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        for old in list_checkpoints(folder)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def list_checkpoints(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("step-*") if (p / STATE_FILE).is_file())


def load_latest(accelerator: Accelerator, folder: Path,
                load_extra: Callable[[Path], None] | None = None) -> LoopState | None:
    """Restore the newest complete checkpoint into the prepared objects (and ``load_extra(checkpoint)``);
    ``None`` if there is none."""
    ckpts = list_checkpoints(folder)
    if not ckpts:
        return None
    latest = ckpts[-1]
    accelerator.load_state(str(latest))
    if load_extra is not None:
        load_extra(latest)
    data = json.loads((latest / STATE_FILE).read_text())
    return LoopState(**data)
