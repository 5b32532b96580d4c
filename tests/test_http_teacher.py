"""The HTTP backend against a real ``serve`` on loopback: retries, fault injection, exactly-once, API keys."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.teacher_helpers import (
    EMPTY_CHOICES,
    HTML_PAGE,
    NO_CHOICES,
    TRUNCATED,
    free_port,
    gateway_app,
    make_examples,
    minilm_tokenizer,
    one_thread,
    serve_in_thread,
    tiny_gpt2,
)
from tinydistill.config.teachers import GenerationSpec, HTTPTeacherSpec
from tinydistill.errors import TinyDistillError
from tinydistill.serve import create_app
from tinydistill.teachers.backend import Generation
from tinydistill.teachers.cache import TeacherCache
from tinydistill.teachers.factory import build_teacher
from tinydistill.teachers.hf import HFBackend
from tinydistill.teachers.http import (
    HTTPBackend,
    MalformedReply,
    TeacherHTTPError,
    _retryable_status,
    parse_reply,
    snippet,
)
from tinydistill.teachers.live import LiveTeacher
from tinydistill.teachers.templates import dumps_messages, messages_to_text

pytestmark = pytest.mark.usefixtures(one_thread.__name__)
GEN = GenerationSpec(max_new_tokens=4)


def _http_teacher(url: str, cache: Path, **kw) -> LiveTeacher:
    backend = HTTPBackend(url, "tiny", generation=GEN, backoff_s=0.01, **kw)
    return LiveTeacher("remote", backend, TeacherCache(cache), generation=GEN)


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_http_teacher_matches_local_teacher(tmp_path: Path, api: str) -> None:
    model, tok = tiny_gpt2(), minilm_tokenizer()
    rows = make_examples(6)
    local = LiveTeacher(
        "local",
        HFBackend(model, tok, name="tiny", generation=GEN),
        TeacherCache(tmp_path / "local.sqlite"),
        generation=GEN,
    )
    with serve_in_thread(create_app(model, tok, model_name="tiny")) as url:
        remote = _http_teacher(url, tmp_path / "c.sqlite", api=api, concurrency=3)
        # no chat template: chat messages and completions prompts reach the model as the same text
        assert remote.rationales(rows) == local.rationales(rows)
        assert remote.stats.calls == 6 and remote.stats.prompt_tokens > 0


def test_fault_injection_every_row_completes_exactly_once(tmp_path: Path) -> None:
    rows = make_examples(24)
    app = create_app(
        tiny_gpt2(), minilm_tokenizer(), model_name="tiny", fault_rate=0.4, fault_seed=1, slow_s=0.05
    )
    with serve_in_thread(app) as url:
        t = _http_teacher(url, tmp_path / "c.sqlite", api="completions", concurrency=4, max_retries=30)
        out = t.rationales(rows)
        assert len(out) == 24 and t.stats.calls == 24 and t.backend.retries > 0
        stats = app.state.stats
        assert stats["fault_429"] and stats["fault_500"] and stats["fault_slow"]
        assert len(app.state.completed) == 24 and set(app.state.completed.values()) == {1}
        requests = stats["requests"]
        again = _http_teacher(url, tmp_path / "c.sqlite", api="completions", concurrency=4, max_retries=30)
        assert again.rationales(rows) == out and again.stats.calls == 0
        assert stats["requests"] == requests  # the rerun sent nothing
    assert len(TeacherCache(tmp_path / "c.sqlite")) == 24


def test_connection_errors_are_retried_then_fail_and_release(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    t = _http_teacher(url, tmp_path / "c.sqlite", max_retries=2)
    with pytest.raises(TeacherHTTPError, match="gave up after 3 attempts"):
        t.rationales(make_examples(2))
    assert t.backend.retries == 4
    assert len(t.cache.claim(["any"])) == 1  # leases of the failed rows were released (no stale claims)
    assert t.cache._db.execute("SELECT COUNT(*) FROM leases WHERE key != 'any'").fetchone()[0] == 0


def _mock(handler) -> httpx.MockTransport:
    return httpx.MockTransport(handler)


def _ok(text: str = "Because. Thus, the answer is (a) x.") -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "choices": [{"message": {"content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2},
        },
    )


def _per_row(app) -> dict[str, int]:
    """Requests the server received, by row id (``Question q3: …`` → ``q3``)."""
    return {re.search(r"Question (\w+):", prompt).group(1): n for prompt, n in app.state.requests.items()}


def test_5xx_and_429_are_retried_400_is_not(tmp_path: Path) -> None:
    """Counted per row on a real loopback server: a retried row costs exactly one request per failed attempt."""
    app = gateway_app({"Question q0:": [("text/plain", "busy", 503), ("text/plain", "slow down", 429)],
                       "Question q2:": [("text/plain", "gateway", 502)]},
                      always_bad={"Question q1:": ("text/plain", "bad request", 400)})
    with serve_in_thread(app) as url:
        t = _http_teacher(url, tmp_path / "c.sqlite", api="chat", concurrency=2, max_retries=3)
        with pytest.raises(TeacherHTTPError, match=r"row 'q1': .*HTTP 400: 'bad request'"):
            t.rationales(make_examples(4))
    assert _per_row(app) == {"q0": 3, "q1": 1, "q2": 2, "q3": 1}
    assert t.backend.retries == 3 and t.backend.faults == {"HTTP 503": 1, "HTTP 429": 1, "HTTP 502": 1}
    assert t.backend.failures == 1 and len(TeacherCache(tmp_path / "c.sqlite")) == 3


def test_a_real_timeout_is_retried_then_gives_up_after_max_retries_plus_one_attempts(tmp_path: Path) -> None:
    app = gateway_app(delay_s=0.4)  # answers, but only after the client's read timeout
    with serve_in_thread(app) as url:
        backend = HTTPBackend(url, "tiny", generation=GEN, backoff_s=0.01, max_retries=1, timeout_s=0.05)
        t = LiveTeacher("remote", backend, TeacherCache(tmp_path / "c.sqlite"), generation=GEN)
        with pytest.raises(TeacherHTTPError, match="gave up after 2 attempts; last: ReadTimeout"):
            t.rationales(make_examples(1))
        assert _per_row(app) == {"q0": 2}
    assert backend.retries == 1 and backend.faults == {"ReadTimeout": 1} and backend.failures == 1


def test_sampling_sends_seed_per_sample() -> None:
    bodies = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return _ok()

    gen = GenerationSpec(max_new_tokens=4, gen_temperature=0.8, num_samples=2, seed=10, stop=("\n\n",))
    b = HTTPBackend("http://teacher.invalid/v1", "m", transport=_mock(handler), generation=gen)
    list(b.generate([json.dumps([{"role": "user", "content": "hi"}])] * 2, [0, 1]))
    assert sorted(x["seed"] for x in bodies) == [10, 11] and bodies[0]["stop"] == ["\n\n"]
    assert bodies[0]["temperature"] == 0.8 and bodies[0]["messages"] == [{"role": "user", "content": "hi"}]
    assert bodies[0]["top_p"] == gen.top_p


def test_a_servers_retry_after_is_waited_and_a_reply_without_content_type_is_named(monkeypatch) -> None:
    import tinydistill.teachers.http as http_module

    waits: list[float] = []
    monkeypatch.setattr(http_module.time, "sleep", waits.append)
    replies = [httpx.Response(429, headers={"retry-after": "7"}, text="slow down"), _ok()]
    b = HTTPBackend("http://teacher.invalid/v1", "m", transport=_mock(lambda r: replies.pop(0)), backoff_s=0.01)
    assert b.request(json.dumps([{"role": "user", "content": "hi"}]), 0).text.startswith("Because")
    assert waits == [7.0]  # the server's Retry-After, not the 10 ms backoff
    b = HTTPBackend("http://teacher.invalid/v1", "m", max_retries=0,
                    transport=_mock(lambda r: httpx.Response(200, content=b"<html>oops</html>")))
    with pytest.raises(TeacherHTTPError, match=r"HTTP 200 but not a completion \(Invalid JSON: .*; no content-type\): "
                                               r"'<html>oops</html>'$"):
        b.request(json.dumps([{"role": "user", "content": "hi"}]), 0)


def test_api_key_from_env_is_sent_but_never_stored_or_shown(tmp_path: Path, monkeypatch) -> None:
    secret = "sk-test-SECRET-123"
    monkeypatch.setenv("TEACHER_KEY", secret)
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return _ok() if len(seen) <= 2 else httpx.Response(401, text="invalid key")

    spec = HTTPTeacherSpec(
        name="api",
        base_url="http://teacher.invalid/v1",
        model="m",
        api_key_env="TEACHER_KEY",
        generation={"max_new_tokens": 4},
    )
    backend = HTTPBackend.from_spec(spec)
    backend._client._transport = _mock(handler)
    t = build_teacher(spec, cache_path=tmp_path / "c.sqlite", backend=backend)
    t.rationales(make_examples(2))
    assert seen == [f"Bearer {secret}"] * 2
    with pytest.raises(TeacherHTTPError) as err:
        t.rationales(make_examples(3)[2:])
    assert secret not in str(err.value) and secret not in repr(backend)
    t.close()
    for f in tmp_path.iterdir():
        assert secret.encode() not in f.read_bytes(), f
    monkeypatch.delenv("TEACHER_KEY")
    with pytest.raises(TinyDistillError, match="TEACHER_KEY"):
        HTTPBackend.from_spec(spec)
    for pasted in (secret, "sk-proj-Zq81xY", "gsk_abc", "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6"):  # a key, not a name
        with pytest.raises(TinyDistillError, match="^api_key_env looks like an API key, not the name of an "
                           "environment variable: export the key and write the variable's name there$") as err:
            HTTPBackend("http://teacher.invalid/v1", "m", api_key_env=pasted)
        assert pasted not in str(err.value)
        with pytest.raises(ValueError, match="looks like an API key") as err:
            HTTPTeacherSpec(name="api", base_url="http://x/v1", model="m", api_key_env=pasted)
        assert pasted not in json.dumps(err.value.errors()[0]["msg"])
    assert HTTPTeacherSpec(name="api", base_url="http://x/v1", model="m", api_key_env="OPENAI_API_KEY")


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_a_2xx_that_is_not_a_completion_is_retried_and_counted(tmp_path: Path, api: str) -> None:
    """A gateway's HTML page, a cut-off body, an error object without `choices`: each is a retried fault."""
    bad = {"Question q1:": [HTML_PAGE], "Question q2:": [TRUNCATED, TRUNCATED], "Question q3:": [NO_CHOICES],
           "Question q4:": [EMPTY_CHOICES]}
    app = gateway_app(bad)
    with serve_in_thread(app) as url:
        t = _http_teacher(url, tmp_path / "c.sqlite", api=api, concurrency=3, max_retries=3)
        out = t.rationales(make_examples(6))
    assert all(r and r.startswith("Because") for r in out)
    assert t.backend.retries == 5 and t.backend.faults == {"malformed reply": 5} and t.backend.failures == 0
    assert _per_row(app) == {"q0": 1, "q1": 2, "q2": 3, "q3": 2, "q4": 2, "q5": 1} and t.stats.calls == 6


