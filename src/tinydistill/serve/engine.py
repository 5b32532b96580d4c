"""The generator: one thread owns the model and advances every running request by one token per step.

Requests that arrive together are prefilled as one batch (a *group*). Each pass of the loop gives every group
one decode step in turn, so a small request finishes in about its own number of steps while a huge one runs;
a row that is cancelled (the client went away), hits its time limit, an EOS or its ``max_new`` leaves its
group at once, and its key/value cache rows are dropped.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from transformers.cache_utils import DynamicCache, DynamicLayer

from .worker import ModelThread

log = logging.getLogger("tinydistill.serve")

#: Groups whose lengths differ by at most this (or a quarter of the longer) are merged into one batch.
MERGE_SLACK = 64

#: Below this temperature a row is decoded greedily (dividing logits by it would overflow).
MIN_TEMPERATURE = 1e-4

#: Why a row stopped: an EOS token, ``max_new`` tokens, the request's time limit, or a cancel.
STOP, LENGTH, TIME_LIMIT, CANCELLED = "stop", "length", "time_limit", "cancelled"


def _ignore(kind: str, value: Any) -> None:
    return None


@dataclass(eq=False)
class Job:
    """One choice of one request. ``on_event(kind, value)`` is called on the generator thread with
    ``("token", id)``, then once ``("done", reason)`` or ``("error", message)``."""

    prompt_ids: list[int]
    max_new: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    deadline: float = math.inf  # time.monotonic() past which the row stops with TIME_LIMIT
    on_event: Callable[[str, Any], None] = _ignore
    tokens: list[int] = field(default_factory=list)
    cancelled: bool = False
    finished: bool = False
    owner: int = 0  # the request (one call of Engine.submit) this row belongs to
    _generator: torch.Generator | None = None

    def cancel(self) -> None:
        """Stop generating at the next step (safe from any thread; a no-op once finished)."""
        self.cancelled = True

    def _finish(self, kind: str, value: Any) -> None:
        if not self.finished:
            self.finished = True
            self.on_event(kind, value)


class Busy(Exception):
    """The waiting queue is full."""


class Stopped(Exception):
    """The generator has stopped (closed, or failed outside any one request)."""


@dataclass(eq=False)
class _Group:
    jobs: list[Job]
    mask: torch.Tensor  # (B, T) causal: attention mask so far; seq2seq: the encoder's
    past: Any = None  # the model's key/value cache, batch dim aligned with ``jobs``
    pos: Any = None  # (B, 1) tensor, causal: position of the last token (set at prefill)
    encoded: Any = None  # seq2seq: encoder outputs
    last: Any = None  # (B,) tensor: the tokens sampled at the previous step (set after prefill)

    def length(self) -> int:
        return self.mask.shape[1]

    def absorb(self, other: _Group) -> None:
        """Append ``other``'s rows (causal groups with plain caches): the shorter side is padded on the left."""
        width = max(self.length(), other.length())

        def joined(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # (B, heads, T, head_dim) each
            return torch.cat([F.pad(x, (0, 0, width - x.shape[-2], 0)) for x in (a, b)])

        layers = [
            (joined(mine.keys, theirs.keys), joined(mine.values, theirs.values))
            for mine, theirs in zip(self.past.layers, other.past.layers, strict=True)
        ]  # all built before any is replaced: a failure leaves both groups as they were
        for layer, (keys, values) in zip(self.past.layers, layers, strict=True):
            layer.keys, layer.values = keys, values
        self.mask = torch.cat([F.pad(m, (width - m.shape[1], 0)) for m in (self.mask, other.mask)])
        self.pos = torch.cat([self.pos, other.pos])
        self.last = torch.cat([self.last, other.last])
        self.jobs = self.jobs + other.jobs
        other.jobs = []

    def select(self, keep: list[int]) -> None:
        """Keep only the rows ``keep`` (indices into ``jobs``) in every per-row tensor and the cache."""
        idx = torch.tensor(keep, dtype=torch.long, device=self.mask.device)
        self.jobs = [self.jobs[i] for i in keep]
        self.past.batch_select_indices(idx)
        self.mask = self.mask[idx]
        self.last = self.last[idx]
        if self.pos is not None:
            self.pos = self.pos[idx]
        if self.encoded is not None:
            self.encoded.last_hidden_state = self.encoded.last_hidden_state[idx]


class Engine(ModelThread):
    """Owns ``model`` on one thread; :meth:`submit` queues jobs, :meth:`status` reports its progress."""

    def __init__(
        self,
        model: Any,  # a transformers generating model
        *,
        pad_id: int,
        eos_ids: Sequence[int],
        max_batch: int = 16,
        max_active: int = 64,
        max_queue: int = 1024,
        wait_s: float = 0.005,
        max_wait_s: float = 0.05,
        fair: bool = True,
    ) -> None:
        self.model = model
        self.fair = fair  # False: first come, first served up to max_active (the bench's baseline)
        self.pad_id, self.eos_ids = pad_id, set(eos_ids)
        self.is_encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
        gc = model.generation_config
        start = gc.decoder_start_token_id if gc.decoder_start_token_id is not None else pad_id
        self.start_id = int(start[0] if isinstance(start, list) else start)
        self.device = next(model.parameters()).device
        # transformers 5.x renamed the key/value cache argument ``past_key_values`` → ``cache``
        self._cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        self.max_batch, self.max_active, self.max_queue = max_batch, max_active, max_queue
        self.wait_s, self.max_wait_s = wait_s, max_wait_s
        self.reserve = max_active // 4  # rows beyond max_active open only to other requests
        self._owners = itertools.count(1)
        self._waiting: deque[Job] = deque()
        self._groups: list[_Group] = []
        self._cv = threading.Condition()
        self._closed = False
        self.active = 0  # rows being generated
        self.steps = 0  # passes of the loop (each gives every group one forward pass)
        self.batches = 0  # groups prefilled
        self.merges = 0  # groups folded into another
        self.merging = not self.is_encoder_decoder  # a seq2seq decoder's positions would shift under padding
        self.beat = time.monotonic()  # when the loop last made progress (or went idle)
        self._thread = threading.Thread(target=self._run, name="tinydistill-serve-engine", daemon=True)
        self._thread.start()

    # ----------------------------------------------------------------------------------- other threads
    def submit(self, jobs: Sequence[Job]) -> None:
        """Queue ``jobs`` (one request's choices); :class:`Busy` if the queue cannot take them."""
        with self._cv:
            if self._closed:
                raise Stopped("the generator has stopped")
            if len(self._waiting) + len(jobs) > self.max_queue:
                raise Busy(f"{len(self._waiting)} rows are waiting (the limit is {self.max_queue})")
            if not self._waiting and not self.active:
                self.beat = time.monotonic()  # an idle loop is not a stuck one
            owner = next(self._owners)
            for j in jobs:
                j.owner = owner
            self._waiting.extend(jobs)
            self._cv.notify()

    def status(self) -> dict[str, Any]:
        """Rows generating and waiting, forward passes so far, seconds since the loop last progressed."""
        return {
            "alive": self._thread.is_alive(),
            "active": self.active,
            "queued": len(self._waiting),
            "steps": self.steps,
            "batches": self.batches,
            "merges": self.merges,
            "since_progress_s": round(time.monotonic() - self.beat, 3),
        }

    def stuck(self, stall_s: float) -> str | None:
        """Why the generator is not ready (dead, or work pending and no progress for ``stall_s``), else None."""
        s = self.status()
        if not s["alive"]:
            return "the generator thread has stopped"
        if (s["active"] or s["queued"]) and s["since_progress_s"] > stall_s:
            return (
                f"no generation step for {s['since_progress_s']:.1f} s "
                f"with {s['active']} rows running and {s['queued']} waiting"
            )
        return None

    # --------------------------------------------------------------------------------- generator thread
    def _take(self) -> list[Job]:
        """New rows to start (at most ``max_batch``, within ``max_active``); blocks while there is nothing to do."""
        with self._cv:
            while not self._waiting and not self._groups and not self._closed:
                self._cv.wait()
            if not self._groups:  # idle: gather a wave (clients send together) until it pauses for wait_s
                end, seen = time.monotonic() + self.max_wait_s, len(self._waiting)
                while len(self._waiting) < self.max_batch and not self._closed and time.monotonic() < end:
                    self._cv.wait(min(self.wait_s, max(0.0, end - time.monotonic())))
                    if len(self._waiting) == seen:
                        break
                    seen = len(self._waiting)
            self.beat = time.monotonic()
            taken = self._admit()
        for j in taken:
            if j.cancelled:
                j._finish("done", CANCELLED)
        return [j for j in taken if not j.finished]

    def _admit(self) -> list[Job]:
        """Waiting rows to start now, one request at a time in turn (round-robin), at most ``max_batch``.

        One request may run ``max_active`` rows; the ``reserve`` rows above that are open only to the others, so a
        short request starts at the next step even while a maximal one holds ``max_active`` rows."""
        if not self.fair:
            room = min(self.max_batch, self.max_active - self.active, len(self._waiting))
            return [self._waiting.popleft() for _ in range(max(0, room))]
        running = Counter(j.owner for g in self._groups for j in g.jobs)
        total = sum(running.values())
        queues: dict[int, deque[Job]] = {}
        for j in self._waiting:
            queues.setdefault(j.owner, deque()).append(j)
        taken: list[Job] = []
        progress = True
        while progress and len(taken) < self.max_batch:
            progress = False
            for owner, queue in queues.items():
                if not queue or len(taken) >= self.max_batch:
                    continue
                own = running[owner]
                if own >= self.max_active or total >= self.max_active + self.reserve:
                    continue
                if total >= self.max_active and own >= max(running.values(), default=0) and own > 0:
                    continue  # the reserve goes to requests with fewer rows running
                taken.append(queue.popleft())
                running[owner] += 1
                total += 1
                progress = True
        if taken:
            chosen = set(map(id, taken))
            self._waiting = deque(j for j in self._waiting if id(j) not in chosen)
        return taken

    def _run(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # a fault outside any one group: fail every request now rather than hang them
            log.exception("the generator stopped")
            message = f"the generator stopped: {type(e).__name__}: {e}"
        else:
            message = "the server is shutting down"
        with self._cv:
            left = [j for g in self._groups for j in g.jobs] + list(self._waiting)
            self._closed = True
        for j in left:
            j._finish("error", message)

    def _loop(self) -> None:
        while True:
            new = self._take()
            if self._closed:
                break
            self.active = sum(len(g.jobs) for g in self._groups) + len(new)  # before a prefill that may hang
            if new:
                self._guarded(new, None)
                if self.merging:
                    try:
                        self._merge()
                    except Exception:  # noqa: BLE001 - a cache layout we did not foresee: keep the groups apart
                        log.exception("merging batches failed; generating them separately from now on")
                        self.merging = False
            for g in list(self._groups):
                self._guarded(g.jobs, g)
            self._groups = [g for g in self._groups if g.jobs]
            self.active = sum(len(g.jobs) for g in self._groups)
            self.steps += 1
            self.beat = time.monotonic()

    def _guarded(self, jobs: list[Job], group: _Group | None) -> None:
        """Prefill ``jobs`` (group None) or step ``group``; an error fails that group's rows, not the server."""
        try:
            with torch.inference_mode():
                self._prefill(jobs) if group is None else self._step(group)
        except Exception as e:  # noqa: BLE001 - reported to each waiting request, logged with its traceback
            log.exception("generation failed")
            if group is not None:
                group.jobs = []
            for j in jobs:
                j._finish("error", f"generation failed: {type(e).__name__}: {e}")

    def _merge(self) -> None:
        """Fold causal groups of similar length into one batch (fewer forward passes per step). Caches other than
        a plain DynamicCache stay apart (seq2seq models never merge), and no group is padded to a much longer one."""
        plain = [g for g in self._groups if _plain(g.past)]
        plain.sort(key=lambda g: g.length())
        for shorter, longer in zip(plain, plain[1:], strict=False):
            width = longer.length()
            if width - shorter.length() <= max(MERGE_SLACK, width // 4):
                longer.absorb(shorter)
                self.merges += 1
        self._groups = [g for g in self._groups if g.jobs]

    def _prefill(self, jobs: list[Job]) -> None:
        self.batches += 1
        rows = [j.prompt_ids for j in jobs]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):  # causal: pad on the left, so every row continues at the right edge
            span = slice(0, len(r)) if self.is_encoder_decoder else slice(width - len(r), width)
            ids[i, span] = torch.tensor(r, dtype=torch.long)
            mask[i, span] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        g = _Group(jobs, mask=mask)
        if self.is_encoder_decoder:
            g.encoded = self.model.get_encoder()(input_ids=ids, attention_mask=mask, return_dict=True)
            start = torch.full((len(rows), 1), self.start_id, dtype=torch.long, device=self.device)
            out = self.model(encoder_outputs=g.encoded, attention_mask=mask, decoder_input_ids=start, use_cache=True)
        else:
            pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)  # as transformers' generate does
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
            g.pos = pos[:, -1:]
        g.past = _cache_of(out)
        self._advance(g, out.logits[:, -1, :])
        if g.jobs:
            self._groups.append(g)

    def _step(self, g: _Group) -> None:
        now = time.monotonic()
        keep = []
        for i, j in enumerate(g.jobs):
            if j.cancelled or now >= j.deadline:
                j._finish("done", CANCELLED if j.cancelled else TIME_LIMIT)
            else:
                keep.append(i)
        if not self._prune(g, keep):
            return
        step = g.last[:, None]  # (B, 1)
        past = {self._cache_kw: g.past}
        if self.is_encoder_decoder:
            out = self.model(
                encoder_outputs=g.encoded, attention_mask=g.mask, decoder_input_ids=step, use_cache=True, **past
            )
        else:
            g.mask = torch.cat([g.mask, g.mask.new_ones((len(g.jobs), 1))], dim=1)
            g.pos = g.pos + 1
            out = self.model(input_ids=step, attention_mask=g.mask, position_ids=g.pos, use_cache=True, **past)
        g.past = _cache_of(out)
        self._advance(g, out.logits[:, -1, :])

    def _advance(self, g: _Group, logits: torch.Tensor) -> None:
        """Sample each row's next token from ``logits`` (B, V), report it, and drop the rows that end."""
        tokens = _sample(logits, g.jobs)
        now = time.monotonic()
        keep = []
        for i, (j, t) in enumerate(zip(g.jobs, tokens, strict=True)):
            if j.cancelled:
                j._finish("done", CANCELLED)
                continue
            j.tokens.append(t)
            j.on_event("token", t)
            if t in self.eos_ids:
                j._finish("done", STOP)
            elif len(j.tokens) >= j.max_new:
                j._finish("done", LENGTH)
            elif now >= j.deadline:
                j._finish("done", TIME_LIMIT)
            else:
                keep.append(i)
        g.last = torch.tensor(tokens, dtype=torch.long, device=self.device)
        self._prune(g, keep)

    def _prune(self, g: _Group, keep: list[int]) -> bool:
        """Keep rows ``keep`` of ``g``; False (and the group emptied) when none are left."""
        if not keep:
            g.jobs = []
            return False
        if len(keep) < len(g.jobs):
            g.select(keep)
        return True


def _plain(cache: Any) -> bool:
    """A DynamicCache of plain full-attention layers (keys/values tensors that can be padded and joined)."""
    return type(cache) is DynamicCache and all(type(layer) is DynamicLayer for layer in cache.layers)


def _cache_of(out: Any) -> Any:
    """The key/value cache a forward pass returned (``cache`` in newer transformers, ``past_key_values`` before)."""
    return out["cache"] if "cache" in out else out["past_key_values"]


def _sample(logits: torch.Tensor, jobs: Sequence[Job]) -> list[int]:
    """Greedy for temperature 0, else temperature + top-p sampling from each job's own seeded generator."""
    greedy = logits.argmax(dim=-1).tolist()
    out = []
    for i, j in enumerate(jobs):
        probs = torch.softmax(logits[i].float() / j.temperature, dim=-1) if j.temperature >= MIN_TEMPERATURE else None
        if probs is None or not bool(torch.isfinite(probs).all()):  # greedy, or a temperature too small to sample
            out.append(greedy[i])
            continue
        if j.top_p < 1.0:
            sorted_p, order = probs.sort(descending=True)
            drop = sorted_p.cumsum(-1) - sorted_p >= j.top_p  # keep the smallest prefix reaching top_p
            probs = probs.scatter(0, order[drop], 0.0)
        if j._generator is None:
            j._generator = torch.Generator(device=logits.device).manual_seed(j.seed % 2**63)
        out.append(int(torch.multinomial(probs, 1, generator=j._generator).item()))
    return out
