"""The scoring request bodies a multiple-choice student's server reads (vLLM's ``/score`` and ``/rerank``,
text-embeddings-inference's ``/rerank``, and ``/v1/choose``) and the bodies it writes."""

from __future__ import annotations

import math
import time
from typing import Any

from pydantic import BaseModel, ConfigDict


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")  # clients send fields we ignore (encoding_format, user, ...)


class ScoreRequest(_Open):
    """vLLM ``/score``: ``text_1`` against each ``text_2`` (one to many), or pairwise (two lists of one length)."""

    model: str | None = None
    text_1: str | list[str]
    text_2: str | list[str]


class Document(_Open):
    text: str


class RerankRequest(_Open):
    """vLLM / Jina / Cohere ``/rerank`` (``documents``), or text-embeddings-inference ``/rerank`` (``texts``)."""

    model: str | None = None
    query: str
    documents: list[str | Document] | None = None
    texts: list[str] | None = None  # text-embeddings-inference
    top_n: int | None = None
    return_documents: bool = True
    return_text: bool = False  # text-embeddings-inference
    raw_scores: bool = False  # text-embeddings-inference


class ChooseRequest(_Open):
    """``/v1/choose``: a question and its choices → the chosen choice and the choice distribution."""

    model: str | None = None
    question: str
    choices: list[str]


def softmax(scores: list[float]) -> list[float]:
    top = max(scores)
    exps = [math.exp(s - top) for s in scores]
    total = sum(exps)
    return [e / total for e in exps]


def head(kind: str, rid: str, model: str) -> dict[str, Any]:
    return {"id": rid, "object": kind, "created": int(time.time()), "model": model}


def usage(tokens: int) -> dict[str, int]:
    return {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0}
