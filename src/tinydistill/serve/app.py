"""The FastAPI app: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions`` (plain or streamed) and
``/health`` (alias ``/ready``), with the request checks of :mod:`.limits` and the guard of :mod:`.guard`."""

from __future__ import annotations

import asyncio
import random
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ..teachers import HFBackend
from . import protocol as P
from .engine import Engine
from .errors import APIError, error_body
from .limits import Budget, Limits, Window, check_sampling, check_text
from .routes import add_info_routes, check_model, served_app
from .stream import ClientGone, Run
from .tokenize import Encoder


class _Faults:
    """Seeded fault injection: a ``rate`` share of requests get 429, 500 or a ``slow_s`` delay."""

    def __init__(self, rate: float, seed: int, slow_s: float) -> None:
        self.rate, self.slow_s = rate, slow_s
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def draw(self) -> str | None:
        with self._lock:
            if self.rate <= 0 or self._rng.random() >= self.rate:
                return None
            return self._rng.choice(("429", "500", "slow"))


#: a reply's choice from (index, text, finish reason), as :func:`.protocol.chat_choice` makes one
_Choice = Callable[[int, str, str | None], dict[str, Any]]


@dataclass
class _Prepared:
    """A checked request: the prompt ids (cut), the reply budget, and the key counted in ``app.state.completed``."""

    prompts: list[list[int]]
    keys: list[str]
    max_new: int


