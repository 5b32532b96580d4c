"""What both serving apps (generation and multiple-choice) share: the app around the worker thread that owns the
model (:func:`served_app`), the check of a request's model name, ``/v1/models`` (with ``/v1/models/{name}``) and
``/health`` (alias ``/ready``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Protocol

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from .errors import APIError, error_body, install_error_handlers
from .guard import Guard
from .limits import Limits
from .worker import ModelThread


class Worker(Protocol):
    """The thread that owns the model (:class:`.engine.Engine`, :class:`.scoring.Scorer`), as health sees it."""

    def stuck(self, stall_s: float) -> str | None: ...

    def status(self) -> dict[str, Any]: ...


def served_app(title: str, *, start: Callable[[], ModelThread], worker: str, limits: Limits,
               api_key: str | None) -> FastAPI:
    """An app whose lifespan keeps ``start()``'s worker in ``app.state.<worker>`` and closes it on shutdown, with
    OpenAI-shaped errors, the :class:`.guard.Guard` (API key, body cap), ``app.state.stats`` (a Counter) and
    ``app.state.limits``."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        setattr(app.state, worker, start())
        yield
        getattr(app.state, worker).close()

    app = FastAPI(title=title, lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(Guard, api_key=api_key, max_body_bytes=limits.max_body_bytes)
    app.state.stats, app.state.limits = Counter(), limits
    return app


def check_model(name: str | None, served: str) -> None:
    """A 404 ``model_not_found`` unless ``name`` is absent or the served model's."""
    if name is not None and name != served:
        raise APIError(404, f"the model '{name}' does not exist here; this server serves '{served}'",
                       param="model", code="model_not_found")


def add_info_routes(app: FastAPI, *, model_name: str, card: Mapping[str, Any], worker: str, what: str,
                    stall_s: float, extra: Mapping[str, Any] | None = None) -> None:
    """``/v1/models``, ``/v1/models/{name}`` (``card`` describes the model) and ``/health``/``/ready``: 503 until
    ``app.state.<worker>`` (``what`` in the message) has started or while it is stuck for ``stall_s``, else ok with
    the model, ``extra`` and the worker's status."""

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [dict(card)]}

    @app.get("/v1/models/{name:path}")
    async def model_info(name: str) -> dict[str, Any]:
        check_model(name, model_name)
        return dict(card)

    @app.get("/health")
    @app.get("/ready")
    async def health() -> JSONResponse:
        running: Worker | None = getattr(app.state, worker, None)
        if running is None:
            return JSONResponse(error_body(503, f"{what} has not started", code="not_ready"), 503)
        if (why := running.stuck(stall_s)) is not None:
            return JSONResponse(error_body(503, f"not ready: {why}", code="not_ready"), 503)
        return JSONResponse({"status": "ok", "model": model_name, **(extra or {}), **running.status()})