def test_a_reply_that_stays_malformed_fails_in_one_line_naming_row_and_endpoint(tmp_path: Path) -> None:
    app = gateway_app(always_bad={"Question q2:": HTML_PAGE})
    with serve_in_thread(app) as url:
        t = _http_teacher(url, tmp_path / "c.sqlite", api="chat", concurrency=2, max_retries=2)
        with pytest.raises(TeacherHTTPError) as err:
            t.rationales(make_examples(5))
        msg = str(err.value)
        assert "\n" not in msg and msg.startswith("teacher 'remote', row 'q2': ")
        assert f"{url}/chat/completions: gave up after 3 attempts" in msg
        assert "HTTP 200 but not a completion" in msg and "text/html" in msg and "'<html> <head>" in msg
        assert t.backend.failures == 1 and t.backend.retries == 2
        assert _per_row(app) == {"q0": 1, "q1": 1, "q2": 3, "q3": 1, "q4": 1}  # max_retries + 1 attempts, no more
        assert len(TeacherCache(tmp_path / "c.sqlite")) == 4  # the other rows were kept
        app.state.always_bad.clear()  # the gateway recovers: only the missing row is asked for
        before = sum(app.state.requests.values())
        again = _http_teacher(url, tmp_path / "c.sqlite", api="chat")
        assert len(again.rationales(make_examples(5))) == 5 and again.stats.calls == 1
        assert sum(app.state.requests.values()) == before + 1


