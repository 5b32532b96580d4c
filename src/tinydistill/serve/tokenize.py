"""Prompt tokenising for the server, off the event loop and without one request waiting for another's.

A fast tokenizer's Rust core encodes from many threads at once as long as nobody changes its truncation or padding
(that is what made a shared tokenizer "already borrowed"): :class:`Encoder` keeps a private copy with neither set,
so a small prompt is never queued behind a huge one. A prompt longer than ``PIECE_CHARS`` is first counted piece by
piece (split before whitespace, where tokenizers split anyway) and refused as soon as the count passes the limit,
so a 2 MB prompt costs what ``max_prompt_tokens`` tokens cost, not seconds of tokenising.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

from .errors import APIError

#: prompts longer than this (characters) are counted in pieces of this size before being tokenised whole
PIECE_CHARS = 32_768

_SPACE = re.compile(r"\s")


def pieces(text: str, size: int = PIECE_CHARS) -> Iterator[str]:
    """``text`` in consecutive pieces of about ``size`` characters, each cut just before a whitespace character
    (or at ``size`` where there is none)."""
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            space = _SPACE.search(text, end)
            end = space.start() if space is not None and space.start() - end < size else end
        yield text[start:end]
        start = end


class Encoder:
    """Thread-safe ``encode(texts, special) → ids`` with an early refusal of prompts over ``max_tokens``."""

    def __init__(self, tokenizer: Any, max_tokens: int) -> None:
        self.tokenizer, self.max_tokens = tokenizer, max_tokens
        self.chars_encoded = 0  # characters handed to the tokenizer so far (what the early refusal saves)
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self._fast = None
        if backend is not None:
            from tokenizers import Tokenizer

            self._fast = Tokenizer.from_str(backend.to_str())  # a private copy: no truncation, no padding
            self._fast.no_truncation()
            self._fast.no_padding()
        self._lock = threading.Lock()  # a slow (Python) tokenizer: one encode at a time

    def _ids(self, texts: list[str], special: bool) -> list[list[int]]:
        self.chars_encoded += sum(map(len, texts))
        if self._fast is not None:
            return [e.ids for e in self._fast.encode_batch(texts, add_special_tokens=special)]
        with self._lock:
            return self.tokenizer(texts, add_special_tokens=special)["input_ids"]

    def encode(self, texts: list[str], special: bool, param: str) -> list[list[int]]:
        """Token ids of each text; a text surely over ``max_tokens`` is a 400 before it is tokenised whole."""
        for text in texts:
            if len(text) > PIECE_CHARS:
                self._bound(text, param)
        return self._ids(texts, special)

    def _bound(self, text: str, param: str) -> None:
        count = seen = 0
        for k, piece in enumerate(pieces(text), start=1):
            count += len(self._ids([piece], False)[0])
            seen += len(piece)
            if count > self.max_tokens + 2 * k:  # a cut can change a piece's count by a token at either end
                raise APIError(400, f"the prompt has more than {self.max_tokens:,} tokens ({count:,} in its first "
                               f"{seen:,} of {len(text):,} characters); this server accepts at most "
                               f"{self.max_tokens:,} (--max-prompt-tokens)", param=param,
                               code="context_length_exceeded")
