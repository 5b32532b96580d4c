"""Checkpoints: model, optimizer, scheduler and RNG (via accelerate) plus the loop's position, written atomically.

A resumed run continues from the exact micro-batch after the checkpoint, so it matches an uninterrupted one.

On disk, ``checkpoints/step-N/`` is complete at every moment a process can be killed:

1. everything is written into ``.tmp-step-N/``, fsynced, then a completion marker (``checkpoint_complete.json``,
   the size of every file) is written last and fsynced;
2. the marked folder is renamed to ``step-N`` (an existing ``step-N`` is first renamed aside to ``.old-step-N``,
   never deleted file by file before its replacement is in place);
3. only then are older checkpoints pruned, each renamed to ``.del-step-M`` before it is deleted.

:func:`load_latest` finishes an interrupted rename, skips incomplete folders with a one-line warning and loads
the newest complete checkpoint. Folders of a version before the marker (a ``trainer_state.json``, no marker) are
still read: each is tried, newest first, until one loads.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from accelerate import Accelerator

from ..errors import TinyDistillError
from ..files import fsync_path, write_json_atomic

STATE_FILE = "trainer_state.json"
COMPLETE_FILE = "checkpoint_complete.json"  # written last: its presence (and sizes) mean "complete"
PREFIX, TMP, ASIDE, DOOMED = "step-", ".tmp-step-", ".old-step-", ".del-step-"


@dataclass
class LoopState:
    """Where the loop is: optimizer steps done, the next micro-batch to read, the selection bookkeeping,
    and each process's partial logging window (sums since the last logged step), so resumed logs match."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_metric: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    completed: bool = False
    stopped_early: bool = False
    history: list[dict] = field(default_factory=list)
    log_windows: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0  # training time up to this checkpoint, over every process start (resumes)


class CheckpointError(TinyDistillError):
    """No checkpoint of the run could be loaded although complete ones exist (e.g. the model changed)."""


def reached(point: str, path: Path) -> None:
    """A named moment of a save: ``sealing`` / ``sealed`` (before / after the marker), ``aside``, ``installed``
    (before / after the rename into place) of checkpoint ``path``; ``pruning`` (``path`` renamed for deletion,
    not yet deleted). A no-op that crash tests replace to kill the process exactly there."""


def _files(folder: Path) -> dict[str, int]:
    """Relative path → size of every file in ``folder`` except the state file and the marker."""
    skip = {STATE_FILE, STATE_FILE + ".tmp", COMPLETE_FILE, COMPLETE_FILE + ".tmp"}
    return {p.relative_to(folder).as_posix(): p.stat().st_size for p in sorted(folder.rglob("*"))
            if p.is_file() and p.relative_to(folder).as_posix() not in skip}


def _seal(folder: Path) -> None:
    """fsync every file and folder below ``folder``, then write the completion marker (last, fsynced)."""
    for p in sorted(folder.rglob("*"), reverse=True):  # files before the folders holding them
        fsync_path(p)
    fsync_path(folder)
    write_json_atomic(folder / COMPLETE_FILE, {"files": _files(folder)})


def incomplete_reason(folder: Path, *, unmarked_ok: bool = False) -> str | None:
    """Why ``folder`` is not a complete checkpoint; None if it is (or, with ``unmarked_ok``, if it has no
    marker to check: a folder written before markers existed)."""
    if not (folder / STATE_FILE).is_file():
        return f"no {STATE_FILE}"
    try:
        json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        return f"{STATE_FILE} is unreadable"
    marker = folder / COMPLETE_FILE
    if not marker.is_file():
        return None if unmarked_ok else "no completion marker"
    try:
        files = json.loads(marker.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{COMPLETE_FILE} is unreadable"
    for name, size in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} has {path.stat().st_size} bytes, {size} expected"
    return None


def _complete(folder: Path) -> bool:
    """A sealed folder; or an unsealed ``step-N``, which only a version before the marker wrote."""
    return incomplete_reason(folder, unmarked_ok=folder.name.startswith(PREFIX)) is None


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _step(path: Path) -> int:
    return int(path.name.rsplit("-", 1)[1])


def _ours(folder: Path, prefix: str) -> list[Path]:
    """The folders named ``<prefix><step>`` in ``folder``, by step."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and p.name.startswith(prefix)
             and p.name[len(prefix):].isdigit()]
    return sorted(found, key=_step)


def _remove(path: Path) -> None:
    """Delete a folder: renamed out of the ``step-`` namespace first, so a half-deleted one is never read."""
    if not path.exists():
        return
    doomed = path.with_name(DOOMED + path.name.rsplit("-", 1)[1])
    if path != doomed:
        shutil.rmtree(doomed, ignore_errors=True)
        os.replace(path, doomed)
        fsync_path(path.parent)
        reached("pruning", path)
    shutil.rmtree(doomed, ignore_errors=True)


def _install(tmp: Path, final: Path) -> None:
    """Rename the complete ``tmp`` to ``final``; an existing ``final`` is renamed aside first, deleted last."""
    aside = final.with_name(ASIDE + final.name[len(PREFIX):])
    if final.exists():
        shutil.rmtree(aside, ignore_errors=True)
        os.replace(final, aside)  # both renames are atomic; in between, aside and tmp are both complete
        reached("aside", final)
    os.replace(tmp, final)
    fsync_path(final.parent)
    reached("installed", final)
    shutil.rmtree(aside, ignore_errors=True)


def _prune(folder: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` complete checkpoints, and any leftover of an interrupted save."""
    kept = set([p for p in _ours(folder, PREFIX) if _complete(p)][-keep:])
    for old in [*(p for p in _ours(folder, PREFIX) if p not in kept), *_ours(folder, ASIDE), *_ours(folder, TMP),
                *_ours(folder, DOOMED)]:
        _remove(old)