def test_a_body_that_does_not_decode_is_a_retried_fault_and_the_answered_rows_are_kept(tmp_path: Path) -> None:
    """HTTP 200 with `Content-Encoding: gzip` over a body that is not gzip: httpx raises DecodingError while
    reading it. That is one more failed attempt (retried, counted), never a traceback out of `teach`."""
    tries: dict[str, int] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        prompt = json.dumps(json.loads(request.content)["messages"])
        row = re.search(r"Question (q\d+):", prompt).group(1)
        tries[row] = tries.get(row, 0) + 1
        if row == "q2" or (row == "q1" and tries[row] == 1):  # q1 recovers, q2 never does
            return httpx.Response(200, content=b"not gzip at all", headers={"Content-Encoding": "gzip"})
        return _ok()

    t = _http_teacher("http://teacher.invalid/v1", tmp_path / "c.sqlite", api="chat", max_retries=2,
                      transport=_mock(handler))
    with pytest.raises(TeacherHTTPError) as err:
        t.rationales(make_examples(4))
    msg = str(err.value)
    assert "\n" not in msg and "row 'q2'" in msg and "gave up after 3 attempts; last: DecodingError" in msg
    assert t.backend.faults == {"DecodingError": 3} and t.backend.retries == 3 and t.backend.failures == 1
    assert len(TeacherCache(tmp_path / "c.sqlite")) == 3  # q0, q1 (after its retry) and q3 were kept


