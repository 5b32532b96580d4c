"""A hostile client beside normal ones (issue 40): bad text is a 400, a short request starts while a maximal one
holds the generator's rows, and a huge prompt is refused before it is tokenised whole."""

from __future__ import annotations

import httpx
import pytest

from tests.serve_helpers import assert_error, in_thread, slowed, wait_until
from tests.teacher_helpers import minilm_tokenizer, one_thread, serve_in_thread, tiny_gpt2
from tinydistill.serve import Limits, create_app
from tinydistill.serve.errors import APIError
from tinydistill.serve.tokenize import PIECE_CHARS, Encoder, pieces

pytestmark = pytest.mark.usefixtures(one_thread.__name__)


def test_a_lone_surrogate_is_a_400_not_a_500() -> None:
    with serve_in_thread(create_app(tiny_gpt2(), minilm_tokenizer(), model_name="tiny")) as url:
        head = {"content-type": "application/json"}
        r = httpx.post(f"{url}/completions", content='{"prompt": "hi \\ud800 there", "max_tokens": 2}', headers=head,
                       timeout=60)
        assert "surrogate" in assert_error(r, 400, param="prompt")["message"]
        r = httpx.post(f"{url}/chat/completions", headers=head, timeout=60,
                       content='{"messages": [{"role": "user", "content": "\\udfff"}], "max_tokens": 2}')
        assert_error(r, 400, param="messages")
        ok = httpx.post(f"{url}/completions", json={"prompt": "hi \U0001f600", "max_tokens": 2}, timeout=60)
        assert ok.status_code == 200  # a real astral character (a valid surrogate pair in JSON) is fine


def test_a_short_request_starts_while_a_maximal_one_holds_every_row() -> None:
    """64 prompts × 80 tokens (the default limits' maximum) fill max_active; a 4-token request from another client
    must not wait for them: it finishes within a few generator steps while the maximal one is still running."""
    model = tiny_gpt2()
    app = create_app(model, minilm_tokenizer(), model_name="tiny", max_active=64)
    with serve_in_thread(app) as url, slowed(model, 0.002):
        big = {"prompt": [f"long prompt number {i} about metals" for i in range(64)], "max_tokens": 80,
               "temperature": 0}
        _, big_box = in_thread(lambda: httpx.post(f"{url}/completions", json=big, timeout=300))
        engine = wait_until(lambda: getattr(app.state, "engine", None))
        wait_until(lambda: engine.status()["active"] >= 64, timeout_s=120)  # the maximal request holds every row
        start = engine.steps
        small = httpx.post(f"{url}/completions", json={"prompt": "hi", "max_tokens": 4, "temperature": 0},
                           timeout=300)
        steps = engine.steps - start
        assert small.status_code == 200 and small.json()["usage"]["completion_tokens"] == 4
        assert "done_at" not in big_box  # the maximal request is still generating
        assert steps <= 20, steps  # before: it waited for the 64 rows' 80 steps
        wait_until(lambda: "done_at" in big_box, timeout_s=300)
        assert big_box["result"].status_code == 200
        assert big_box["result"].json()["usage"]["completion_tokens"] == 64 * 80


def test_a_huge_prompt_is_refused_before_it_is_tokenised_whole() -> None:
    encoder = Encoder(minilm_tokenizer(), max_tokens=32_768)
    text = "word " * 380_000  # 1.9 MB: 380,000 tokens
    with pytest.raises(APIError) as e:
        encoder.encode([text], True, "prompt")
    assert e.value.status == 400 and e.value.code == "context_length_exceeded" and e.value.param == "prompt"
    assert encoder.chars_encoded < len(text) / 5, encoder.chars_encoded  # about 33k tokens' worth, not 1.9 MB
    near = "word " * 32_000  # long, under the limit: tokenised in full, the same ids as the tokenizer's
    assert encoder.encode([near, "short"], True, "prompt") == minilm_tokenizer()([near, "short"])["input_ids"]


def test_pieces_cover_the_text_and_cut_before_whitespace() -> None:
    text = ("abc " * 20_000) + "x" * (PIECE_CHARS + 5)
    parts = list(pieces(text))
    assert "".join(parts) == text and len(parts) > 2
    assert all(p[0] == " " for p in parts[1:-1] if not p.startswith("x"))


def test_tokenising_does_not_share_the_tokenizers_truncation_state() -> None:
    tok = minilm_tokenizer()
    tok(["a b c d e f"], truncation=True, max_length=4)  # leaves truncation set on the shared Rust tokenizer
    encoder = Encoder(tok, max_tokens=1000)
    assert len(encoder.encode(["a b c d e f"], True, "prompt")[0]) == 8  # [CLS] 6 words [SEP], not cut to 4
    limits = Limits()
    assert limits.max_prompt_tokens == 32_768
