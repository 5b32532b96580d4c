"""An ASGI middleware in front of every route: the API key (when one is set) and the request body's size."""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence
from typing import Any

from starlette.exceptions import HTTPException

from .errors import error_body

Scope = dict[str, Any]


class _TooLarge(HTTPException):
    """Raised while the body is read (an HTTPException, so FastAPI answers it through the error handlers)."""

    def __init__(self, message: str) -> None:
        super().__init__(413, message)


async def _reply(send: Any, status: int, body: dict[str, Any], headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    data = json.dumps(body).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": data})


class Guard:
    """401 without ``Authorization: Bearer <api_key>`` (if ``api_key``); 413 for a body over ``max_body_bytes``."""

    def __init__(self, app: Any, *, api_key: str | None, max_body_bytes: int) -> None:
        self.app = app
        self._key = f"Bearer {api_key}".encode() if api_key else None
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        if self._key is not None and not hmac.compare_digest(headers.get(b"authorization", b""), self._key):
            body = error_body(401, "missing or wrong API key: send the header 'Authorization: Bearer <key>'",
                              code="invalid_api_key")
            return await _reply(send, 401, body, [(b"www-authenticate", b"Bearer")])
        limit = self.max_body_bytes
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            return await _reply(send, 413, self._too_large(int(declared)))
        seen = 0
        started = False

        async def counted_receive() -> dict[str, Any]:  # a chunked body without content-length is counted
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge(self._too_large(seen)["error"]["message"])
            return message

        async def tracked_send(message: dict[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _TooLarge:
            if not started:
                await _reply(send, 413, self._too_large(seen))

    def _too_large(self, size: int) -> dict[str, Any]:
        return error_body(
            413,
            f"request body of {size:,} bytes or more is over this server's limit of {self.max_body_bytes:,} "
            "bytes (--max-body-mb)",
            code="request_too_large",
        )