def test_parse_reply_accepts_what_servers_send_and_names_what_is_wrong() -> None:
    ok = parse_reply(b'{"choices": [{"message": {"content": " hi "}}], "usage": {"prompt_tokens": null}}', "chat")
    assert ok == Generation("hi", 0, 0, "stop")  # null usage (llama.cpp), no finish_reason
    cut = parse_reply(b'{"choices": [{"text": "x", "finish_reason": "length"}]}', "completions")
    assert cut == Generation("x", 0, 0, "length")
    for body, says in ((b"<html>", "Invalid JSON"), (b'{"choices": 3}', "choices: Input should be a valid array"),
                       (b"[1, 2]", "Input should be an object"), (b'{"choices": []}', "choices: empty list"),
                       (b'{"choices": [{"text": "x"}]}', "choices.0.message: missing"),
                       (b'{"choices": [{"message": 3}]}', "choices.0.message: Input should be an object")):
        with pytest.raises(MalformedReply, match="^" + re.escape(says)):  # where (if anywhere), then what
            parse_reply(body, "chat")
    with pytest.raises(MalformedReply, match=r"^choices\.0\.text: missing \(not a text completion\)$"):
        parse_reply(b'{"choices": [{"message": {"content": "x"}}]}', "completions")
    both = b'{"choices": [{"text": "the text", "message": {"content": "a message"}}]}'  # each api reads its own
    assert parse_reply(both, "completions").text == "the text" and parse_reply(both, "chat").text == "a message"


