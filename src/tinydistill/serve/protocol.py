"""The OpenAI request bodies this server reads, and the JSON / Server-Sent-Events bodies it writes."""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import BaseModel, ConfigDict

#: The last event of a stream, as OpenAI sends it.
DONE = "data: [DONE]\n\n"


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")  # clients send fields we ignore (user, logprobs, ...)


class Message(_Open):
    role: str = "user"
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):  # [{"type": "text", "text": ...}, ...]
            return "".join(str(p.get("text", "")) for p in self.content)
        return self.content or ""


class StreamOptions(_Open):
    include_usage: bool = False


class _Request(_Open):
    model: str | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    n: int = 1
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def requested_tokens(self) -> tuple[int | None, str]:
        """(the reply budget asked for, the field that asked)."""
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens, "max_completion_tokens"
        return self.max_tokens, "max_tokens"


class ChatRequest(_Request):
    messages: list[Message]


class CompletionRequest(_Request):
    prompt: str | list[str]


def sse(obj: dict[str, Any]) -> str:
    """One Server-Sent-Events ``data:`` event."""
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def envelope(kind: str, rid: str, model: str) -> dict[str, Any]:
    """The fields every completion object and chunk carries (``kind``: its ``object`` value)."""
    return {"id": rid, "object": kind, "created": int(time.time()), "model": model}


def chat_choice(index: int, text: str, finish: str | None) -> dict[str, Any]:
    return {
        "index": index,
        "message": {"role": "assistant", "content": text},
        "finish_reason": finish,
        "logprobs": None,
    }


def chat_delta(index: int, delta: dict[str, str], finish: str | None) -> dict[str, Any]:
    return {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}


def text_choice(index: int, text: str, finish: str | None) -> dict[str, Any]:
    return {"index": index, "text": text, "finish_reason": finish, "logprobs": None}
