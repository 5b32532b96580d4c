"""The app over a multiple-choice student: it scores, it does not generate.

The scoring routes follow the ecosystem's conventions for cross-encoders: vLLM's ``/score`` (``text_1`` against
``text_2``) and ``/rerank`` (``query`` + ``documents`` → results ranked by ``relevance_score``), which also reads
text-embeddings-inference's ``/rerank`` body (``query`` + ``texts`` → a ranked list of ``{index, score}``); and
``/v1/choose``: a question and its choices → the chosen choice with the choice distribution. The chat and
completions routes answer with an OpenAI-shaped 400 naming these routes. API key, body cap, ``/v1/models``,
``/health`` and ``/ready`` are those of the generation app.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

from fastapi import FastAPI

from ..students import ChoiceStudent
from . import protocol_score as S
from .engine import Busy, Stopped
from .errors import APIError
from .limits import Limits, check_text
from .routes import add_info_routes, check_model, served_app
from .scoring import Scorer

#: what the 400 on the generation routes lists
SCORING_ROUTES = ("POST /v1/score", "POST /v1/rerank", "POST /v1/choose")


def create_choice_app(student: ChoiceStudent, *, model_name: str = "local", prefix: str = "answer: ",
                      max_length: int = 256, limits: Limits = Limits(), api_key: str | None = None,
                      max_batch: int = 32, max_queue: int = 4096) -> FastAPI:
    """The scoring app over ``student`` (PyTorch or ONNX Runtime); questions are read after ``prefix``, pairs
    cut to ``max_length`` tokens. ``app.state.scorer`` runs the model (started with the app)."""
    max_length = min(max_length, limits.max_input_tokens or max_length)

    def start_scorer() -> Scorer:
        return Scorer(student, prefix=prefix, max_length=max_length, max_batch=max_batch, max_queue=max_queue)

    app = served_app("tinydistill serve (multiple-choice student)", start=start_scorer, worker="scorer",
                     limits=limits, api_key=api_key)
    stats: Counter = app.state.stats

    def check_count(n: int, param: str) -> None:
        if n < 1:
            raise APIError(400, f"{param} must not be empty", param=param, code="invalid_value")
        if n > limits.max_prompts:
            raise APIError(400, f"{param} has {n} texts; at most {limits.max_prompts} per request",
                           param=param, code="invalid_value")

    async def score(firsts: list[str], seconds: list[str]) -> tuple[list[float], int]:
        stats["requests"] += 1
        try:
            return await asyncio.wait_for(app.state.scorer.score(firsts, seconds), limits.request_timeout_s)
        except Busy as e:
            raise APIError(429, f"the server is busy: {e}; retry shortly", code="server_busy",
                           headers={"retry-after": "1"}) from e
        except Stopped as e:
            raise APIError(503, str(e), code="not_ready") from e
        except TimeoutError as e:
            raise APIError(504, f"scoring took more than {limits.request_timeout_s:g} s (--request-timeout)",
                           code="timeout") from e

    # ------------------------------------------------------------------------------------------ routes
    add_info_routes(app, model_name=model_name, card=_card(model_name), worker="scorer", what="the scorer",
                    stall_s=limits.stall_s, extra={"task": "score"})

    @app.post("/score")
    @app.post("/v1/score")
    async def score_route(req: S.ScoreRequest) -> dict[str, Any]:
        check_model(req.model, model_name)
        firsts: list[str] = [req.text_1] if isinstance(req.text_1, str) else list(req.text_1)
        seconds: list[str] = [req.text_2] if isinstance(req.text_2, str) else list(req.text_2)
        check_count(len(firsts), "text_1")
        check_count(len(seconds), "text_2")
        check_text(firsts, "text_1")
        check_text(seconds, "text_2")
        if len(firsts) == 1:
            firsts = firsts * len(seconds)
        elif len(firsts) != len(seconds):
            raise APIError(400, f"text_1 has {len(firsts)} texts and text_2 {len(seconds)}: give one text_1, or "
                           "lists of one length (scored pairwise)", param="text_2", code="invalid_value")
        scores, tokens = await score(firsts, seconds)
        return {**S.head("list", f"score-{uuid.uuid4().hex}", model_name),
                "data": [{"index": i, "object": "score", "score": s} for i, s in enumerate(scores)],
                "usage": S.usage(tokens)}

    @app.post("/rerank", response_model=None)
    @app.post("/v1/rerank", response_model=None)
    @app.post("/v2/rerank", response_model=None)
    async def rerank(req: S.RerankRequest) -> Any:
        check_model(req.model, model_name)
        tei = req.texts is not None and req.documents is None
        docs: list[str] = ((req.texts or []) if tei
                           else [d if isinstance(d, str) else d.text for d in req.documents or []])
        param = "texts" if tei else "documents"
        check_count(len(docs), param)
        check_text([req.query], "query")
        check_text(docs, param)
        if req.top_n is not None and req.top_n < 1:
            raise APIError(400, f"top_n must be at least 1, got {req.top_n}", param="top_n", code="invalid_value")
        scores, tokens = await score([req.query] * len(docs), docs)
        shares = S.softmax(scores)
        order = sorted(range(len(docs)), key=lambda i: -scores[i])[: req.top_n or len(docs)]
        if tei:  # text-embeddings-inference: a bare ranked list
            return [{"index": i, "score": scores[i] if req.raw_scores else shares[i],
                     **({"text": docs[i]} if req.return_text else {})} for i in order]
        results = [{"index": i, "relevance_score": shares[i], "score": scores[i],
                    **({"document": {"text": docs[i]}} if req.return_documents else {})} for i in order]
        return {"id": f"rerank-{uuid.uuid4().hex}", "model": model_name, "usage": {"total_tokens": tokens},
                "results": results}

    @app.post("/v1/choose")
    async def choose(req: S.ChooseRequest) -> dict[str, Any]:
        check_model(req.model, model_name)
        check_count(len(req.choices), "choices")
        check_text([req.question], "question")
        check_text(req.choices, "choices")
        scores, tokens = await score([req.question] * len(req.choices), req.choices)
        probs = S.softmax(scores)
        best = max(range(len(scores)), key=lambda i: scores[i])
        return {**S.head("choice", f"choose-{uuid.uuid4().hex}", model_name),
                "index": best, "text": req.choices[best], "probabilities": probs, "scores": scores,
                "usage": S.usage(tokens)}

    def not_generative(route: str) -> None:
        raise APIError(400, f"'{model_name}' is a multiple-choice student: it scores choices and does not generate "
                       f"text, so {route} is not served. Use {', '.join(SCORING_ROUTES)} (see /docs)",
                       param="model", code="model_not_generative")

    @app.post("/v1/chat/completions")
    async def chat() -> None:
        not_generative("/v1/chat/completions")

    @app.post("/v1/completions")
    async def completions() -> None:
        not_generative("/v1/completions")

    return app


def _card(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "tinydistill", "task": "score"}
