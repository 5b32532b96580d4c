"""One request's choices on the engine, as events on the event loop: text deltas and finish reasons.

Tokens are detokenised incrementally (only when streaming or when stop strings must be watched), a stop string
ends its choice as soon as it appears, and leaving :meth:`Run.events` early - a client that went away, an
error - cancels every choice still generating.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from typing import Any

from .engine import LENGTH, TIME_LIMIT, Busy, Engine, Job, Stopped
from .errors import APIError

POLL_S = 0.25  # how often a waiting request checks that its client is still there


class ClientGone(Exception):
    """The client closed the connection; its generation was cancelled."""


class Text:
    """A choice's text as its tokens arrive; a possible start of a stop string is held back until it is safe."""

    def __init__(self, tokenizer: Any, stops: Sequence[str]) -> None:
        self.tokenizer, self.stops = tokenizer, list(stops)
        self.ids: list[int] = []
        self._prefix = self._read = 0  # ids[_prefix:_read] decode to the text already taken
        self.text = ""
        self.sent = 0
        self.stopped = False

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def push(self, token: int) -> None:
        self.ids.append(token)
        before, after = self._decode(self.ids[self._prefix : self._read]), self._decode(self.ids[self._prefix :])
        if len(after) <= len(before) or after.endswith("\ufffd"):  # nothing new yet, or half a character
            return
        self.text += after[len(before) :]
        self._prefix, self._read = self._read, len(self.ids)
        if not self.sent:
            self.text = self.text.lstrip()
        hits = [self.text.find(s) for s in self.stops if s in self.text]
        if hits:
            self.text, self.stopped = self.text[: min(hits)], True

    def take(self, final: bool = False) -> str:
        """The text not handed out yet that can no longer turn out to start a stop string."""
        end = len(self.text)
        if self.stops and not (final or self.stopped):
            end = max(self.sent, end - max(len(s) for s in self.stops) + 1)
        out, self.sent = self.text[self.sent : end], end
        return out


def final_text(tokenizer: Any, tokens: list[int], stops: Sequence[str]) -> str:
    """A finished choice's whole text, cut before the first stop string."""
    text = tokenizer.decode(tokens, skip_special_tokens=True).strip()
    cuts = [text.index(s) for s in stops if s in text]
    return text[: min(cuts)] if cuts else text


class Run:
    """The jobs of one request (prompts × n); :meth:`events` yields ``(choice, delta, finish)``."""

    def __init__(
        self,
        engine: Engine,
        tokenizer: Any,
        prompts: Sequence[list[int]],
        *,
        n: int,
        max_new: int,
        temperature: float,
        top_p: float,
        seed: int,
        stops: Sequence[str],
        timeout_s: float,
        grace_s: float,
        incremental: bool,
    ) -> None:
        self.engine, self.tokenizer, self.stops = engine, tokenizer, list(stops)
        loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[int, str, Any]] = asyncio.Queue()
        self.deadline = time.monotonic() + timeout_s
        self.give_up = self.deadline + grace_s  # a generator that never answers is a 504, not a hang
        self.jobs = [
            Job(ids, max_new, temperature, top_p, seed + k, self.deadline, partial(self._post, loop, p * n + k))
            for p, ids in enumerate(prompts)
            for k in range(n)
        ]
        self.prompts = list(prompts)
        self.incremental = incremental
        self.texts = [Text(tokenizer, stops) if incremental else None for _ in self.jobs]
        self.finish: list[str | None] = [None] * len(self.jobs)
        self.timed_out = 0

    def _post(self, loop: asyncio.AbstractEventLoop, index: int, kind: str, value: Any) -> None:
        if kind == "token" and not self.incremental:  # a plain reply reads the tokens once, at the end
            return
        with contextlib.suppress(RuntimeError):  # the event loop has closed: the server is stopping
            loop.call_soon_threadsafe(self.queue.put_nowait, (index, kind, value))

    def start(self) -> None:
        try:
            self.engine.submit(self.jobs)
        except Busy as e:
            raise APIError(429, f"the server is busy: {e}; retry shortly", code="server_busy",
                           headers={"retry-after": "1"}) from e
        except Stopped as e:
            raise APIError(503, str(e), code="not_ready") from e

    def cancel(self) -> None:
        for j in self.jobs:
            j.cancel()

    def text(self, index: int) -> str:
        return final_text(self.tokenizer, self.jobs[index].tokens, self.stops)

    async def events(
        self, disconnected: Callable[[], Awaitable[bool]] | None = None
    ) -> AsyncIterator[tuple[int, str, str | None]]:
        """``(choice, new text, None)`` as text arrives, then ``(choice, rest, finish_reason)`` once each.

        ``disconnected`` is polled while waiting (for a plain reply; a streamed one is cancelled by Starlette).
        """
        pending = len(self.jobs)
        check_at = time.monotonic() + POLL_S
        try:
            while pending:
                try:
                    item = await asyncio.wait_for(self.queue.get(), max(0.0, check_at - time.monotonic()))
                except TimeoutError:
                    item = None
                if time.monotonic() >= check_at:
                    check_at = time.monotonic() + POLL_S
                    if disconnected is not None and await disconnected():
                        raise ClientGone
                    if time.monotonic() > self.give_up:
                        raise APIError(504, "the generator did not answer within the time limit", code="timeout")
                if item is None:
                    continue
                index, kind, value = item
                if self.finish[index] is not None:  # already ended by a stop string
                    continue
                text = self.texts[index]
                if kind == "error":
                    raise APIError(500, value, code="generation_failed")
                if kind == "token":
                    assert text is not None  # tokens are streamed to incremental requests only
                    text.push(value)
                    if not text.stopped:
                        if delta := text.take():
                            yield index, delta, None
                        continue
                    self.jobs[index].cancel()
                    reason = "stop"
                else:
                    self.timed_out += value == TIME_LIMIT
                    reason = "length" if value in (LENGTH, TIME_LIMIT) else "stop"
                self.finish[index] = reason
                pending -= 1
                yield index, text.take(final=True) if text is not None else "", reason
        finally:
            self.cancel()
