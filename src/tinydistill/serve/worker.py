"""The part the serving workers (:class:`.engine.Engine`, :class:`.scoring.Scorer`) share: one daemon thread owns
the model and waits on a condition until there is work or the worker is closed."""

from __future__ import annotations

import threading


class ModelThread:
    """A worker whose ``_thread`` waits on ``_cv`` and stops once ``_closed`` (the subclass sets all three)."""

    _cv: threading.Condition
    _closed: bool
    _thread: threading.Thread

    def close(self) -> None:
        """Mark the worker closed, wake its thread and wait for it to end (at most 10 s)."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout=10)
