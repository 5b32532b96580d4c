"""Helpers for the ``tinydistill serve`` tests: slowed or blocked models, OpenAI error checks, bounded waits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from openai import OpenAI

ERROR_KEYS = {"message", "type", "param", "code"}


def client(url: str, api_key: str = "unused", retries: int = 0, timeout: float = 60) -> OpenAI:
    return OpenAI(base_url=url, api_key=api_key, max_retries=retries, timeout=timeout)


def assert_error(
    response: httpx.Response, status: int, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """``response`` is an OpenAI-shaped error with ``status`` (and ``param`` / ``code`` if given)."""
    assert response.status_code == status, (response.status_code, response.text[:300])
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == ERROR_KEYS, body
    err = body["error"]
    assert isinstance(err["message"], str) and err["message"] and "Traceback" not in response.text
    if param is not None:
        assert err["param"] == param, err
    if code is not None:
        assert err["code"] == code, err
    return err


def wait_until(predicate: Callable[[], Any], timeout_s: float = 10.0, every_s: float = 0.02) -> Any:
    """Poll ``predicate`` until it is truthy (returned) or ``timeout_s`` passes (AssertionError)."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if value := predicate():
            return value
        time.sleep(every_s)
    raise AssertionError(f"condition not met within {timeout_s} s")


@contextmanager
def slowed(model: Any, seconds: float) -> Iterator[None]:
    """Every forward pass of ``model`` takes at least ``seconds`` (a stand-in for a large model)."""
    handle = model.register_forward_pre_hook(lambda module, args: time.sleep(seconds))
    try:
        yield
    finally:
        handle.remove()


class Gate:
    """While closed, the model's forward passes block: a generator stuck in a kernel."""

    def __init__(self, model: Any) -> None:
        self._open = threading.Event()
        self._open.set()
        self._handle = model.register_forward_pre_hook(self._wait)

    def _wait(self, module: Any, args: Any) -> None:  # a pre-hook's return value would replace the inputs
        self._open.wait(30)

    def close(self) -> None:
        self._open.clear()

    def open(self) -> None:
        self._open.set()

    def remove(self) -> None:
        self.open()
        self._handle.remove()


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``fn`` on a daemon thread; the dict gets ``result`` or ``error`` and ``done_at``."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = fn()
        except Exception as e:  # noqa: BLE001 - handed to the test
            box["error"] = e
        box["done_at"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box
