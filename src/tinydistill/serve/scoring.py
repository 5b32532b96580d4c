"""The scorer of a multiple-choice student: one thread owns the model and scores (first, second) text pairs.

Requests queue their pairs; each forward pass takes up to ``chunk`` pairs from every waiting request in turn
(round-robin) until ``max_batch`` pairs, so a request with many documents shares the model with small ones instead
of holding it until it is done. Pairs are tokenised on this thread (never on the event loop), after each text is
cut to what the model can read (``max_length`` tokens is at most a few characters per token).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..students import ChoiceStudent, encoder_inputs
from .engine import Busy, Stopped
from .worker import ModelThread

log = logging.getLogger("tinydistill.serve")

#: characters kept of a text before tokenising: no tokenizer spends fewer than one character per token on real
#: text, so ``CHARS_PER_TOKEN * max_length`` characters hold every token the model can read
CHARS_PER_TOKEN = 16


@dataclass(eq=False)
class ScoreJob:
    """One request's pairs; ``scores`` and ``tokens`` fill in as chunks are scored."""

    firsts: list[str]
    seconds: list[str]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    scores: list[float] = field(default_factory=list)
    tokens: int = 0
    next: int = 0

    def __len__(self) -> int:
        return len(self.firsts)


class Scorer(ModelThread):
    """Owns ``student`` on one thread; ``await score(firsts, seconds)`` → one score per pair."""

    def __init__(self, student: ChoiceStudent, *, prefix: str, max_length: int, max_batch: int = 32,
                 chunk: int = 8, max_queue: int = 4096) -> None:
        self.student, self.prefix, self.max_length = student, prefix, max_length
        self.max_batch, self.chunk, self.max_queue = max_batch, chunk, max_queue
        self.tokenizer = student.tokenizer
        self.tokenizer.truncation_side = "left"  # a long question loses its start, as in training
        self._jobs: deque[ScoreJob] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self.queued = 0  # pairs waiting
        self.batches = 0
        self.beat = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="tinydistill-serve-scorer", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------------------------- other threads
    async def score(self, firsts: Sequence[str], seconds: Sequence[str]) -> tuple[list[float], int]:
        """(one score per (firsts[i], seconds[i]) pair, tokens read); :class:`Busy` when the queue is full."""
        loop = asyncio.get_running_loop()
        cap = CHARS_PER_TOKEN * self.max_length
        job = ScoreJob([(self.prefix + f)[-cap:] for f in firsts], [s[:cap] for s in seconds], loop,
                       loop.create_future())
        with self._cv:
            if self._closed:
                raise Stopped("the scorer has stopped")
            if self.queued + len(job) > self.max_queue:
                raise Busy(f"{self.queued} pairs are waiting (the limit is {self.max_queue})")
            if not self._jobs:
                self.beat = time.monotonic()
            self._jobs.append(job)
            self.queued += len(job)
            self._cv.notify()
        try:
            return await job.future
        finally:
            if not job.future.done():
                job.future.cancel()

    def status(self) -> dict[str, Any]:
        return {"alive": self._thread.is_alive(), "active": len(self._jobs), "queued": self.queued,
                "batches": self.batches, "since_progress_s": round(time.monotonic() - self.beat, 3)}

    def stuck(self, stall_s: float) -> str | None:
        s = self.status()
        if not s["alive"]:
            return "the scorer thread has stopped"
        if s["queued"] and s["since_progress_s"] > stall_s:
            return f"no batch scored for {s['since_progress_s']:.1f} s with {s['queued']} pairs waiting"
        return None

    # ----------------------------------------------------------------------------------- scorer thread
    def _take(self) -> list[tuple[ScoreJob, int, int]]:
        """Up to ``max_batch`` pairs, ``chunk`` at a time from each waiting request in turn: (job, start, end)."""
        with self._cv:
            while not self._jobs and not self._closed:
                self._cv.wait()
            if self._closed:
                return []
            for j in [j for j in self._jobs if j.future.cancelled()]:  # the client went away
                self._jobs.remove(j)
                self.queued -= len(j) - j.next
            taken: list[tuple[ScoreJob, int, int]] = []
            room = self.max_batch
            while room > 0 and any(j.next < len(j) for j in self._jobs):
                for j in self._jobs:
                    end = min(len(j), j.next + self.chunk, j.next + room)
                    if end > j.next:
                        taken.append((j, j.next, end))
                        room -= end - j.next
                        j.next = end
                    if room <= 0:
                        break
            self.queued -= sum(end - start for _, start, end in taken)
            return taken

    def _run(self) -> None:
        while True:
            taken = self._take()
            if not taken:
                break
            try:
                scores, tokens = self._forward([(j.firsts[a:b], j.seconds[a:b]) for j, a, b in taken])
            except Exception as e:  # noqa: BLE001 - reported to each request in the batch, logged with its traceback
                log.exception("scoring failed")
                for j, _, _ in taken:
                    self._settle(j, error=RuntimeError(f"scoring failed: {type(e).__name__}: {e}"))
                continue
            for (j, _, b), s, t in zip(taken, scores, tokens, strict=True):
                j.scores.extend(s)  # chunks of one job are taken in order and never overlap
                j.tokens += t
                if b == len(j):
                    self._settle(j)
            with self._cv:
                self._jobs = deque(j for j in self._jobs if j.next < len(j))
                self.batches += 1
                self.beat = time.monotonic()
        with self._cv:
            left = list(self._jobs)
        for j in left:
            self._settle(j, error=Stopped("the server is shutting down"))

    def _settle(self, job: ScoreJob, error: BaseException | None = None) -> None:
        def done() -> None:
            if job.future.done():
                return
            if error is not None:
                job.future.set_exception(error)
            else:
                job.future.set_result((job.scores, job.tokens))

        with contextlib.suppress(RuntimeError):  # the event loop is closed (shutdown)
            job.loop.call_soon_threadsafe(done)

    def _forward(self, parts: list[tuple[list[str], list[str]]]) -> tuple[list[list[float]], list[int]]:
        firsts = [f for fs, _ in parts for f in fs]
        seconds = [s for _, ss in parts for s in ss]
        enc = self._encode(firsts, seconds)
        batch = {k: v[:, None] for k, v in enc.items()}  # (pairs, 1 choice, tokens)
        batch["choice_mask"] = torch.ones((len(firsts), 1), dtype=torch.bool)
        device = self.student.model.device
        with torch.inference_mode():
            flat = self.student.choice_scores({k: v.to(device) for k, v in batch.items()})[:, 0].tolist()
        lengths = enc["attention_mask"].sum(-1).tolist()
        scores, tokens, at = [], [], 0
        for fs, _ in parts:
            scores.append(flat[at:at + len(fs)])
            tokens.append(int(sum(lengths[at:at + len(fs)])))
            at += len(fs)
        return scores, tokens

    def _encode(self, firsts: list[str], seconds: list[str]) -> dict[str, torch.Tensor]:
        kw = dict(padding=True, max_length=self.max_length, return_token_type_ids=True, return_tensors="pt")
        try:
            enc = self.tokenizer(firsts, seconds, truncation="only_first", **kw)
        except Exception:  # noqa: BLE001 - tokenizers raises a bare Exception when the first text cannot absorb the cut
            enc = self.tokenizer(firsts, seconds, truncation="longest_first", **kw)
        return encoder_inputs(enc)
