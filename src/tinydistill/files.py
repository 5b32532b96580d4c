"""Plain file I/O: atomic JSON writes and forgiving JSON / JSONL reads. No tinydistill imports (a leaf)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def fsync_path(path: Path) -> None:
    """Flush a file (or a folder's entries) to disk; folders that cannot be opened or synced are skipped."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if path.is_dir():  # e.g. Windows: folders cannot be opened; their renames are durable by other means
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not path.is_dir():  # some network filesystems refuse fsync on a folder (EINVAL)
            raise
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: object) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file, fsync and one ``os.replace``."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)


def read_json(path: Path) -> dict | None:
    """The JSON object in ``path``; None if the file is missing or not valid JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except json.JSONDecodeError:
        return None


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a JSON-lines file (blank lines skipped); [] if the file is missing."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
