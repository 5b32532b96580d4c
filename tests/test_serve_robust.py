"""One large or stuck request must not stop the server answering: cancellation, time limits, fairness, /health.

The model is slowed (or blocked) by a forward hook, so a "large" request takes seconds, as on a real model.
"""

from __future__ import annotations

import httpx
import pytest

from tests.serve_helpers import Gate, assert_error, client, in_thread, slowed, wait_until
from tests.teacher_helpers import minilm_tokenizer, one_thread, serve_in_thread, tiny_gpt2, tiny_t5
from tinydistill.serve import Limits, create_app

pytestmark = pytest.mark.usefixtures(one_thread.__name__)

PROMPT = "a much longer prompt about the sky and why it is blue today"  # no EOS from these models soon


def _idle(app) -> bool:
    s = app.state.engine.status()
    return s["active"] == 0 and s["queued"] == 0


def test_a_client_that_goes_away_cancels_its_generation() -> None:
    model = tiny_t5()
    app = create_app(model, minilm_tokenizer(), model_name="t5")
    with slowed(model, 0.02), serve_in_thread(app) as url:  # 1,000 tokens would take 20 s or more
        body = {"prompt": PROMPT, "max_tokens": 1000}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/completions", json=body, timeout=httpx.Timeout(30, read=0.5))
        wait_until(lambda: _idle(app), timeout_s=5)
        assert app.state.stats["disconnected"] == 1
        steps = app.state.engine.status()["steps"]
        stream = client(url).completions.create(model="t5", prompt=PROMPT, max_tokens=1000, stream=True)
        for i, _ in enumerate(stream):  # read a few events, then hang up
            if i == 3:
                break
        stream.close()
        wait_until(lambda: _idle(app), timeout_s=5)
        assert app.state.stats["disconnected"] == 2
        assert app.state.engine.status()["steps"] - steps < 300  # far fewer than the 1,000 asked for


def test_a_request_stops_at_its_time_limit_with_what_it_has() -> None:
    model = tiny_t5()
    app = create_app(model, minilm_tokenizer(), model_name="t5", limits=Limits(request_timeout_s=0.5))
    with slowed(model, 0.02), serve_in_thread(app) as url:
        out = client(url).completions.create(model="t5", prompt=PROMPT, max_tokens=1000, temperature=0)
        assert out.choices[0].finish_reason == "length" and 0 < out.usage.completion_tokens < 200
        streamed = list(client(url).completions.create(model="t5", prompt=PROMPT, max_tokens=1000, stream=True))
        assert streamed[-1].choices[0].finish_reason == "length"
    assert app.state.stats["time_limit"] == 2


def test_a_small_request_is_answered_while_a_huge_one_runs() -> None:
    model = tiny_gpt2(seed=1)
    app = create_app(model, minilm_tokenizer(), model_name="m", limits=Limits(request_timeout_s=3))
    with slowed(model, 0.01), serve_in_thread(app) as url:
        c = client(url)
        huge_thread, huge = in_thread(
            lambda: c.completions.create(model="m", prompt=PROMPT, max_tokens=1000, temperature=0)
        )
        wait_until(lambda: app.state.engine.status()["active"] == 1)
        small = [c.completions.create(model="m", prompt=f"{PROMPT} {i}", max_tokens=5, temperature=0) for i in range(3)]
        assert huge_thread.is_alive() and "done_at" not in huge  # answered while the huge one still ran
        assert all(s.usage.completion_tokens == 5 for s in small)
        huge_thread.join(timeout=30)
    assert huge["result"].choices[0].finish_reason == "length"  # stopped by its 3 s limit
    assert huge["result"].usage.completion_tokens < 1000


def test_health_fails_while_the_generator_is_stuck_and_models_does_not() -> None:
    model = tiny_gpt2()
    app = create_app(model, minilm_tokenizer(), model_name="m", limits=Limits(stall_s=0.3))
    gate = Gate(model)
    try:
        with serve_in_thread(app) as url:
            base = url.removesuffix("/v1")
            assert httpx.get(f"{base}/health", timeout=10).json()["status"] == "ok"
            gate.close()
            thread, box = in_thread(lambda: client(url).completions.create(model="m", prompt="hi", max_tokens=3))
            err = wait_until(lambda: (r := httpx.get(f"{base}/ready", timeout=10)).status_code == 503 and r, 5)
            assert_error(err, 503, code="not_ready")
            assert "no generation step" in err.json()["error"]["message"]
            assert httpx.get(f"{url}/models", timeout=10).status_code == 200  # what a naive check would ask
            gate.open()
            thread.join(timeout=30)
            assert box["result"].usage.completion_tokens >= 1
            assert httpx.get(f"{base}/health", timeout=10).status_code == 200
            app.state.engine.close()  # a generator thread that has died is not ready either
            assert_error(httpx.get(f"{base}/health", timeout=10), 503, code="not_ready")
            late = httpx.post(f"{url}/completions", json={"prompt": "hi", "max_tokens": 2}, timeout=10)
            assert_error(late, 503, code="not_ready")  # refused at once, not left to hang
    finally:
        gate.remove()
