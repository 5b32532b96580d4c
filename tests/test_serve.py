"""``tinydistill serve``: a real uvicorn server on loopback, driven by the official ``openai`` client."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from tests.teacher_helpers import (
    free_port,
    minilm_tokenizer,
    one_thread,
    serve_in_thread,
    tiny_bert2bert,
    tiny_gpt2,
)
from tinydistill.serve import create_app
from tinydistill.teachers.hf import HFBackend

pytestmark = pytest.mark.usefixtures(one_thread.__name__)


def _client(url: str, retries: int = 0) -> OpenAI:
    return OpenAI(base_url=url, api_key="unused", max_retries=retries, timeout=60)


def test_openai_client_chat_completions_and_models() -> None:
    model, tok = tiny_gpt2(), minilm_tokenizer()
    app = create_app(model, tok, model_name="tiny-gpt2")
    with serve_in_thread(app) as url:
        client = _client(url)
        assert [m.id for m in client.models.list()] == ["tiny-gpt2"]
        chat = client.chat.completions.create(
            model="tiny-gpt2",
            messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
            max_tokens=5,
            temperature=0,
        )
        assert isinstance(chat.choices[0].message.content, str) and chat.choices[0].finish_reason in (
            "stop",
            "length",
        )
        assert chat.usage.prompt_tokens > 0 and 0 < chat.usage.completion_tokens <= 5
        comp = client.completions.create(model="tiny-gpt2", prompt="hello there", max_tokens=4, temperature=0)
        direct = dict(HFBackend(model, tok, name="x").generate_texts(["hello there"], max_new_tokens=4))[0]
        assert (
            comp.choices[0].text == direct.text
        )  # the server returns exactly the model's greedy continuation
        many = client.completions.create(
            model="tiny-gpt2", prompt="abc", max_tokens=4, temperature=1.0, n=2, seed=1
        )
        assert len(many.choices) == 2
    assert app.state.stats["requests"] == 3


def test_encoder_decoder_model_is_served() -> None:
    model, tok = tiny_bert2bert(), minilm_tokenizer()
    messages = [{"role": "user", "content": "why is the sky blue?"}]
    local = HFBackend(model, tok, name="x")
    direct = dict(local.generate_texts([local.render(messages)], max_new_tokens=4))[0]
    assert direct.text.strip()  # a reply that says something, so the equality below compares words
    with serve_in_thread(create_app(model, tok, model_name="b2b")) as url:
        out = _client(url).chat.completions.create(model="b2b", messages=messages, max_tokens=4, temperature=0)
        assert out.choices[0].message.content == direct.text  # exactly the model's greedy reply


def test_fault_injection_answers_429_500_and_slow_and_the_client_recovers() -> None:
    app = create_app(
        tiny_gpt2(), minilm_tokenizer(), model_name="tiny", fault_rate=0.5, fault_seed=0, slow_s=0.05
    )
    with serve_in_thread(app) as url:
        codes = [
            httpx.post(
                f"{url}/completions", json={"prompt": f"p{i}", "max_tokens": 2}, timeout=30
            ).status_code
            for i in range(20)
        ]
        assert {200, 429, 500} <= set(codes)
        client = _client(url, retries=10)
        texts = [
            client.completions.create(model="tiny", prompt=f"q{i}", max_tokens=2, temperature=0)
            .choices[0]
            .text
            for i in range(5)
        ]
        assert len(texts) == 5
    stats = app.state.stats
    assert stats["fault_429"] and stats["fault_500"] and stats["fault_slow"]
    assert all(app.state.completed[f"q{i}"] == 1 for i in range(5))


@pytest.mark.slow
def test_serve_cli_subprocess_with_the_api_key_from_the_environment(tmp_path: Path) -> None:
    folder = tmp_path / "student"
    tiny_gpt2().save_pretrained(folder)
    minilm_tokenizer().save_pretrained(folder)
    port = free_port()
    key = "sk-test-0123456789"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TINYDISTILL_API_KEY": key}
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tinydistill.cli", "serve", str(folder), "--port", str(port), "--name", "student"],
        env=env,
        stderr=log,
    )
    try:
        url = f"http://127.0.0.1:{port}/v1"
        for _ in range(300):  # bounded: ~60 s for imports and model load on a busy machine
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 401:  # up, and asking for the key
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, "serve exited early"
            time.sleep(0.2)
        assert httpx.get(f"{url}/models", timeout=10).json()["error"]["code"] == "invalid_api_key"
        out = OpenAI(base_url=url, api_key=key, max_retries=0, timeout=60).completions.create(
            model="student", prompt="hello", max_tokens=3, temperature=0
        )
        direct = dict(HFBackend(tiny_gpt2(), minilm_tokenizer(), name="x").generate_texts(["hello"],
                                                                                        max_new_tokens=3))[0]
        assert out.model == "student" and out.choices[0].text == direct.text  # the saved model's greedy reply
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    printed = (tmp_path / "serve.log").read_text()
    assert f"serving student on http://127.0.0.1:{port}/v1 (API key: required)" in printed
    assert key not in printed and "warning" not in printed  # loopback by default: no bind warning


@pytest.mark.parametrize("host, port, words", [
    ("127.0.0.1", None, ["cannot listen there", "another server listens there", "--port"]),  # the port is taken
    ("127.0.0.1", 70000, ["--port 70000: not a TCP port"]),
    ("999.1.1.1", 8000, ["--host 999.1.1.1: not an address of this machine"]),
])
def test_the_address_is_bound_before_the_model_loads(host, port, words, monkeypatch):
    """A port in use was uvicorn's exit code 3 after the model loaded; a port out of range a traceback."""
    import socket

    from tinydistill.errors import TinyDistillError
    from tinydistill.serve import server

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded before the address was checked")

    monkeypatch.setattr(server, "load_choice_student", never)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(TinyDistillError) as err:
            server.serve("no-model", host=host, port=port if port is not None else taken.getsockname()[1])
    assert all(w in str(err.value) for w in words), str(err.value)
