"""Request checks: every bad request gets an OpenAI-shaped 4xx (never a 500 or FastAPI's ``{"detail": ...}``),
and prompts are cut so the reply has room."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.serve_helpers import assert_error, client
from tests.teacher_helpers import minilm_tokenizer, one_thread, serve_in_thread, tiny_gpt2, tiny_t5
from tinydistill.serve import Limits, create_app

pytestmark = pytest.mark.usefixtures(one_thread.__name__)


@pytest.fixture(scope="module")
def gpt2_url():
    """A tiny GPT-2 with 1,024 positions; prompts over 2,000 tokens are refused, bodies over 200 kB get 413."""
    limits = Limits(max_prompt_tokens=2000, max_body_bytes=200_000, max_n=4)
    with serve_in_thread(create_app(tiny_gpt2(), minilm_tokenizer(), model_name="tiny", limits=limits)) as url:
        yield url


def _post(url: str, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=60)


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"prompt": "hi", "max_tokens": -1}, "max_tokens", "invalid_value"),
        ({"prompt": "hi", "max_tokens": 0}, "max_tokens", "invalid_value"),  # not silently the default
        ({"prompt": "hi", "max_completion_tokens": 0}, "max_completion_tokens", "invalid_value"),
        ({"prompt": "hi", "max_tokens": 1024}, "max_tokens", "max_tokens_too_large"),  # 1,024 positions
        ({"prompt": "hi", "max_tokens": 10**9}, "max_tokens", "max_tokens_too_large"),
        ({"prompt": "hi", "n": 0}, "n", "invalid_value"),
        ({"prompt": "hi", "n": -1}, "n", "invalid_value"),
        ({"prompt": "hi", "n": 5}, "n", "invalid_value"),  # over max_n
        ({"prompt": "hi", "temperature": -1}, "temperature", "invalid_value"),
        ({"prompt": "hi", "top_p": 0}, "top_p", "invalid_value"),
        ({"prompt": []}, "prompt", "invalid_value"),
        ({"prompt": "word " * 3000}, "prompt", "context_length_exceeded"),  # 3,002 tokens > 2,000
    ],
)
def test_bad_values_are_400_naming_the_parameter(gpt2_url: str, body: dict, param: str, code: str) -> None:
    assert_error(_post(gpt2_url, "/completions", body), 400, param=param, code=code)


def test_bad_chat_requests_and_schema_errors(gpt2_url: str) -> None:
    assert_error(_post(gpt2_url, "/chat/completions", {"messages": []}), 400, param="messages")
    assert_error(
        _post(gpt2_url, "/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "n": 0}), 400, "n"
    )
    assert_error(_post(gpt2_url, "/chat/completions", {"messages": "hi"}), 422, param="messages")
    assert_error(_post(gpt2_url, "/chat/completions", {}), 422, param="messages")
    assert_error(_post(gpt2_url, "/completions", {"prompt": {"a": 1}}), 422)
    assert_error(_post(gpt2_url, "/completions", {"prompt": "hi", "max_tokens": "many"}), 422, param="max_tokens")
    bad_json = httpx.post(f"{gpt2_url}/completions", content=b"{not json", timeout=30,
                          headers={"content-type": "application/json"})
    assert_error(bad_json, 400, code="invalid_json")
    assert_error(httpx.get(f"{gpt2_url}/nowhere", timeout=30), 404)
    assert_error(httpx.get(f"{gpt2_url}/completions", timeout=30), 405)


def test_unknown_model_is_404_also_through_the_openai_client(gpt2_url: str) -> None:
    assert_error(_post(gpt2_url, "/completions", {"model": "gpt-9", "prompt": "hi"}), 404, "model", "model_not_found")
    assert_error(httpx.get(f"{gpt2_url}/models/gpt-9", timeout=30), 404, code="model_not_found")
    with pytest.raises(openai.NotFoundError) as caught:
        client(gpt2_url).chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["code"] == "model_not_found"
    with pytest.raises(openai.BadRequestError) as caught:
        client(gpt2_url).completions.create(model="tiny", prompt="hi", max_tokens=-1)
    assert caught.value.body["param"] == "max_tokens"


def test_large_bodies_are_413_and_a_1_mb_prompt_is_a_clean_4xx(gpt2_url: str) -> None:
    big = {"prompt": "word " * 60_000}  # 300 kB > 200 kB
    assert_error(_post(gpt2_url, "/completions", big), 413, code="request_too_large")
    chunked = httpx.post(  # no content-length: the body is counted as it arrives
        f"{gpt2_url}/completions",
        content=iter([json.dumps(big).encode()[i : i + 50_000] for i in range(0, 300_010, 50_000)]),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert_error(chunked, 413, code="request_too_large")
    with serve_in_thread(create_app(tiny_gpt2(), minilm_tokenizer(), model_name="tiny")) as url:  # defaults
        huge = _post(url, "/completions", {"prompt": "word " * 200_000})  # 1 MB, 200,002 tokens
        assert_error(huge, 400, "prompt", "context_length_exceeded")
        assert_error(_post(url, "/completions", {"prompt": "word " * 600_000}), 413)  # 3 MB > 2 MiB


def test_long_prompts_are_cut_to_leave_room_for_the_reply(gpt2_url: str) -> None:
    c = client(gpt2_url)
    long_prompt = "word " * 1500  # 1,502 tokens on a 1,024-position model
    out = c.completions.create(model="tiny", prompt=long_prompt, max_tokens=8, temperature=0)
    assert out.usage.prompt_tokens == 1024 - 8 and 1 <= out.usage.completion_tokens <= 8
    default = c.completions.create(model="tiny", prompt=long_prompt, temperature=0)  # default max_tokens 16
    assert default.usage.prompt_tokens == 1024 - 16
    chat = c.chat.completions.create(model="tiny", messages=[{"role": "user", "content": long_prompt}], max_tokens=4)
    assert chat.usage.prompt_tokens == 1024 - 4
    short = c.completions.create(model="tiny", prompt="hello", max_tokens=3, temperature=0)
    assert short.usage.prompt_tokens == 3  # [CLS] hello [SEP]: short prompts are not touched


def test_t5_caps_max_tokens_by_the_server_limit() -> None:
    app = create_app(tiny_t5(), minilm_tokenizer(), model_name="t5", limits=Limits(max_tokens=64))
    with serve_in_thread(app) as url:
        err = assert_error(_post(url, "/completions", {"prompt": "hi", "max_tokens": 10**9}), 400, "max_tokens")
        assert "at most 64" in err["message"]
        out = client(url).completions.create(model="t5", prompt="word " * 3000, max_tokens=64, temperature=0)
        assert out.usage.prompt_tokens == 1024 and out.usage.completion_tokens == 64  # inputs cut to 1,024
    wider = create_app(tiny_t5(), minilm_tokenizer(), model_name="t5", limits=Limits(max_input_tokens=2000))
    with serve_in_thread(wider) as url:  # no position limit in T5's config: --max-input-tokens decides
        out = client(url).completions.create(model="t5", prompt="word " * 3000, max_tokens=2, temperature=0)
        assert out.usage.prompt_tokens == 2000


def test_edge_values_that_are_valid_are_answered(gpt2_url: str) -> None:
    c = client(gpt2_url)
    tiny_t = c.completions.create(model="tiny", prompt="hi", max_tokens=3, temperature=1e-30)  # greedy, not NaN
    greedy = c.completions.create(model="tiny", prompt="hi", max_tokens=3, temperature=0)
    assert tiny_t.choices[0].text == greedy.choices[0].text
    for seed in (-5, 10**30):
        out = c.completions.create(model="tiny", prompt="hi", max_tokens=3, temperature=1.0, seed=seed, n=2)
        assert len(out.choices) == 2
    one_token = c.completions.create(model="tiny", prompt="", max_tokens=2)  # "" is [CLS] [SEP]
    assert one_token.usage.prompt_tokens == 2
