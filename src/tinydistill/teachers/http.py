"""An OpenAI-compatible HTTP teacher backend (vLLM, TGI, llama.cpp server, hosted APIs) on httpx.

A thread pool holds at most ``concurrency`` requests in flight; 429, 5xx, timeouts, connection errors, a body
that does not decode (``Content-Encoding: gzip`` over plain bytes) and a 2xx whose body is not a completion (a
gateway's HTML page, truncated JSON, no ``choices``) are retried with exponential backoff and jitter (honouring
``Retry-After``), each counted in ``faults``. The API key is read from the environment variable named in the
spec when the backend is built, sent only as a header, and never logged, cached or put in an error message (a
key written where the variable's name belongs is refused without being shown).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from ..config import GenerationSpec, HTTPTeacherSpec, looks_like_key
from ..errors import TinyDistillError
from .backend import BackendError, Generation, sampling_params
from .templates import dumps_messages, messages_to_text


class TeacherHTTPError(BackendError):
    """A request that failed for good (a non-retryable status, or retries exhausted)."""


def _retryable_status(code: int) -> bool:
    return code in (408, 429) or code >= 500


def snippet(text: str, n: int = 120) -> str:
    """The start of a body on one line (an HTML page has newlines)."""
    flat = " ".join(text.split())
    return repr(flat[:n] + ("…" if len(flat) > n else ""))


class _Message(BaseModel):
    content: str | None = None


class _Choice(BaseModel):
    message: _Message | None = None
    text: str | None = None
    finish_reason: str | None = None


class _Usage(BaseModel):
    prompt_tokens: int | None = None  # some servers send null
    completion_tokens: int | None = None


class _Reply(BaseModel):
    """The part of an OpenAI chat/completions reply the teacher reads; anything else may be there too."""

    choices: list[_Choice]
    usage: _Usage | None = None


class MalformedReply(ValueError):
    """A 2xx whose body is not a completion."""


def parse_reply(content: bytes, api: str) -> Generation:
    """A completion from a reply body, or :class:`MalformedReply` saying what is wrong with it."""
    try:
        reply = _Reply.model_validate_json(content)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise MalformedReply(f"{where + ': ' if where else ''}{err['msg']}") from None
    if not reply.choices:
        raise MalformedReply("choices: empty list")
    choice = reply.choices[0]
    if api == "chat" and choice.message is None:
        raise MalformedReply("choices.0.message: missing (not a chat completion)")
    if api == "completions" and choice.text is None:
        raise MalformedReply("choices.0.text: missing (not a text completion)")
    text = choice.message.content if api == "chat" and choice.message else choice.text
    usage = reply.usage or _Usage()
    return Generation((text or "").strip(), usage.prompt_tokens or 0, usage.completion_tokens or 0,
                      choice.finish_reason or "stop")


class HTTPBackend:
    """Chat or completions requests against ``base_url`` (e.g. ``http://127.0.0.1:8000/v1``).

    Several URLs (replicas of one model): each attempt goes to the next one, round-robin, so load is spread
    and a retry lands on another replica.
    """

    def __init__(
        self,
        base_url: str | Sequence[str],
        model: str,
        *,
        api: str = "chat",
        api_key_env: str | None = None,
        concurrency: int = 4,
        max_retries: int = 5,
        timeout_s: float = 60.0,
        generation: GenerationSpec = GenerationSpec(),
        backoff_s: float = 0.5,
        backoff_max_s: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if api not in ("chat", "completions"):
            raise ValueError(f"api must be 'chat' or 'completions', got {api!r}")
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls:
            raise ValueError("base_url: at least one endpoint is needed")
        self.base_urls = [u.rstrip("/") for u in urls]
        self.base_url = self.base_urls[0]
        self._next_url = 0
        self.model = model
        self.revision: str | None = None
        self.api = api
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.generation = generation
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.retries = 0  # retried attempts, all requests together
        self.failures = 0  # requests that failed for good
        self.faults: dict[str, int] = {}  # retried faults by kind: "HTTP 503", "malformed reply", "ReadTimeout"…
        self._rng = random.Random()
        self._lock = threading.Lock()
        headers = {"Content-Type": "application/json"}
        if api_key_env:
            if looks_like_key(api_key_env):  # a key pasted into the field: never echoed
                raise TinyDistillError("api_key_env looks like an API key, not the name of an environment "
                                       "variable: export the key and write the variable's name there")
            key = os.environ.get(api_key_env)
            if not key:
                raise TinyDistillError(
                    f"environment variable {api_key_env} (the teacher's API key) is not set"
                )
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )

    @classmethod
    def from_spec(cls, spec: HTTPTeacherSpec) -> HTTPBackend:
        return cls(
            spec.base_url,
            spec.model,
            api=spec.api,
            api_key_env=spec.api_key_env,
            concurrency=spec.concurrency,
            max_retries=spec.max_retries,
            timeout_s=spec.timeout_s,
            generation=spec.generation,
            backoff_s=spec.retry_backoff_s,
        )

    def __repr__(self) -> str:  # no headers: the key must never reach a log
        return f"HTTPBackend({', '.join(self.base_urls)!r}, model={self.model!r}, api={self.api!r})"

    def close(self) -> None:
        self._client.close()

    # ---------------------------------------------------------------------------------- Backend API
    def render(self, messages: Sequence[Mapping[str, str]]) -> str:
        """Chat: the messages as canonical JSON; completions: their contents as one text."""
        return dumps_messages(messages) if self.api == "chat" else messages_to_text(messages)

    def params(self) -> dict[str, Any]:
        g = self.generation
        return {"api": self.api, "max_tokens": g.max_new_tokens, **sampling_params(g), "stop": list(g.stop)}

    def generate(self, prompts: Sequence[str], samples: Sequence[int]) -> Iterator[tuple[int, Generation]]:
        """Yield results as they complete; failures are raised together after the others finish (``failed``: the
        indices of the prompts that failed, the first one named in the message)."""
        errors: list[tuple[int, str]] = []
        pool = ThreadPoolExecutor(max_workers=self.concurrency)
        try:
            pending: dict[Future, int] = {
                pool.submit(self.request, p, s): i
                for i, (p, s) in enumerate(zip(prompts, samples, strict=True))
            }
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    i = pending.pop(fut)
                    try:
                        result = fut.result()
                    except TeacherHTTPError as e:
                        errors.append((i, str(e)))
                        continue
                    yield i, result
        finally:  # a consumer that stops early cancels what has not started
            pool.shutdown(wait=True, cancel_futures=True)
        if errors:
            more = f" ({len(errors)} of {len(prompts)} requests failed)" if len(errors) > 1 else ""
            raise TeacherHTTPError(errors[0][1] + more, failed=tuple(i for i, _ in errors))

    # -------------------------------------------------------------------------------------- requests
    def body(self, prompt: str, sample: int) -> dict[str, Any]:
        """The JSON body of one request."""
        g = self.generation
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": g.max_new_tokens,
            "temperature": g.gen_temperature,
            "n": 1,
        }
        if g.gen_temperature > 0:
            body.update(top_p=g.top_p, seed=g.seed + sample)
        if g.stop:
            body["stop"] = list(g.stop)
        if self.api == "chat":
            body["messages"] = json.loads(prompt)
        else:
            body["prompt"] = prompt
        return body

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        """Exponential backoff with jitter; a server's ``Retry-After`` (seconds) is honoured, capped."""
        base = min(self.backoff_max_s, self.backoff_s * 2**attempt)
        with self._lock:
            delay = base * (0.5 + self._rng.random() / 2)
        if response is not None:
            with contextlib.suppress(ValueError):
                delay = max(delay, min(self.backoff_max_s, float(response.headers.get("retry-after", ""))))
        return delay

    def endpoint(self) -> str:
        """The next base URL, round-robin (thread-safe)."""
        with self._lock:
            url = self.base_urls[self._next_url % len(self.base_urls)]
            self._next_url += 1
        return url

    def request(self, prompt: str, sample: int) -> Generation:
        """One completion with retries (each attempt on the next endpoint)."""
        path = "chat/completions" if self.api == "chat" else "completions"
        body = self.body(prompt, sample)
        last = ""
        for attempt in range(self.max_retries + 1):
            url = f"{self.endpoint()}/{path}"
            response: httpx.Response | None = None
            try:
                response = self._client.post(url, json=body)
            except httpx.HTTPError as e:  # timeouts, connection and protocol errors, a body that does not decode
                kind = last = type(e).__name__
            else:
                if response.is_success:
                    try:
                        return parse_reply(response.content, self.api)
                    except MalformedReply as e:  # a gateway's HTML page, a cut-off body: retried like a 502
                        kind = "malformed reply"
                        last = (f"HTTP {response.status_code} but not a completion ({e}; "
                                f"{response.headers.get('content-type') or 'no content-type'}): "
                                f"{snippet(response.text)}")
                else:
                    kind = f"HTTP {response.status_code}"
                    last = f"{kind}: {snippet(response.text)}"
                    if not _retryable_status(response.status_code):
                        self._count(None)
                        raise TeacherHTTPError(f"{url}: {last}")
            if attempt < self.max_retries:
                self._count(kind)
                time.sleep(self._delay(attempt, response))
        self._count(None)
        raise TeacherHTTPError(f"{url}: gave up after {self.max_retries + 1} attempts; last: {last}")

    def _count(self, fault: str | None) -> None:
        """One retried fault of this kind, or (``None``) one request failed for good."""
        with self._lock:
            if fault is None:
                self.failures += 1
            else:
                self.retries += 1
                self.faults[fault] = self.faults.get(fault, 0) + 1
