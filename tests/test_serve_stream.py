"""``"stream": true``: Server-Sent Events read by the official ``openai`` client from a real loopback server."""

from __future__ import annotations

import httpx
import pytest

from tests.serve_helpers import client
from tests.teacher_helpers import minilm_tokenizer, one_thread, serve_in_thread, tiny_gpt2, tiny_t5
from tinydistill.serve import create_app

pytestmark = pytest.mark.usefixtures(one_thread.__name__)

PROMPT = "a much longer prompt about the sky and why it is blue today"
# tiny_gpt2(seed=1) and tiny_t5() answer it (and its chat rendering) with several tokens, not an EOS at once


@pytest.mark.parametrize("make", [lambda: tiny_gpt2(seed=1), tiny_t5], ids=["gpt2", "t5"])
def test_streamed_chat_equals_the_plain_reply(make) -> None:
    with serve_in_thread(create_app(make(), minilm_tokenizer(), model_name="m")) as url:
        c = client(url)
        msgs = [{"role": "user", "content": PROMPT}]
        plain = c.chat.completions.create(model="m", messages=msgs, max_tokens=10, temperature=0)
        chunks = list(
            c.chat.completions.create(
                model="m",
                messages=msgs,
                max_tokens=10,
                temperature=0,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    text = plain.choices[0].message.content
    assert text  # a non-empty reply, so the comparison below means something
    deltas = [ch.choices[0].delta for ch in chunks if ch.choices]
    assert deltas[0].role == "assistant"
    assert sum(1 for d in deltas if d.content) >= 2  # the text came in pieces, not one block
    assert "".join(d.content or "" for d in deltas).strip() == text
    assert {ch.object for ch in chunks} == {"chat.completion.chunk"} and len({ch.id for ch in chunks}) == 1
    finishes = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
    assert finishes == [plain.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == plain.usage.prompt_tokens


def test_streamed_completions_with_two_choices_and_a_stop_string() -> None:
    model, tok = tiny_gpt2(seed=1), minilm_tokenizer()  # seed 1: a reply of several words, not one EOS
    with serve_in_thread(create_app(model, tok, model_name="m")) as url:
        c = client(url)
        plain = c.completions.create(model="m", prompt=PROMPT, max_tokens=12, temperature=0)
        words = plain.choices[0].text.split()
        assert len(words) >= 4
        stop = " " + words[2]  # the third word ends the reply early
        plain_stop = c.completions.create(model="m", prompt=PROMPT, max_tokens=12, temperature=0, stop=[stop])
        streamed = list(
            c.completions.create(model="m", prompt=PROMPT, max_tokens=12, temperature=0, stop=[stop], stream=True)
        )
        sampled = list(
            c.completions.create(model="m", prompt=PROMPT, max_tokens=6, temperature=1.0, n=2, seed=3, stream=True)
        )
    expected = plain.choices[0].text[: plain.choices[0].text.index(stop)]
    assert plain_stop.choices[0].text == expected and plain_stop.choices[0].finish_reason == "stop"
    assert plain_stop.usage.completion_tokens < 12  # generation stopped at the stop string, not at max_tokens
    assert "".join(ch.choices[0].text for ch in streamed).strip() == expected
    assert [ch.choices[0].finish_reason for ch in streamed if ch.choices[0].finish_reason] == ["stop"]
    assert all(stop not in ch.choices[0].text for ch in streamed)
    by_choice: dict[int, list[str | None]] = {0: [], 1: []}
    for ch in sampled:
        by_choice[ch.choices[0].index].append(ch.choices[0].finish_reason)
    assert all(reasons[-1] is not None and reasons.count(None) == len(reasons) - 1 for reasons in by_choice.values())


def test_stream_is_server_sent_events_ending_with_done() -> None:
    with serve_in_thread(create_app(tiny_gpt2(), minilm_tokenizer(), model_name="m")) as url, httpx.stream(
        "POST", f"{url}/completions", json={"prompt": PROMPT, "max_tokens": 4, "stream": True}, timeout=30
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"
