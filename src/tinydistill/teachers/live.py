"""A live teacher: template + in-context examples + backend + cache + quality policy, as a ``Teacher``.

Every output goes through the cache, one committed row per call, so training cannot tell a live teacher from a
cached or imported one, an interrupted run resumes without repeating a call, and a second run makes none.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..config import GenerationSpec, ICLSpec, QualitySpec
from ..data import Example, clean_rationale, stated_answer
from . import icl as icl_mod
from .backend import LENGTH, Backend, BackendError, Generation
from .cache import CacheStats, TeacherCache, make_key
from .templates import Exemplar, messages, render, resolve_template

#: ``on_output(hits, generated)``: outputs read from the cache, outputs generated now (called as they land)
OnOutput = Callable[[int, int], None]


@dataclass(frozen=True)
class RationaleRecord:
    """One teacher output for one row after the quality policy. ``rationale`` is ``None`` when dropped."""

    id: str
    sample: int
    text: str  # cleaned output, kept even when dropped
    rationale: str | None
    stated_answer: int | None
    agrees: bool
    weight: float
    flags: tuple[str, ...] = field(default_factory=tuple)  # "empty", "contradicts", "truncated"


def judge(ex: Example, gen: Generation, sample: int, quality: QualitySpec) -> RationaleRecord:
    """Apply the quality policy: empty → dropped; contradicting gold / cut off → keep, drop or down-weight."""
    text = clean_rationale(gen.text)
    stated = stated_answer(text, ex.choices) if text else None
    agrees = stated is not None and stated == ex.answer
    flags: list[str] = []
    weight = 1.0
    if not text:
        flags.append("empty")
        weight = 0.0
    issues = (
        (
            "contradicts",
            ex.answer is not None and stated is not None and stated != ex.answer,
            quality.on_contradict,
        ),
        ("truncated", gen.finish_reason == LENGTH, quality.on_truncated),
    )
    for flag, present, action in issues:
        if present:
            flags.append(flag)
            weight = (
                0.0 if action == "drop" else weight * (quality.downweight if action == "downweight" else 1.0)
            )
    return RationaleRecord(
        ex.id, sample, text, text if weight > 0 else None, stated, agrees, weight, tuple(flags)
    )


class LiveTeacher:
    """Generates rationales with a backend, through a :class:`TeacherCache`; implements ``Teacher``."""

    def __init__(
        self,
        name: str,
        backend: Backend,
        cache: TeacherCache,
        *,
        generation: GenerationSpec = GenerationSpec(),
        icl: ICLSpec = ICLSpec(),
        quality: QualitySpec = QualitySpec(),
        icl_pool: Sequence[Example] = (),
        embedder: icl_mod.Embedder | None = None,
        chunk_size: int = 64,
        poll_s: float = 0.2,
    ) -> None:
        self.name = name
        self.backend = backend
        self.cache = cache
        self.generation = generation
        self.icl = icl
        self.quality = quality
        self.template = resolve_template(generation.template, generation.prompt_template)
        self.chunk_size = chunk_size
        self.poll_s = poll_s
        self._pool = list(icl_pool)
        self._embedder = embedder
        self._exemplars: list[Exemplar] | None = None
        self._memo: dict[str, list[RationaleRecord]] = {}

    # ------------------------------------------------------------------------------------ Teacher API
    def rationales(self, examples: Sequence[Example]) -> list[str | None]:
        """Sample 0 of each row after the quality policy (``None`` where dropped)."""
        return [recs[0].rationale for recs in self.records(examples)]

    def rationale_weights(self, examples: Sequence[Example]) -> list[float]:
        """Per-row loss weight of sample 0: 1 kept, ``quality.downweight`` per flagged issue, 0 dropped."""
        return [recs[0].weight for recs in self.records(examples)]

    def samples(self, examples: Sequence[Example]) -> list[list[str | None]]:
        """All ``num_samples`` rationales of each row (the diverse-samples ablation)."""
        return [[r.rationale for r in recs] for recs in self.records(examples)]

    @property
    def stats(self) -> CacheStats:
        return self.cache.stats

    def close(self) -> None:
        """Close the cache and the backend's connections (if it has any)."""
        self.cache.close()
        close = getattr(self.backend, "close", None)
        if callable(close):
            close()

    # -------------------------------------------------------------------------------------- internals
    def exemplars(self) -> list[Exemplar]:
        """The in-context pool, written once by this teacher (cached)."""
        if self._exemplars is None:
            if self.icl.k == 0:
                self._exemplars = []
            else:
                if not self._pool:
                    raise ValueError(f"teacher {self.name!r}: icl.k > 0 needs icl_pool (the training rows)")
                self._exemplars = icl_mod.generate_exemplars(
                    self._pool, self.icl, self.template, self.complete
                )
        return self._exemplars

    def prompts(self, examples: Sequence[Example]) -> list[str]:
        """The exact prompt (as rendered by the backend) for each row."""
        chosen = icl_mod.select(examples, self.exemplars(), self.icl, self._embedder)
        system = self.generation.system_prompt
        return [
            self.backend.render(messages(render(ex, self.template, exs), system))
            for ex, exs in zip(examples, chosen, strict=True)
        ]

    def records(
        self, examples: Sequence[Example], on_output: OnOutput | None = None
    ) -> list[list[RationaleRecord]]:
        """``[row][sample]`` judged outputs, generating whatever the cache lacks (``on_output``: progress)."""
        todo = [ex for ex in examples if ex.id not in self._memo]
        if on_output is not None and len(todo) < len(examples):
            on_output((len(examples) - len(todo)) * self.generation.num_samples, 0)
        if todo:
            n = self.generation.num_samples
            prompts = self.prompts(todo)
            labels = [f"row {ex.id!r}" + (f" sample {k}" if n > 1 else "") for ex in todo for k in range(n)]
            gens = self._generate(
                [p for p in prompts for _ in range(n)], [k for _ in prompts for k in range(n)], labels, on_output
            )
            for i, ex in enumerate(todo):
                self._memo[ex.id] = [judge(ex, gens[i * n + k], k, self.quality) for k in range(n)]
        return [self._memo[ex.id] for ex in examples]

    def complete(self, user_prompts: list[str]) -> list[str]:
        """Sample 0 completions of raw user prompts, through the cache (used by the ICL generator)."""
        rendered = [self.backend.render(messages(p, self.generation.system_prompt)) for p in user_prompts]
        labels = [f"in-context example {i}" for i in range(len(rendered))]
        return [g.text for g in self._generate(rendered, [0] * len(rendered), labels)]

    def _generate(
        self, prompts: Sequence[str], samples: Sequence[int], labels: Sequence[str] = (),
        on_output: OnOutput | None = None,
    ) -> list[Generation]:
        """Cached generation with leases: compute what no live process holds, wait for what others hold.

        ``labels[i]`` names prompt i in an error; ``on_output`` is told of every output as it lands."""
        params = self.backend.params()
        keys = [
            make_key(self.name, self.backend.model, self.backend.revision, p, params, s)
            for p, s in zip(prompts, samples, strict=True)
        ]
        index = {k: i for i, k in enumerate(keys)}  # duplicates collapse to one call
        copies = Counter(keys)
        found: dict[str, Generation] = {}
        pending = list(index)
        while pending:
            hits = self.cache.get_many(pending)
            for key, out in hits.items():
                found[key] = Generation(out.text, out.prompt_tokens, out.completion_tokens, out.finish_reason)
            if on_output is not None and hits:
                on_output(sum(copies[k] for k in hits), 0)
            pending = [k for k in pending if k not in found]
            progressed = False
            for start in range(0, len(pending), self.chunk_size):
                mine = self.cache.claim(pending[start : start + self.chunk_size])
                if mine:
                    progressed = True
                    done = (lambda k: on_output(0, copies[k])) if on_output is not None else None
                    names = [labels[index[k]] if labels else f"prompt {index[k]}" for k in mine]
                    found.update(
                        self._call(
                            mine, [prompts[index[k]] for k in mine], [samples[index[k]] for k in mine], params,
                            names, done,
                        )
                    )
            pending = [k for k in pending if k not in found]
            if pending and not progressed:
                time.sleep(self.poll_s)  # another process holds these; its results land in the cache
        return [found[k] for k in keys]

    def _call(
        self, keys: list[str], prompts: list[str], samples: list[int], params: dict, names: Sequence[str] = (),
        on_done: Callable[[str], None] | None = None,
    ) -> dict[str, Generation]:
        """Run the backend on claimed keys, committing each output as it arrives. A failure names the teacher
        and the row (``names[i]``); what was committed before it stays in the cache."""
        done: dict[str, Generation] = {}
        try:
            for i, gen in self.backend.generate(prompts, samples):
                self.cache.put(
                    keys[i],
                    teacher=self.name,
                    model=self.backend.model,
                    revision=self.backend.revision,
                    params=params,
                    prompt=prompts[i],
                    sample=samples[i],
                    text=gen.text,
                    prompt_tokens=gen.prompt_tokens,
                    completion_tokens=gen.completion_tokens,
                    finish_reason=gen.finish_reason,
                )
                done[keys[i]] = gen
                if on_done is not None:
                    on_done(keys[i])
        except BackendError as e:
            row = names[e.failed[0]] if e.failed and names else "a request"
            raise type(e)(f"teacher {self.name!r}, {row}: {e}", failed=e.failed) from None
        finally:
            self.cache.release([k for k in keys if k not in done])
        return done