def save_checkpoint(accelerator: Accelerator, folder: Path, state: LoopState, keep: int,
                    save_extra: Callable[[Path], None] | None = None) -> Path:
    """Write ``folder/step-XXXXXXX`` via a sealed temporary folder and a rename; then prune older checkpoints.
    ``save_extra(folder)`` writes what accelerate does not hold (FSDP's sharded model and optimizer).

    Collective under several processes: all write into the temporary folder (each its own RNG state, DeepSpeed
    its partitions, FSDP its shards), the main process alone seals, renames and prunes (``folder`` must be on a
    filesystem they share).
    """
    main = accelerator.is_main_process
    final = folder / f"{PREFIX}{state.step:07d}"
    tmp = folder / f"{TMP}{state.step:07d}"
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
        reached("sealing", final)
        _seal(tmp)
        reached("sealed", final)
        _install(tmp, final)
        _prune(folder, keep)
    accelerator.wait_for_everyone()
    return final


def mark_completed(accelerator: Accelerator, folder: Path, state: LoopState, keep: int,
                   save_extra: Callable[[Path], None] | None = None) -> Path:
    """Record ``state`` (``completed``) in the checkpoint of its step by one atomic rewrite of its state file;
    the weights are not written again. Saves a full checkpoint if that step has none. Collective."""
    final = folder / f"{PREFIX}{state.step:07d}"
    if not final.is_dir() or not _complete(final):
        return save_checkpoint(accelerator, folder, state, keep, save_extra)
    if accelerator.is_main_process:
        write_json_atomic(final / STATE_FILE, asdict(state))
        _prune(folder, keep)  # a resume that finished an interrupted save leaves the older one to remove
    accelerator.wait_for_everyone()
    return final


def list_checkpoints(folder: Path) -> list[Path]:
    """The complete ``step-N`` checkpoints (legacy ones without a marker included), oldest first."""
    return [p for p in _ours(folder, PREFIX) if _complete(p)]


def recover(folder: Path) -> None:
    """Finish a save that was killed between its steps (main process only): a sealed ``.tmp-step-N`` is
    renamed into place, a ``.old-step-N`` left without its replacement is put back."""
    for tmp in _ours(folder, TMP):
        final = folder / f"{PREFIX}{tmp.name[len(TMP):]}"
        if incomplete_reason(tmp) is None:
            _warn(f"{tmp}: finishing an interrupted checkpoint save")
            _install(tmp, final)
    for aside in _ours(folder, ASIDE):
        final = folder / f"{PREFIX}{aside.name[len(ASIDE):]}"
        if final.exists():
            shutil.rmtree(aside, ignore_errors=True)
        elif incomplete_reason(aside) is None:
            os.replace(aside, final)
            fsync_path(folder)
    for doomed in _ours(folder, DOOMED):
        shutil.rmtree(doomed, ignore_errors=True)


def newest_state(folder: Path) -> LoopState | None:
    """The loop state of the newest complete checkpoint in ``folder`` (read without loading it), else ``None``:
    where a resume will start (an interrupted save, finished on resume, may start it one checkpoint later)."""
    for ckpt in reversed(list_checkpoints(folder) if folder.is_dir() else []):
        try:
            return LoopState(**json.loads((ckpt / STATE_FILE).read_text()))
        except (OSError, ValueError, TypeError):
            continue
    return None


def load_latest(accelerator: Accelerator, folder: Path,
                load_extra: Callable[[Path], None] | None = None) -> LoopState | None:
    """Restore the newest complete checkpoint into the prepared objects (and ``load_extra(checkpoint)``);
    ``None`` if there is none. Incomplete ones are skipped with a one-line warning. Collective.

    A folder that no marker was ever written into comes from an older version, which wrote ``trainer_state.json``
    last: every folder holding one is tried, newest first, until one loads."""
    main = accelerator.is_main_process
    if main and folder.is_dir():
        recover(folder)
    accelerator.wait_for_everyone()
    candidates = [*_ours(folder, PREFIX), *_ours(folder, TMP)]
    legacy = not any((p / COMPLETE_FILE).is_file() for p in candidates)
    failed: list[str] = []
    for ckpt in sorted(candidates, key=lambda p: (_step(p), p.name.startswith(PREFIX)), reverse=True):
        unmarked = not (ckpt / COMPLETE_FILE).is_file()
        reason = incomplete_reason(ckpt, unmarked_ok=legacy or ckpt.name.startswith(PREFIX))
        if reason is not None:
            if main:
                _warn(f"{ckpt}: incomplete checkpoint ({reason}); skipped")
            continue
        try:
            accelerator.load_state(str(ckpt))
            if load_extra is not None:
                load_extra(ckpt)
        except Exception as e:  # a sealed checkpoint that does not load is an error; an unsealed one is skipped
            first = str(e).splitlines()[0] if str(e) else ""
            message = f"{ckpt}: cannot be loaded ({type(e).__name__}: {first})"
            if not unmarked:
                raise CheckpointError(f"{message}; delete it or choose another run name") from e
            if main:
                _warn(f"{message}; skipped")
            if ckpt.name.startswith(PREFIX):
                failed.append(message)
            continue
        return LoopState(**json.loads((ckpt / STATE_FILE).read_text()))
    if failed:
        raise CheckpointError(f"{failed[0]}; no older checkpoint loads either")
    return None
