"""The optional API key (``--api-key`` / ``TINYDISTILL_API_KEY``) on every route, and the bind warning."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import openai
import pytest

from tests.serve_helpers import assert_error, client
from tests.teacher_helpers import minilm_tokenizer, one_thread, serve_in_thread, tiny_gpt2
from tinydistill.cli import main
from tinydistill.serve import create_app
from tinydistill.serve.server import bind_warning, is_loopback

pytestmark = pytest.mark.usefixtures(one_thread.__name__)

KEY = "sk-test-0123456789"
ROUTES = [
    ("GET", "/v1/models", None),
    ("GET", "/v1/models/tiny", None),
    ("GET", "/health", None),
    ("GET", "/ready", None),
    ("POST", "/v1/completions", {"prompt": "hi", "max_tokens": 2}),
    ("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}),
    ("GET", "/v1/nowhere", None),
    ("GET", "/docs", None),
]


def test_every_route_needs_the_key_when_one_is_set() -> None:
    app = create_app(tiny_gpt2(), minilm_tokenizer(), model_name="tiny", api_key=KEY)
    with serve_in_thread(app) as url:
        base = url.removesuffix("/v1")
        for method, path, body in ROUTES:
            for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": KEY}):
                r = httpx.request(method, base + path, json=body, headers=headers, timeout=30)
                assert_error(r, 401, code="invalid_api_key")
            ok = httpx.request(method, base + path, json=body, headers={"authorization": f"Bearer {KEY}"}, timeout=30)
            assert ok.status_code == (404 if path == "/v1/nowhere" else 200), (path, ok.text)
        with pytest.raises(openai.AuthenticationError):
            client(url, api_key="wrong").models.list()
        out = client(url, api_key=KEY).completions.create(model="tiny", prompt="hi", max_tokens=2)
        assert out.usage.completion_tokens >= 1
    assert app.state.stats["requests"] == 3  # the two authorised POSTs above and the client's


def test_no_key_means_open_routes() -> None:
    with serve_in_thread(create_app(tiny_gpt2(), minilm_tokenizer(), model_name="tiny")) as url:
        assert httpx.get(f"{url}/models", timeout=30).status_code == 200


def test_bind_warning_names_the_exposure() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("") and not is_loopback("192.168.1.5")
    assert bind_warning("127.0.0.1", 8000, None) is None
    open_warning = bind_warning("0.0.0.0", 8000, None)
    assert "0.0.0.0:8000" in open_warning and "anyone" in open_warning and "--api-key" in open_warning
    assert "API key required" in bind_warning("0.0.0.0", 8000, KEY)


def test_cli_warns_when_bound_beyond_loopback(tmp_path: Path, monkeypatch, capsys) -> None:
    import uvicorn

    folder = tmp_path / "student"
    tiny_gpt2().save_pretrained(folder)
    minilm_tokenizer().save_pretrained(folder)
    seen: dict = {}
    with socket.socket() as probe:  # a free port: the address is really bound now, before the model loads
        probe.bind(("0.0.0.0", 0))
        port = probe.getsockname()[1]

    def fake_run(server, sockets=None) -> None:  # nothing listens in this test: the address is bound, not served
        seen.update(host=server.config.host, port=server.config.port, log_level=server.config.log_level,
                     bound=sockets[0].getsockname()[1])
        server.started = True

    monkeypatch.setattr(uvicorn.Server, "run", fake_run)
    monkeypatch.delenv("TINYDISTILL_API_KEY", raising=False)
    assert main(["serve", str(folder), "--host", "0.0.0.0", "--port", str(port)]) == 0
    err = capsys.readouterr().err
    assert seen == {"host": "0.0.0.0", "port": port, "log_level": "warning", "bound": port}
    assert f"warning: serving on 0.0.0.0:{port}, reachable by anyone" in err
    assert main(["serve", str(folder), "--port", str(port)]) == 0  # the default host: loopback, no warning
    assert seen["host"] == "127.0.0.1" and "warning" not in capsys.readouterr().err
    with pytest.raises(SystemExit) as bad:
        main(["serve", str(folder), "--max-n", "0"])
    assert bad.value.code == 2


def test_the_cli_engine_settings_reach_the_generation_app(tmp_path: Path, monkeypatch) -> None:
    import uvicorn

    from tinydistill.serve import app as app_module

    folder = tmp_path / "student"
    tiny_gpt2().save_pretrained(folder)
    minilm_tokenizer().save_pretrained(folder)
    made: dict = {}
    real = app_module.create_app

    def recording(*args, **kwargs):
        made.update(kwargs)
        return real(*args, **kwargs)

    def fake_run(server, sockets=None) -> None:
        server.started = True

    monkeypatch.setattr(app_module, "create_app", recording)
    monkeypatch.setattr(uvicorn.Server, "run", fake_run)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main(["serve", str(folder), "--port", str(port), "--max-batch", "3", "--max-active", "5",
                 "--max-queue", "7"]) == 0
    assert (made["max_batch"], made["max_active"], made["max_queue"]) == (3, 5, 7)
    assert made["model_name"] == str(folder) and made["api_key"] is None

