"""What one request may ask for, and how a prompt is cut so the reply has room.

A request's values are checked here (400 with the parameter's name); its schema is checked by pydantic (422).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .errors import APIError

#: the environment variable holding the key every route requires (``--api-key`` overrides it)
API_KEY_ENV = "TINYDISTILL_API_KEY"

#: Prompt tokens kept (cut from the left) for a model whose config names no position limit (T5).
DEFAULT_INPUT_TOKENS = 1024


@dataclass(frozen=True)
class Limits:
    """Server-wide caps; each has a ``tinydistill serve`` flag."""

    max_tokens: int = 4096  # the most max_tokens a request may ask for
    max_prompt_tokens: int = 32_768  # longer prompts are refused before any cut
    max_input_tokens: int | None = None  # prompts are cut from the left to this (None: the model's positions,
    # or DEFAULT_INPUT_TOKENS where its config names none)
    max_n: int = 8
    max_prompts: int = 64  # prompts in one /v1/completions request
    max_body_bytes: int = 2 * 2**20
    request_timeout_s: float = 300.0  # generation stops here and returns what it has (finish_reason length)
    stall_s: float = 60.0  # /health fails after this long without a generation step while work waits


def _positions(config: Any) -> int | None:
    for key in ("n_positions", "max_position_embeddings", "n_ctx", "max_sequence_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


@dataclass(frozen=True)
class Window:
    """Token positions of a model: a causal model's prompt and reply share ``shared``; a seq2seq model reads
    ``prompt`` and writes ``reply`` (None: the config names no limit, as with T5's relative positions)."""

    shared: int | None = None
    prompt: int | None = None
    reply: int | None = None

    @classmethod
    def of(cls, model: Any) -> Window:
        config = model.config
        if not getattr(config, "is_encoder_decoder", False):
            return cls(shared=_positions(config))
        enc, dec = getattr(config, "encoder", config), getattr(config, "decoder", config)
        reply = _positions(dec)
        return cls(prompt=_positions(enc), reply=None if reply is None else reply - 1)  # one for the start token


class Budget:
    """Turns a request's ``max_tokens`` and prompt ids into what the generator runs, or an APIError."""

    def __init__(self, limits: Limits, window: Window, model_name: str) -> None:
        self.limits, self.window, self.model_name = limits, window, model_name
        caps = [(limits.max_tokens, f"--max-tokens-limit {limits.max_tokens}")]
        if window.shared is not None:
            caps.append((window.shared - 1, f"{window.shared} positions for prompt and reply"))
        if window.reply is not None:
            caps.append((window.reply, f"{window.reply + 1} decoder positions"))
        self.reply_cap, self._reply_why = min(caps)
        model_input = window.prompt or window.shared  # None: no position limit in the config
        if model_input is None:
            self.input_cap = limits.max_input_tokens or DEFAULT_INPUT_TOKENS
        else:
            self.input_cap = min(limits.max_input_tokens or model_input, model_input)

    def max_new(self, requested: int | None, param: str, default: int) -> int:
        """The reply's token budget: ``requested`` if within the caps, else 400; ``default`` if not given."""
        if requested is None:
            return min(default, self.reply_cap)
        if requested < 1:
            raise APIError(400, f"{param} must be at least 1, got {requested}", param=param, code="invalid_value")
        if requested > self.reply_cap:
            raise APIError(
                400,
                f"{param} {requested} is more than this server allows for {self.model_name}: at most "
                f"{self.reply_cap} ({self._reply_why})",
                param=param,
                code="max_tokens_too_large",
            )
        return requested

    def cut(self, ids: list[int], max_new: int, param: str) -> list[int]:
        """Refuse a prompt over ``max_prompt_tokens``; keep its last tokens that leave room for ``max_new``."""
        if len(ids) > self.limits.max_prompt_tokens:
            raise APIError(
                400,
                f"the prompt has {len(ids):,} tokens; this server accepts at most "
                f"{self.limits.max_prompt_tokens:,} (--max-prompt-tokens)",
                param=param,
                code="context_length_exceeded",
            )
        if not ids:
            raise APIError(400, "the prompt is empty (no tokens)", param=param, code="invalid_value")
        room = self.window.shared - max_new if self.window.shared is not None else math.inf
        keep = int(min(self.input_cap, room))  # >= 1: max_new <= shared - 1
        return ids[-keep:]


def check_sampling(req: Any, limits: Limits) -> None:
    """400 for ``n``, ``temperature``, ``top_p`` or ``stop`` out of range."""
    if not 1 <= req.n <= limits.max_n:
        raise APIError(400, f"n must be between 1 and {limits.max_n} (--max-n), got {req.n}", param="n",
                       code="invalid_value")
    if req.temperature is not None and not 0 <= req.temperature <= 2:
        raise APIError(400, f"temperature must be between 0 and 2, got {req.temperature}", param="temperature",
                       code="invalid_value")
    if req.top_p is not None and not 0 < req.top_p <= 1:
        raise APIError(400, f"top_p must be in (0, 1], got {req.top_p}", param="top_p", code="invalid_value")
    stops = [req.stop] if isinstance(req.stop, str) else req.stop or []
    if len(stops) > 4 or any(not s for s in stops):
        raise APIError(400, "stop takes up to 4 non-empty strings", param="stop", code="invalid_value")


def check_text(texts: list[str], param: str) -> None:
    """400 for text that is not valid Unicode (a lone surrogate such as ``"\\ud800"``, which JSON allows but no
    tokenizer can encode), naming the parameter and the character's position."""
    for text in texts:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise APIError(400, f"{param} is not valid Unicode text: a lone surrogate {text[e.start]!r} at character "
                           f"{e.start}; send well-formed UTF-8", param=param, code="invalid_value") from None
