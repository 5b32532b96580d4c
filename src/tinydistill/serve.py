"""``tinydistill serve MODEL``: an OpenAI-compatible endpoint for any local HF model (a trained student too).

Routes: ``/v1/models``, ``/v1/chat/completions``, ``/v1/completions``. Concurrent requests are batched
together (one worker thread owns the model). ``--fault-rate`` answers a seeded share of requests with 429,
500 or a slow reply, to show that clients retry and still complete every row exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import queue
import random
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import Future
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from .teachers.backend import Generation
from .teachers.hf import HFBackend, load_model


class _Request(BaseModel):
    model_config = ConfigDict(extra="allow")  # clients send fields we ignore (user, stream_options, ...)

    model: str | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int = 1
    seed: int | None = None
    stop: str | list[str] | None = None


class ChatRequest(_Request):
    messages: list[dict[str, Any]]


class CompletionRequest(_Request):
    prompt: str | list[str]


@dataclass
class _Job:
    prompt: str
    params: tuple[
        int, float, float, int, bool
    ]  # max_new_tokens, temperature, top_p, seed, add_special_tokens
    future: Future


class Batcher:
    """One thread owns the model; requests waiting together with equal parameters run as one batch."""

    def __init__(self, backend: HFBackend, max_batch: int = 16, wait_s: float = 0.005) -> None:
        self.backend = backend
        self.max_batch = max_batch
        self.wait_s = wait_s
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="tinydistill-serve-batcher", daemon=True)
        self._thread.start()

    def submit(self, prompt: str, params: tuple[int, float, float, int, bool]) -> Future:
        fut: Future = Future()
        self._queue.put(_Job(prompt, params, fut))
        return fut

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs = [job]
            deadline = time.monotonic() + self.wait_s
            while len(jobs) < self.max_batch:
                try:
                    nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                jobs.append(nxt)
            groups: dict[tuple, list[_Job]] = {}
            for j in jobs:
                groups.setdefault(j.params, []).append(j)
            for params, group in groups.items():
                self._run_group(params, group)

    def _run_group(self, params: tuple[int, float, float, int, bool], group: list[_Job]) -> None:
        max_new, temperature, top_p, seed, special = params
        try:
            results = dict(
                self.backend.generate_texts(
                    [j.prompt for j in group],
                    max_new_tokens=max_new,
                    temperature=temperature,
                    top_p=top_p,
                    batch_size=len(group),
                    seed=seed,
                    add_special_tokens=special,
                )
            )
            for i, j in enumerate(group):
                j.future.set_result(results[i])
        except Exception as e:  # noqa: BLE001 - the error goes back to each waiting request
            for j in group:
                if not j.future.done():
                    j.future.set_exception(e)


def _message_text(content: Any) -> str:
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content or "")


def _apply_stop(gen: Generation, stop: str | list[str] | None) -> Generation:
    for s in [stop] if isinstance(stop, str) else stop or []:
        if s and s in gen.text:
            return Generation(gen.text[: gen.text.index(s)], gen.prompt_tokens, gen.completion_tokens, "stop")
    return gen


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


def create_app(
    model: Any,
    tokenizer: Any,
    *,
    model_name: str = "local",
    fault_rate: float = 0.0,
    fault_seed: int = 0,
    slow_s: float = 0.5,
    max_batch: int = 16,
    max_input_tokens: int = 1024,
) -> FastAPI:
    """The FastAPI app over a loaded model. ``app.state.stats`` counts requests, faults and completions."""
    backend = HFBackend(model, tokenizer, name=model_name, max_input_tokens=max_input_tokens)
    faults = _Faults(fault_rate, fault_seed, slow_s)
    batcher_box: dict[str, Batcher] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):  # noqa: ANN202
        batcher_box["b"] = Batcher(backend, max_batch=max_batch)
        yield
        batcher_box.pop("b").close()

    app = FastAPI(title="tinydistill serve", lifespan=lifespan)
    stats: Counter = Counter()
    completed: Counter = Counter()  # prompt → successful completions returned
    app.state.stats, app.state.completed = stats, completed

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
        body = {
            "error": {"message": "injected fault", "type": "rate_limit" if code == 429 else "server_error"}
        }
        return JSONResponse(body, status_code=code, headers={"retry-after": "0"} if code == 429 else None)

    async def run(prompt: str, req: _Request, special: bool, default_max: int) -> list[Generation]:
        max_new = req.max_completion_tokens or req.max_tokens or default_max
        temperature = 1.0 if req.temperature is None else req.temperature
        top_p = 1.0 if req.top_p is None else req.top_p
        futs = [
            batcher_box["b"].submit(prompt, (max_new, temperature, top_p, (req.seed or 0) + k, special))
            for k in range(req.n)
        ]
        gens = [_apply_stop(await asyncio.wrap_future(f), req.stop) for f in futs]
        completed[prompt] += 1
        return gens

    def usage(gens: list[Generation]) -> dict[str, int]:
        pt, ct = gens[0].prompt_tokens, sum(g.completion_tokens for g in gens)
        return {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": model_name, "object": "model", "created": 0, "owned_by": "tinydistill"}],
        }

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(req: ChatRequest) -> dict[str, Any] | JSONResponse:
        if (bad := await fault()) is not None:
            return bad
        msgs = [
            {"role": m.get("role", "user"), "content": _message_text(m.get("content"))} for m in req.messages
        ]
        gens = await run(backend.render(msgs), req, not backend.uses_chat_template, 128)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model_name,
            "usage": usage(gens),
            "choices": [
                {
                    "index": k,
                    "message": {"role": "assistant", "content": g.text},
                    "finish_reason": g.finish_reason,
                    "logprobs": None,
                }
                for k, g in enumerate(gens)
            ],
        }

    @app.post("/v1/completions", response_model=None)
    async def completions(req: CompletionRequest) -> dict[str, Any] | JSONResponse:
        if (bad := await fault()) is not None:
            return bad
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        per_prompt = [await run(p, req, True, 16) for p in prompts]
        gens = [g for gs in per_prompt for g in gs]
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": model_name,
            "usage": {**usage(gens), "prompt_tokens": sum(gs[0].prompt_tokens for gs in per_prompt)},
            "choices": [
                {"index": k, "text": g.text, "finish_reason": g.finish_reason, "logprobs": None}
                for k, g in enumerate(gens)
            ],
        }

    return app


# ------------------------------------------------------------------------------------------------ CLI
def configure_serve_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="HF model name or local folder (seq2seq, encoder-decoder or causal)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--name", default=None, help="model id reported by /v1/models (default: MODEL)")
    p.add_argument("--revision", default=None)
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--max-batch", type=int, default=16, help="requests generated together")
    p.add_argument("--fault-rate", type=float, default=0.0, help="share of requests answered 429/500/slow")
    p.add_argument("--fault-seed", type=int, default=0)
    p.add_argument("--slow-s", type=float, default=0.5, help="delay of a 'slow' injected fault")


def cmd_serve(args: argparse.Namespace) -> int:
    """Load MODEL and serve it with uvicorn until interrupted."""
    import uvicorn

    model, tokenizer = load_model(args.model, revision=args.revision, dtype=args.dtype)
    app = create_app(
        model,
        tokenizer,
        model_name=args.name or args.model,
        fault_rate=args.fault_rate,
        fault_seed=args.fault_seed,
        slow_s=args.slow_s,
        max_batch=args.max_batch,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