def test_backoff_round_robin_request_body_and_argument_checks() -> None:
    b = HTTPBackend(["http://a/v1/", "http://b/v1"], "m", api="completions", backoff_s=1.0, backoff_max_s=5.0,
                    generation=GenerationSpec(max_new_tokens=4, stop=("\n\n",)))
    assert [b.endpoint() for _ in range(3)] == ["http://a/v1", "http://b/v1", "http://a/v1"]
    three = HTTPBackend(["http://a/v1", "http://b/v1", "http://c/v1"], "m")
    assert [three.endpoint()[7] for _ in range(4)] == ["a", "b", "c", "a"]  # in order, not backwards
    assert repr(b) == "HTTPBackend('http://a/v1, http://b/v1', model='m', api='completions')"
    # exponential backoff with jitter in [base/2, base], base = backoff_s · 2^attempt capped at backoff_max_s
    for attempt, base in ((0, 1.0), (2, 4.0), (5, 5.0)):
        delays = [b._delay(attempt, None) for _ in range(40)]
        assert all(base / 2 <= d <= base for d in delays) and max(delays) - min(delays) > base / 10
    class Draws:  # the jitter's random numbers, chosen: the ends of its range
        def __init__(self, *values: float) -> None:
            self.values = list(values)

        def random(self) -> float:
            return self.values.pop(0)

    b._rng, real_rng = Draws(0.0, 1.0, 0.5), b._rng
    assert [b._delay(2, None) for _ in range(3)] == [2.0, 4.0, 3.0]  # base · (0.5 + u/2)
    b._rng = real_rng
    assert b._delay(0, httpx.Response(429, headers={"retry-after": "3"})) == 3.0  # the server's wait, honoured
    assert b._delay(0, httpx.Response(429, headers={"retry-after": "100"})) == 5.0  # capped
    assert 0.5 <= b._delay(0, httpx.Response(503, headers={"retry-after": "soon"})) <= 1.0  # unreadable: ignored
    assert b.params() == {"api": "completions", "max_tokens": 4, "temperature": 0.0, "top_p": 1.0, "seed": None,
                          "stop": ["\n\n"]}
    assert b.body("hi", 3) == {"model": "m", "max_tokens": 4, "temperature": 0.0, "n": 1, "stop": ["\n\n"],
                               "prompt": "hi"}  # greedy: no seed, no top_p
    with pytest.raises(ValueError, match="^api must be 'chat' or 'completions', got 'x'$"):
        HTTPBackend("http://a/v1", "m", api="x")
    with pytest.raises(ValueError, match="^base_url: at least one endpoint is needed$"):
        HTTPBackend([], "m")
    d = HTTPBackend("http://a/v1", "m")  # the constructor's defaults; no revision (part of every cache key)
    assert (d.concurrency, d.max_retries, d.backoff_s, d.backoff_max_s, d.revision, d.base_url) == (
        4, 5, 0.5, 30.0, None, "http://a/v1") and d._client.timeout == httpx.Timeout(60.0)
    sampled = HTTPBackend("http://a/v1", "m", generation=GenerationSpec(gen_temperature=0.5, top_p=0.9, seed=3))
    assert sampled.params() == {"api": "chat", "max_tokens": 128, "temperature": 0.5, "top_p": 0.9, "seed": 3,
                                "stop": []}
    greedy = HTTPBackend("http://a/v1", "m", generation=GenerationSpec(top_p=0.9, seed=3))  # neither matters: not
    assert (greedy.params()["top_p"], greedy.params()["seed"]) == (1.0, None)  # in the cache key
    hi = [{"role": "user", "content": "hi"}]
    assert b.render(hi) == messages_to_text(hi) and HTTPBackend("http://a/v1", "m").render(hi) == dumps_messages(hi)
    assert [_retryable_status(c) for c in (400, 401, 404, 408, 409, 429, 499, 500, 503)] == [
        False, False, False, True, False, True, False, True, True]
    # a reply's body in an error message: on one line, cut after 120 characters with an ellipsis
    assert snippet("<html>\n  <body>x</body>\n</html>") == "'<html> <body>x</body> </html>'"
    assert snippet("y" * 120) == repr("y" * 120) and snippet("y" * 121) == repr("y" * 120 + "…")
    assert snippet("abcdef", 3) == repr("abc…")
    # a spec's every setting reaches the backend (none left at the constructor's default)
    spec = HTTPTeacherSpec(name="t", base_url=("http://a/v1X", "http://b/v1/"), model="m2", api="completions",
                           concurrency=3, max_retries=7, timeout_s=12.5, retry_backoff_s=0.25,
                           generation={"max_new_tokens": 6})
    f = HTTPBackend.from_spec(spec)
    assert (f.base_urls, f.model, f.api, f.concurrency, f.max_retries, f.backoff_s, f.generation) == (
        ["http://a/v1X", "http://b/v1"], "m2", "completions", 3, 7, 0.25, GenerationSpec(max_new_tokens=6))
    assert f._client.timeout == httpx.Timeout(12.5)


