"""``tinydistill serve MODEL``: an OpenAI-compatible endpoint for any local HF model (a trained student too).

Routes: ``/v1/models``, ``/v1/chat/completions`` and ``/v1/completions`` (``"stream": true`` answers with
Server-Sent Events) and ``/health`` (alias ``/ready``). One thread owns the model and gives every running
request one token per step (:mod:`.engine`); requests are checked against :class:`.limits.Limits` and answered
with OpenAI-shaped errors (:mod:`.errors`); an optional API key and a body-size cap guard every route
(:mod:`.guard`). ``--fault-rate`` answers a seeded share of requests with 429, 500 or a slow reply, to show that
clients retry and still complete every row exactly once. A multiple-choice student (or its ONNX export) is served
by :mod:`.choice_app` instead: vLLM's ``/v1/score`` and ``/v1/rerank``, and ``/v1/choose`` (:mod:`.scoring`).
"""

from __future__ import annotations

from typing import Any

from .limits import API_KEY_ENV, Limits

__all__ = ["API_KEY_ENV", "Limits", "create_app", "serve"]


def __getattr__(name: str) -> Any:  # the app (and torch) load only when used, not for `tinydistill --help`
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "serve":
        from .server import serve

        return serve
    raise AttributeError(name)
