"""SQLite store of teacher outputs, shared safely by threads and processes.

Each output is keyed by (teacher, model, revision, full prompt, generation parameters, sample index) and
written in its own committed transaction (WAL mode), so a ``kill -9`` loses at most the calls in flight and
nothing stored is ever requested again. Processes sharing one file split the work through short leases: a
key is claimed before its call; a lease whose owner died (same host) or expired is taken over.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..files import pid_alive

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outputs (
    key TEXT PRIMARY KEY,
    teacher TEXT NOT NULL,
    model TEXT NOT NULL,
    revision TEXT,
    params TEXT NOT NULL,
    prompt TEXT NOT NULL,
    sample INTEGER NOT NULL,
    text TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    finish_reason TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (key TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL);
"""


@dataclass(frozen=True)
class CachedOutput:
    """One stored generation."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str


@dataclass
class CacheStats:
    """Counters of this process: new outputs stored (calls), lookups served from the store (hits), tokens."""

    calls: int = 0
    hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def make_key(
    teacher: str, model: str, revision: str | None, prompt: str, params: Mapping[str, Any], sample: int
) -> str:
    """Stable hash of everything that determines an output."""
    blob = json.dumps(
        [teacher, model, revision, prompt, dict(params), sample], sort_keys=True, ensure_ascii=False
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _retry_while_busy(statement: Any, deadline_s: float = 60.0) -> Any:
    """Run ``statement()`` again while SQLite answers "locked".

    Several processes opening a new file at once race to switch it to WAL; SQLite then answers
    ``database is locked`` at once, without waiting on the busy timeout, so the wait is done here.
    """
    give_up = time.monotonic() + deadline_s
    pause = 0.005
    while True:
        try:
            return statement()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > give_up:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.25)


class TeacherCache:
    """Teacher outputs in one SQLite file (``runs/<name>/cache.sqlite``)."""

    def __init__(self, path: str | Path, *, lease_s: float = 3600.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lease_s = lease_s
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stats = CacheStats()
        self._lock = threading.Lock()
        # autocommit; explicit BEGIN IMMEDIATE where several statements must be atomic
        self._db = sqlite3.connect(
            str(self.path), timeout=60.0, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA busy_timeout=60000")
        _retry_while_busy(lambda: self._db.execute("PRAGMA journal_mode=WAL"))
        # NORMAL in WAL mode: every commit survives a process crash (kill -9); power loss may lose the last
        self._db.execute("PRAGMA synchronous=NORMAL")
        with self._lock:
            _retry_while_busy(lambda: self._db.executescript(_SCHEMA))

    # ------------------------------------------------------------------------------------------- reads
    def get_many(self, keys: Sequence[str]) -> dict[str, CachedOutput]:
        """Stored outputs among ``keys`` (counted as hits)."""
        out: dict[str, CachedOutput] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = list(keys[i : i + 500])
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key, text, prompt_tokens, completion_tokens, finish_reason FROM outputs "
                    f"WHERE key IN ({marks})",
                    chunk,
                ).fetchall()
                for k, text, pt, ct, fr in rows:
                    out[k] = CachedOutput(text, pt, ct, fr)
            self.stats.hits += len(out)
        return out

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM outputs").fetchone()[0]

    def totals(self) -> dict[str, int]:
        """Whole-store counts: outputs and tokens ever stored (all processes, all runs)."""
        with self._lock:
            n, pt, ct = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0) "
                "FROM outputs"
            ).fetchone()
        return {"outputs": n, "prompt_tokens": pt, "completion_tokens": ct}

    # ------------------------------------------------------------------------------------------ writes
    def put(
        self,
        key: str,
        *,
        teacher: str,
        model: str,
        revision: str | None,
        params: Mapping[str, Any],
        prompt: str,
        sample: int,
        text: str,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        finish_reason: str = "stop",
    ) -> bool:
        """Store one output and drop its lease in one transaction. ``False`` if it was already stored."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO outputs VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        key,
                        teacher,
                        model,
                        revision,
                        json.dumps(dict(params), sort_keys=True),
                        prompt,
                        sample,
                        text,
                        prompt_tokens,
                        completion_tokens,
                        finish_reason,
                        time.time(),
                    ),
                )
                self._db.execute("DELETE FROM leases WHERE key = ?", (key,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            inserted = cur.rowcount == 1
            if inserted:
                self.stats.calls += 1
                self.stats.prompt_tokens += prompt_tokens
                self.stats.completion_tokens += completion_tokens
        return inserted

    # ------------------------------------------------------------------------------------------ leases
    def _lease_dead(self, owner: str, expires: float, now: float) -> bool:
        if owner == self.owner or expires < now:
            return True
        host, pid, _ = owner.split(":", 2)
        return host == socket.gethostname() and int(pid) != os.getpid() and not pid_alive(int(pid))

    def claim(self, keys: Iterable[str]) -> list[str]:
        """Lease the keys not yet stored and not held by a live owner; returns the keys now ours."""
        now = time.time()
        mine: list[str] = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for key in keys:
                    if self._db.execute("SELECT 1 FROM outputs WHERE key = ?", (key,)).fetchone():
                        continue
                    row = self._db.execute(
                        "SELECT owner, expires FROM leases WHERE key = ?", (key,)
                    ).fetchone()
                    if row is None or self._lease_dead(row[0], row[1], now):
                        self._db.execute(
                            "INSERT OR REPLACE INTO leases VALUES (?,?,?)",
                            (key, self.owner, now + self.lease_s),
                        )
                        mine.append(key)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return mine

    def release(self, keys: Iterable[str]) -> None:
        """Give back leases of ours that were not fulfilled (e.g. after an error)."""
        with self._lock:
            self._db.executemany(
                "DELETE FROM leases WHERE key = ? AND owner = ?", [(k, self.owner) for k in keys]
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> TeacherCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