def test_several_failed_requests_are_raised_together_after_the_others_finish() -> None:
    lock, inflight, most = threading.Condition(), [0], [0]

    def handler(request: httpx.Request) -> httpx.Response:
        with lock:  # hold each request until a third is in flight (there never is one) or 0.2 s passed
            inflight[0] += 1
            most[0] = max(most[0], inflight[0])
            lock.notify_all()
            lock.wait_for(lambda: inflight[0] >= 3, timeout=0.2)
            inflight[0] -= 1
        bad = "bad" in json.loads(request.content)["messages"][0]["content"]
        return httpx.Response(400, text="no") if bad else _ok()

    b = HTTPBackend("http://teacher.invalid/v1", "m", transport=_mock(handler), generation=GEN, concurrency=2)
    prompts = [json.dumps([{"role": "user", "content": c}]) for c in ("ok", "bad", "ok", "bad")]
    done = []
    with pytest.raises(TeacherHTTPError, match=r"HTTP 400: 'no' \(2 of 4 requests failed\)$") as err:
        done.extend(i for i, _ in b.generate(prompts, [0] * 4))
    assert sorted(done) == [0, 2] and sorted(err.value.failed) == [1, 3] and b.failures == 2 and b.retries == 0
    assert most[0] <= 2  # at most `concurrency` requests in flight
    with pytest.raises(TeacherHTTPError, match=r"^http://teacher.invalid/v1/chat/completions: HTTP 400: 'no'$"):
        list(b.generate(prompts[:2], [0, 0]))  # one failure: no count appended
    with pytest.raises(ValueError):
        list(b.generate(prompts, [0]))  # one sample index per prompt


def test_results_are_yielded_as_they_complete_and_a_consumer_that_stops_cancels_the_rest() -> None:
    release, events = threading.Event(), []

    def handler(request: httpx.Request) -> httpx.Response:
        content = json.loads(request.content)["messages"][0]["content"]
        if content == "slow":
            release.wait(timeout=10)
            events.append("slow done")
        return _ok(content)

    b = HTTPBackend("http://teacher.invalid/v1", "m", transport=_mock(handler), generation=GEN, concurrency=2)
    rows = b.generate([json.dumps([{"role": "user", "content": c}]) for c in ("slow", "fast")], [0, 0])
    assert next(rows)[0] == 1 and events == []  # the fast row first, while the slow one is still running
    release.set()
    assert next(rows)[0] == 0 and events == ["slow done"]

    calls: list[str] = []

    def counting(request: httpx.Request) -> httpx.Response:
        calls.append("start")
        time.sleep(0.05)
        calls.append("end")
        return _ok()

    b = HTTPBackend("http://teacher.invalid/v1", "m", transport=_mock(counting), generation=GEN, concurrency=1)
    rows = b.generate([json.dumps([{"role": "user", "content": str(i)}]) for i in range(6)], [0] * 6)
    next(rows)
    rows.close()  # waits for the request in flight, cancels the ones not started
    assert calls.count("start") <= 2 and calls.count("end") == calls.count("start")  # none left running