def create_app(
    model: Any,
    tokenizer: Any,
    *,
    model_name: str = "local",
    limits: Limits = Limits(),
    api_key: str | None = None,
    fault_rate: float = 0.0,
    fault_seed: int = 0,
    slow_s: float = 0.5,
    max_batch: int = 16,
    max_active: int = 64,
    max_queue: int = 1024,
    fair: bool = True,
) -> FastAPI:
    """The app over a loaded model. ``app.state.stats`` counts requests, faults, disconnects and time limits;
    ``app.state.engine`` is the generator (started with the app)."""
    backend = HFBackend(model, tokenizer, name=model_name)  # chat rendering and special tokens
    budget = Budget(limits, Window.of(model), model_name)
    faults = _Faults(fault_rate, fault_seed, slow_s)

    def start_engine() -> Engine:
        return Engine(
            model,
            pad_id=backend.pad_id,
            eos_ids=backend.eos_ids,
            max_batch=max_batch,
            max_active=max_active,
            max_queue=max_queue,
            fair=fair,
        )

    app = served_app("tinydistill serve", start=start_engine, worker="engine", limits=limits, api_key=api_key)
    stats: Counter = app.state.stats
    completed: Counter = Counter()  # prompt → successful completions returned
    app.state.completed = completed

    async def fault() -> JSONResponse | None:
        stats["requests"] += 1
        kind = faults.draw()
        if kind is None:
            return None
        stats[f"fault_{kind}"] += 1
        if kind == "slow":
            await asyncio.sleep(faults.slow_s)
            return None
        code = int(kind)
        headers = {"retry-after": "0"} if code == 429 else None
        return JSONResponse(error_body(code, "injected fault", code="injected"), status_code=code, headers=headers)

    encoder = Encoder(tokenizer, limits.max_prompt_tokens)
    app.state.encoder = encoder

    async def prepare(req: P._Request, texts: list[str], special: bool, default: int, param: str) -> _Prepared:
        check_model(req.model, model_name)
        check_sampling(req, limits)
        requested, field = req.requested_tokens()
        max_new = budget.max_new(requested, field, default)
        encoded = await asyncio.to_thread(encoder.encode, texts, special, param)  # off the event loop
        return _Prepared([budget.cut(ids, max_new, param) for ids in encoded], texts, max_new)

    def start(req: P._Request, prep: _Prepared) -> Run:
        run = Run(
            app.state.engine,
            tokenizer,
            prep.prompts,
            n=req.n,
            max_new=prep.max_new,
            temperature=0.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            seed=req.seed or 0,
            stops=req.stops(),
            timeout_s=limits.request_timeout_s,
            grace_s=limits.stall_s,
            incremental=req.stream or bool(req.stops()),
        )
        run.start()
        return run

    async def answer(
        request: Request, req: P._Request, prep: _Prepared, shape: Callable[[Run], dict[str, Any]],
        stream: Callable[[Run, str], AsyncIterator[str]],
    ) -> Any:
        if (bad := await fault()) is not None:
            return bad
        run = start(req, prep)
        if req.stream:
            return StreamingResponse(
                _counted(stream(run, uuid.uuid4().hex), run, prep),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
            )
        try:
            async for _ in run.events(request.is_disconnected):
                pass
        except ClientGone:
            stats["disconnected"] += 1
            return Response(status_code=499)
        finally:
            stats["time_limit"] += run.timed_out
        for key in prep.keys:
            completed[key] += 1
        return shape(run)

    async def _counted(body: AsyncIterator[str], run: Run, prep: _Prepared) -> AsyncIterator[str]:
        """A stream's events; a finished stream counts as completed, a cancelled one as disconnected."""
        try:
            async for event in body:
                yield event
        except asyncio.CancelledError:
            stats["disconnected"] += 1
            raise
        finally:
            run.cancel()  # also when the stream ends before it reached run.events() (a no-op for finished rows)
            stats["time_limit"] += run.timed_out
        if all(f is not None for f in run.finish):
            for key in prep.keys:
                completed[key] += 1

    def total_usage(run: Run) -> dict[str, int]:  # each prompt counted once, however many choices it has
        return P.usage(sum(len(p) for p in run.prompts), sum(len(j.tokens) for j in run.jobs))

    def whole(run: Run, kind: str, id_prefix: str, choice: _Choice) -> dict[str, Any]:
        """A finished run as one reply: the ``kind`` envelope, the usage and each job's choice."""
        return {
            **P.envelope(kind, f"{id_prefix}-{uuid.uuid4().hex}", model_name),
            "usage": total_usage(run),
            "choices": [choice(i, run.text(i), run.finish[i]) for i in range(len(run.jobs))],
        }

    async def events(req: P._Request, run: Run, head: dict[str, Any], opening: list[dict[str, Any]],
                     chunks: Callable[[int, str, str | None], list[dict[str, Any]]]) -> AsyncIterator[str]:
        """A run as server-sent events under ``head``: the ``opening`` choices, the choices ``chunks`` makes of
        each (job, delta, finish) event, an error event that ends the stream, the usage if asked for, ``[DONE]``."""
        for choice in opening:
            yield P.sse({**head, "choices": [choice]})
        try:
            async for i, delta, finish in run.events():
                for choice in chunks(i, delta, finish):
                    yield P.sse({**head, "choices": [choice]})
        except APIError as e:
            yield P.sse(e.body())
            return
        if req.stream_options and req.stream_options.include_usage:
            yield P.sse({**head, "choices": [], "usage": total_usage(run)})
        yield P.DONE

    # ------------------------------------------------------------------------------------------ routes
    add_info_routes(app, model_name=model_name, card=_model_card(model_name), worker="engine",
                    what="the generator", stall_s=limits.stall_s)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(req: P.ChatRequest, request: Request) -> Any:
        if not req.messages:
            raise APIError(400, "messages must not be empty", param="messages", code="invalid_value")
        msgs = [{"role": m.role, "content": m.text()} for m in req.messages]
        check_text([m["content"] for m in msgs] + [m["role"] for m in msgs], "messages")
        try:
            text = backend.render(msgs)
        except Exception as e:  # noqa: BLE001 - a chat template that rejects these messages (roles, order)
            raise APIError(400, f"the messages do not fit the model's chat template: {e}", param="messages",
                           code="invalid_value") from e
        prep = await prepare(req, [text], not backend.uses_chat_template, 128, "messages")

        def shape(run: Run) -> dict[str, Any]:
            return whole(run, "chat.completion", "chatcmpl", P.chat_choice)

        def chunks(i: int, delta: str, finish: str | None) -> list[dict[str, Any]]:
            return ([P.chat_delta(i, {"content": delta}, None)] if delta else []) + (
                [P.chat_delta(i, {}, finish)] if finish else [])

        def stream(run: Run, rid: str) -> AsyncIterator[str]:
            opening = [P.chat_delta(i, {"role": "assistant", "content": ""}, None) for i in range(len(run.jobs))]
            return events(req, run, P.envelope("chat.completion.chunk", f"chatcmpl-{rid}", model_name), opening,
                          chunks)

        return await answer(request, req, prep, shape, stream)

    @app.post("/v1/completions", response_model=None)
    async def completions(req: P.CompletionRequest, request: Request) -> Any:
        texts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        if not texts:
            raise APIError(400, "prompt must not be empty", param="prompt", code="invalid_value")
        if len(texts) > limits.max_prompts:
            raise APIError(400, f"prompt has {len(texts)} prompts; at most {limits.max_prompts} per request",
                           param="prompt", code="invalid_value")
        check_text(texts, "prompt")
        prep = await prepare(req, texts, True, 16, "prompt")

        def shape(run: Run) -> dict[str, Any]:
            return whole(run, "text_completion", "cmpl", P.text_choice)

        def chunks(i: int, delta: str, finish: str | None) -> list[dict[str, Any]]:
            return [P.text_choice(i, delta, finish)] if delta or finish else []

        def stream(run: Run, rid: str) -> AsyncIterator[str]:
            return events(req, run, P.envelope("text_completion", f"cmpl-{rid}", model_name), [], chunks)

        return await answer(request, req, prep, shape, stream)

    return app


def _model_card(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "tinydistill"}
